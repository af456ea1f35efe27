"""Azure Blob read URLs: a service SAS signed with the account key, or a given SAS token.

With an account key each URL carries its own blob-scoped service SAS (``sr=b``, ``sp=r``),
byte-identical to ``azure.storage.blob.generate_blob_sas`` for the same inputs (field order,
string-to-sign and quoting follow ``azure/storage/blob/_shared_access_signature.py``). The start
time is backdated by ``clock_skew`` seconds so a server whose clock runs a little behind accepts
the URL at once. With a SAS token (container or account SAS) the token is appended as given:
its own ``se=`` expiry then wins, and :meth:`AzureSasSigner.warnings` says when it is shorter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

from batchflow.errors import ConfigError

__all__ = ["SAS_VERSION", "AzureSasSigner"]

try:  # the service version the installed SDK signs with, so both stay identical
    from azure.storage.blob._shared.constants import X_MS_VERSION as SAS_VERSION
except ImportError:  # pragma: no cover - SDK layout changed
    SAS_VERSION = "2025-01-05"

_STAMP = "%Y-%m-%dT%H:%M:%SZ"
_SHA256 = hashlib.sha256


def _parse_sas_expiry(token: str) -> datetime | None:
    """The ``se=`` expiry of a SAS token (ISO date or date-time, UTC), if it has one."""
    values = parse_qs(token, keep_blank_values=True).get("se")
    if not values:
        return None
    text = values[0].strip()
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class AzureSasSigner:
    """Read URLs for ``az://container/blob`` of one storage account."""

    scheme = "az"
    cpu_heavy = False

    __slots__ = (
        "_key",
        "_protocol",
        "_resource_prefix",
        "account_name",
        "account_url",
        "clock_skew",
        "sas_expiry",
        "sas_token",
    )

    def __init__(
        self,
        *,
        account_name: str,
        account_key: str | None = None,
        sas_token: str | None = None,
        account_url: str | None = None,
        clock_skew: int = 300,
    ) -> None:
        if (account_key is None) == (sas_token is None):
            raise ConfigError("an Azure signer needs exactly one of an account key or a SAS token")
        if not account_name:
            raise ConfigError("an Azure signer needs the storage account name")
        url = (account_url or f"https://{account_name}.blob.core.windows.net").rstrip("/")
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigError(f"Azure account URL must look like https://host[/path], got {url!r}")
        self.account_name = account_name
        self.account_url = url
        self.clock_skew = clock_skew
        self._protocol = "https" if scheme == "https" else "https,http"
        self._resource_prefix = f"/blob/{account_name}/"
        self._key = b""
        if account_key is not None:
            try:
                self._key = base64.b64decode(account_key, validate=True)
            except ValueError as exc:
                raise ConfigError(
                    "AZURE_STORAGE_KEY is not valid base64 (copy it from the portal's "
                    "Access keys page)"
                ) from exc
        self.sas_token = None if sas_token is None else sas_token.lstrip("?")
        self.sas_expiry = None if self.sas_token is None else _parse_sas_expiry(self.sas_token)

    @property
    def protocol(self) -> str:
        """The ``spr=`` value: https only, unless the endpoint is plain http (Azurite)."""
        return self._protocol

    def sas_for(self, container: str, blob: str, *, start: datetime, expiry: datetime) -> str:
        """The service SAS query string for one blob (``generate_blob_sas`` layout)."""
        st = start.astimezone(UTC).strftime(_STAMP)
        se = expiry.astimezone(UTC).strftime(_STAMP)
        to_sign = (
            f"r\n{st}\n{se}\n{self._resource_prefix}{container}/{blob}\n\n\n"
            f"{self._protocol}\n{SAS_VERSION}\nb\n\n\n\n\n\n\n"
        )
        digest = hmac.new(self._key, to_sign.encode("utf-8"), _SHA256).digest()
        sig = quote(base64.b64encode(digest).decode("ascii"))
        return (
            f"st={quote(st)}&se={quote(se)}&sp=r&spr={quote(self._protocol)}"
            f"&sv={SAS_VERSION}&sr=b&sig={sig}"
        )

    def sign(self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None) -> str:
        """A read URL for blob ``key`` in container ``bucket`` valid ``expires_in`` seconds."""
        base = f"{self.account_url}/{quote(bucket)}/{quote(key, safe='~/')}"
        if self.sas_token is not None:
            return f"{base}?{self.sas_token}"
        now = now or datetime.now(UTC)
        start = now - timedelta(seconds=self.clock_skew)
        expiry = now + timedelta(seconds=expires_in)
        return f"{base}?{self.sas_for(bucket, key, start=start, expiry=expiry)}"

    def warnings(self, expires_in: int, now: datetime | None = None) -> tuple[str, ...]:
        """A given SAS token that expires before the URLs should (or of unknown expiry)."""
        if self.sas_token is None:
            return ()
        if self.sas_expiry is None:
            return (
                "the Azure SAS token has no readable se= expiry: URLs live only as long as it "
                "(or its stored access policy) does",
            )
        now = now or datetime.now(UTC)
        left = (self.sas_expiry - now).total_seconds()
        if left < expires_in:
            return (
                f"the Azure SAS token expires at {self.sas_expiry.isoformat()} "
                f"({max(int(left), 0)} s from now), before the {expires_in} s asked for: "
                "its expiry wins",
            )
        return ()
