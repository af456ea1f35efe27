"""Presigners: turn cloud objects into HTTPS URLs the Batch API server can fetch.

One narrow :class:`Signer` Protocol, three implementations, each with an environment factory:

- :class:`S3Signer` (``s3``): SigV4 query presigning, byte-identical to botocore.
- :class:`GcsSigner` (``gs``): V4 signed URLs with a service-account RSA key (``cpu_heavy``) or
  an HMAC key.
- :class:`AzureSasSigner` (``az``): a blob-read service SAS from the account key, or a given
  SAS token appended.

:func:`sign_many` signs a batch of keys without blocking the event loop; :func:`validate_ttl` and
:func:`parse_duration` check URL lifetimes (default 24 h, at most 7 days).
"""

from __future__ import annotations

from batchflow.signing._azure import SAS_VERSION, AzureSasSigner
from batchflow.signing._azure_env import azure_signer_from_environment, parse_connection_string
from batchflow.signing._base import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    Signer,
    parse_duration,
    sign_many,
    validate_ttl,
)
from batchflow.signing._gcs import DEFAULT_GCS_ENDPOINT, GcsSigner
from batchflow.signing._gcs_env import gcs_signer_from_environment
from batchflow.signing._s3 import S3Signer
from batchflow.signing._s3_endpoint import S3Endpoint, resolve_s3_base

__all__ = [
    "DEFAULT_GCS_ENDPOINT",
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "SAS_VERSION",
    "AzureSasSigner",
    "GcsSigner",
    "S3Endpoint",
    "S3Signer",
    "Signer",
    "azure_signer_from_environment",
    "gcs_signer_from_environment",
    "parse_connection_string",
    "parse_duration",
    "resolve_s3_base",
    "sign_many",
    "signer_from_environment",
    "validate_ttl",
]


def signer_from_environment(scheme: str) -> Signer:
    """The environment's signer for ``s3``, ``gs`` or ``az`` URLs (ConfigError if unusable)."""
    if scheme == "s3":
        return S3Signer.from_environment()
    if scheme in ("gs", "gcs"):
        return gcs_signer_from_environment()
    if scheme in ("az", "azure", "abfs"):
        return azure_signer_from_environment()
    from batchflow.errors import UsageError

    raise UsageError(f"no signer for {scheme!r} URLs: use s3://, gs:// or az://")
