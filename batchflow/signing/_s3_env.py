"""Build an :class:`S3Signer` from the environment, once, at start-up (sync).

Credentials come from botocore's own chain (env vars, ``~/.aws/credentials`` and ``config``,
``AWS_PROFILE``, SSO, assume-role, container and EC2 instance roles), frozen into static keys:
a presigned URL cannot outlive the credentials that signed it, so refreshing them later would
not help the URLs already handed out; ``S3Signer.warnings`` says when that matters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from batchflow.errors import ConfigError
from batchflow.signing._s3_endpoint import ADDRESSING_STYLES

if TYPE_CHECKING:
    from batchflow.signing._s3 import S3Signer

__all__ = ["s3_signer_from_environment"]

_MISSING = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(plus AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE naming a profile in "
    "~/.aws/credentials or ~/.aws/config"
)


def _is_local_host(endpoint_url: str) -> bool:
    host = (urlsplit(endpoint_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    parts = host.split(".")
    return ":" in host or (len(parts) == 4 and all(p.isdigit() for p in parts))


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def s3_signer_from_environment(
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    addressing_style: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> S3Signer:
    """Resolve credentials, region, endpoint and addressing style; explicit arguments win."""
    import botocore.exceptions
    import botocore.session

    from batchflow.signing._s3 import S3Signer

    env = os.environ if environ is None else environ
    try:
        session = botocore.session.Session(profile=profile)
        scoped: dict[str, Any] = dict(session.get_scoped_config())
        credentials = session.get_credentials()
        frozen = None if credentials is None else credentials.get_frozen_credentials()
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(
            f"AWS profile {exc.kwargs.get('profile')!r} not found: fix AWS_PROFILE/--profile "
            "or add it to ~/.aws/config"
        ) from exc
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        # SSO token expired, assume-role refused, credential_process failed, bad config file
        raise ConfigError(f"cannot load AWS credentials: {exc}") from exc
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise ConfigError(_MISSING)

    endpoint = _first(
        endpoint_url,
        env.get("AWS_ENDPOINT_URL_S3"),
        env.get("AWS_ENDPOINT_URL"),
        _profile_s3_value(scoped, "endpoint_url"),
        scoped.get("endpoint_url"),
    )
    resolved_region = _first(
        region,
        env.get("AWS_REGION"),
        env.get("AWS_DEFAULT_REGION"),
        scoped.get("region"),
    )
    if resolved_region is None:
        is_r2 = endpoint is not None and (urlsplit(endpoint).hostname or "").endswith(
            ".r2.cloudflarestorage.com"
        )
        resolved_region = "auto" if is_r2 else "us-east-1"
    style = _first(
        addressing_style,
        env.get("AWS_S3_ADDRESSING_STYLE"),
        _profile_s3_value(scoped, "addressing_style"),
    )
    if style is None:
        style = "path" if endpoint is not None and _is_local_host(endpoint) else "auto"
    style = style.lower()
    if style not in ADDRESSING_STYLES:
        raise ConfigError(
            f"AWS_S3_ADDRESSING_STYLE must be one of {', '.join(ADDRESSING_STYLES)}, got {style!r}"
        )

    expiry = getattr(credentials, "_expiry_time", None)
    if isinstance(expiry, datetime) and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return S3Signer(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token or None,
        credentials_expiry=expiry if isinstance(expiry, datetime) else None,
        credentials_source=str(getattr(credentials, "method", "unknown")),
        region=resolved_region,
        endpoint_url=endpoint,
        addressing_style=style,
    )


def _profile_s3_value(scoped: Mapping[str, Any], name: str) -> str | None:
    section = scoped.get("s3")
    if isinstance(section, Mapping):
        value = section.get(name)
        return value if isinstance(value, str) else None
    return None
