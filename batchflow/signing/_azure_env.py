"""Build an :class:`AzureSasSigner` from explicit settings or the environment.

Sources, first match wins: explicit arguments; ``AZURE_STORAGE_CONNECTION_STRING`` (AccountName,
AccountKey or SharedAccessSignature, BlobEndpoint or DefaultEndpointsProtocol + EndpointSuffix,
``UseDevelopmentStorage=true`` for Azurite); ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY``
or ``AZURE_STORAGE_SAS_TOKEN`` (``AZURE_STORAGE_BLOB_ENDPOINT`` overrides the account URL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from batchflow.errors import ConfigError
from batchflow.signing._azure import AzureSasSigner

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "azure_signer_from_environment",
    "parse_connection_string",
]

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_MISSING = (
    "no Azure storage credentials found: set AZURE_STORAGE_CONNECTION_STRING, or "
    "AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY (or AZURE_STORAGE_SAS_TOKEN)"
)


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` into a dict with lower-case keys (values may contain ``=``)."""
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"malformed Azure connection string segment {name.strip()!r}")
        fields[name.strip().lower()] = value.strip()
    return fields


def _from_connection_string(text: str, clock_skew: int) -> AzureSasSigner:
    fields = parse_connection_string(text)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        proxy = fields.get("developmentstorageproxyuri", "http://127.0.0.1")
        return AzureSasSigner(
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            account_url=f"{proxy.rstrip('/')}:10000/{AZURITE_ACCOUNT}",
            clock_skew=clock_skew,
        )
    account = fields.get("accountname", "")
    endpoint = fields.get("blobendpoint")
    if not endpoint and account:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    if not account and endpoint:
        account = _account_from_url(endpoint)
    key, sas = fields.get("accountkey"), fields.get("sharedaccesssignature")
    if not account or not (key or sas):
        raise ConfigError(
            "AZURE_STORAGE_CONNECTION_STRING needs AccountName (or BlobEndpoint) and "
            "AccountKey or SharedAccessSignature"
        )
    return AzureSasSigner(
        account_name=account,
        account_key=key or None,
        sas_token=None if key else sas,
        account_url=endpoint,
        clock_skew=clock_skew,
    )


def _account_from_url(url: str) -> str:
    """The account name in ``https://<account>.blob...`` or ``http://host:port/<account>``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return path.split("/", 1)[0]
    return (parts.hostname or "").split(".", 1)[0]


def azure_signer_from_environment(
    *,
    account_name: str | None = None,
    account_key: str | None = None,
    sas_token: str | None = None,
    connection_string: str | None = None,
    account_url: str | None = None,
    clock_skew: int = 300,
    environ: Mapping[str, str] | None = None,
) -> AzureSasSigner:
    """The Azure signer the settings describe; ConfigError saying what to set otherwise."""
    env = os.environ if environ is None else environ
    if account_name and (account_key or sas_token):
        return AzureSasSigner(
            account_name=account_name,
            account_key=account_key,
            sas_token=None if account_key else sas_token,
            account_url=account_url,
            clock_skew=clock_skew,
        )
    conn = connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        return _from_connection_string(conn, clock_skew)
    account = account_name or env.get("AZURE_STORAGE_ACCOUNT")
    key = account_key or env.get("AZURE_STORAGE_KEY")
    sas = sas_token or env.get("AZURE_STORAGE_SAS_TOKEN")
    url = account_url or env.get("AZURE_STORAGE_BLOB_ENDPOINT")
    if account and (key or sas):
        return AzureSasSigner(
            account_name=account,
            account_key=key or None,
            sas_token=None if key else sas,
            account_url=url or None,
            clock_skew=clock_skew,
        )
    raise ConfigError(_MISSING)
