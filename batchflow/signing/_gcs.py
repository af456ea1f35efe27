"""GCS V4 signed URLs: RSA (service-account key) and HMAC (interoperability key).

The canonical request is the one gcloud-aio-storage's ``Blob.get_signed_url`` builds (path-style
``/{bucket}/{quoted key}``, host-only signed headers, ``UNSIGNED-PAYLOAD``), proved identical
by the tests.

- ``GOOG4-RSA-SHA256`` with a service-account JSON key: ~1 ms of RSA per URL, so
  ``cpu_heavy=True`` and callers sign in worker threads. The private key is parsed once.
- ``GOOG4-HMAC-SHA256`` with an HMAC key (Cloud Storage > Settings > Interoperability, or
  ``gcloud storage hmac create``; env ``GCS_HMAC_ACCESS_ID`` / ``GCS_HMAC_SECRET``): the same
  URL shape signed with an HMAC chain like SigV4, a few microseconds per URL.

User credentials (``gcloud auth application-default login``) and metadata-server credentials can
only sign through the IAM ``signBlob`` API, whose URLs Google guarantees for 12 hours at most and
which costs one HTTP round trip per URL: batchflow refuses them with a ConfigError that says to
use a service-account key or an HMAC key instead.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from batchflow.errors import ConfigError

__all__ = ["DEFAULT_GCS_ENDPOINT", "GcsSigner"]

DEFAULT_GCS_ENDPOINT = "https://storage.googleapis.com"
_SHA256 = hashlib.sha256


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), _SHA256).digest()


class GcsSigner:
    """Signs ``gs://bucket/key`` as a V4 signed GET URL, with an RSA or an HMAC key.

    Build it with :func:`gcs_signer_from_environment`, :meth:`from_service_account_info`
    or :meth:`from_hmac`.
    """

    scheme = "gs"

    __slots__ = (
        "_algorithm",
        "_base",
        "_day_key",
        "_hmac_secret",
        "_host",
        "_private_key",
        "client_email",
        "cpu_heavy",
        "endpoint",
    )

    def __init__(
        self,
        *,
        client_email: str,
        private_key: rsa.RSAPrivateKey | None = None,
        hmac_secret: str | None = None,
        endpoint: str = DEFAULT_GCS_ENDPOINT,
    ) -> None:
        if (private_key is None) == (hmac_secret is None):
            raise ConfigError("a GCS signer needs exactly one of an RSA key or an HMAC secret")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"GCS endpoint must look like https://host[:port], got {endpoint!r}")
        self.client_email = client_email
        self.endpoint = endpoint
        self._private_key = private_key
        self._hmac_secret = None if hmac_secret is None else f"GOOG4{hmac_secret}".encode()
        self.cpu_heavy = private_key is not None
        self._algorithm = "GOOG4-RSA-SHA256" if private_key is not None else "GOOG4-HMAC-SHA256"
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc.lower()
        self._day_key: tuple[str, bytes] = ("", b"")

    @classmethod
    def from_service_account_info(
        cls, info: dict[str, object], *, endpoint: str = DEFAULT_GCS_ENDPOINT
    ) -> GcsSigner:
        """From a parsed service-account JSON key (``type: service_account``)."""
        email, pem = info.get("client_email"), info.get("private_key")
        if not isinstance(email, str) or not isinstance(pem, str) or not email or not pem:
            raise ConfigError(
                "the GCS credentials file has no client_email/private_key: signing URLs needs a "
                "service-account JSON key (or an HMAC key in GCS_HMAC_ACCESS_ID/GCS_HMAC_SECRET)"
            )
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"the private key of GCS service account {email} cannot be read: {exc}"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"the private key of GCS service account {email} is not RSA")
        return cls(client_email=email, private_key=key, endpoint=endpoint)

    @classmethod
    def from_hmac(
        cls, access_id: str, secret: str, *, endpoint: str = DEFAULT_GCS_ENDPOINT
    ) -> GcsSigner:
        """From a GCS HMAC key (access id + secret): the fast path, no RSA."""
        if not access_id or not secret:
            raise ConfigError("a GCS HMAC key needs both GCS_HMAC_ACCESS_ID and GCS_HMAC_SECRET")
        return cls(client_email=access_id, hmac_secret=secret, endpoint=endpoint)

    def string_to_sign(
        self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None
    ) -> tuple[str, str]:
        """(URL without the signature, string to sign): exposed so tests can verify RSA."""
        if now is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        else:
            if now.tzinfo is not None:
                now = now.astimezone(UTC)
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        scope = f"{day}/auto/storage/goog4_request"
        uri = f"/{bucket}/{quote(key, safe='/~')}"
        query = (
            f"X-Goog-Algorithm={self._algorithm}"
            f"&X-Goog-Credential={quote(self.client_email, safe='')}%2F{day}%2Fauto%2Fstorage"
            f"%2Fgoog4_request&X-Goog-Date={stamp}&X-Goog-Expires={expires_in}"
            "&X-Goog-SignedHeaders=host"
        )
        canonical = f"GET\n{uri}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        digest = _SHA256(canonical.encode("utf-8")).hexdigest()
        return f"{self._base}{uri}?{query}", f"{self._algorithm}\n{stamp}\n{scope}\n{digest}"

    def sign(self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None) -> str:
        """A V4 signed GET URL for ``gs://bucket/key`` valid ``expires_in`` seconds."""
        url, to_sign = self.string_to_sign(bucket, key, expires_in=expires_in, now=now)
        if self._private_key is not None:
            raw = self._private_key.sign(
                to_sign.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
            return f"{url}&X-Goog-Signature={raw.hex()}"
        day = to_sign.split("\n", 2)[1][:8]
        cached_day, signing_key = self._day_key  # one tuple: safe if shared across threads
        if day != cached_day:
            assert self._hmac_secret is not None
            k = _hmac(_hmac(_hmac(self._hmac_secret, day), "auto"), "storage")
            signing_key = _hmac(k, "goog4_request")
            self._day_key = (day, signing_key)
        signature = hmac.new(signing_key, to_sign.encode("utf-8"), _SHA256).hexdigest()
        return f"{url}&X-Goog-Signature={signature}"

    def warnings(self, expires_in: int, now: datetime | None = None) -> tuple[str, ...]:
        """Key-based signatures live their full time (max 7 days, checked by validate_ttl)."""
        del expires_in, now
        return ()
