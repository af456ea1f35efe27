"""S3 SigV4 query-string presigning (GET), by hand, byte-identical to botocore.

botocore's ``generate_presigned_url`` builds a request object, runs the endpoint ruleset and a
dozen event hooks per URL (~100 us). Here everything that does not depend on the key is computed
once: the per-bucket endpoint (``resolve_s3_base``), the quoted credential and token, and the
SigV4 signing key, which changes once a day (kept as pre-keyed HMAC states). A URL then
costs one quote() and three SHA-256 updates.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import quote

from batchflow.signing._s3_endpoint import resolve_s3_base

__all__ = ["S3Signer"]

_SHA256 = hashlib.sha256
_HMAC_NEW = hmac.new
_UNRESERVED = "-_.~"
_quote = quote


_Moment = tuple[int, str, str, str, "hashlib._Hash", "hashlib._Hash"]
"""(second, stamp, query head up to X-Amz-Expires=, string-to-sign head, HMAC inner, outer)."""


def _hmac(key: bytes, msg: str) -> bytes:
    return _HMAC_NEW(key, msg.encode("utf-8"), _SHA256).digest()


def _hmac_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states already fed ``key ^ ipad`` and ``key ^ opad`` (RFC 2104, 32-byte key)."""
    block = key.ljust(64, b"\0")
    inner = _SHA256(bytes(b ^ 0x36 for b in block))
    outer = _SHA256(bytes(b ^ 0x5C for b in block))
    return inner, outer


class S3Signer:
    """Presigns S3 (and S3-compatible) GET URLs with static credentials.

    Build it with :meth:`from_environment` (botocore's credential chain) or directly with keys.
    ``credentials_expiry`` (temporary credentials) only feeds :meth:`warnings`.
    """

    scheme = "s3"
    cpu_heavy = False

    __slots__ = (
        "_access_key",
        "_buckets",
        "_cred_prefix",
        "_moments",
        "_scope_tail",
        "_secret",
        "_token_param",
        "addressing_style",
        "credentials_expiry",
        "credentials_source",
        "endpoint_url",
        "region",
        "session_token",
    )

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        session_token: str | None = None,
        credentials_expiry: datetime | None = None,
        credentials_source: str = "static",
        endpoint_url: str | None = None,
        addressing_style: str = "auto",
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.addressing_style = addressing_style
        self.session_token = session_token
        self.credentials_expiry = credentials_expiry
        self.credentials_source = credentials_source
        self._access_key = access_key
        self._secret = f"AWS4{secret_key}".encode()
        self._scope_tail = f"/{region}/s3/aws4_request"
        self._cred_prefix = quote(f"{access_key}/", safe=_UNRESERVED)
        token_q = None if session_token is None else quote(session_token, safe=_UNRESERVED)
        # Canonical query order is sorted: Security-Token comes before SignedHeaders, while the
        # URL keeps botocore's insertion order (SignedHeaders, then Security-Token).
        self._token_param = "" if token_q is None else f"&X-Amz-Security-Token={token_q}"
        self._buckets: dict[str, tuple[str, str, str]] = {}
        self._moments: _Moment = (-1, "", "", "", _SHA256(), _SHA256())
        # Fail fast on a bad endpoint / addressing style rather than on the first key.
        resolve_s3_base(
            "bucket", region=region, endpoint_url=endpoint_url, addressing_style=addressing_style
        )

    @classmethod
    def from_environment(
        cls,
        *,
        profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        addressing_style: str | None = None,
    ) -> S3Signer:
        """Credentials via botocore's chain; AWS_ENDPOINT_URL(_S3), AWS_REGION/AWS_DEFAULT_REGION,
        AWS_S3_ADDRESSING_STYLE honoured (path style by default for IP/localhost endpoints,
        region ``auto`` by default for Cloudflare R2). Raises ConfigError without credentials.
        """
        from batchflow.signing._s3_env import s3_signer_from_environment

        return s3_signer_from_environment(
            profile=profile,
            region=region,
            endpoint_url=endpoint_url,
            addressing_style=addressing_style,
        )

    def _bucket_parts(self, bucket: str) -> tuple[str, str, str]:
        """(URL head, canonical-request head, canonical-request tail) for ``bucket``, cached."""
        parts = self._buckets.get(bucket)
        if parts is None:
            endpoint = resolve_s3_base(
                bucket,
                region=self.region,
                endpoint_url=self.endpoint_url,
                addressing_style=self.addressing_style,
            )
            parts = (
                f"{endpoint.prefix}/",
                f"GET\n{endpoint.path_prefix}/",
                f"{self._token_param}&X-Amz-SignedHeaders=host\n"
                f"host:{endpoint.host}\n\nhost\nUNSIGNED-PAYLOAD",
            )
            self._buckets[bucket] = parts
        return parts

    def _moment(self, now: datetime | None) -> _Moment:
        """Everything that depends only on the signing second, cached for that second.

        The cache is one tuple, so a signer shared by threads never mixes two instants; the
        SigV4 signing key is derived once per day and kept as pre-keyed HMAC inner/outer
        SHA-256 states (copying them is cheaper than ``hmac.new`` on every URL).
        """
        if now is None:
            second = int(time.time())
            moment = self._moments
            if moment[0] == second:
                return moment
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        else:
            if now.tzinfo is not None:
                now = now.astimezone(UTC)
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            second = -1
            moment = self._moments
            if moment[1] == stamp:
                return moment
        day = stamp[:8]
        if moment[1][:8] == day:
            inner, outer = moment[4], moment[5]
        else:
            k_date = _hmac(self._secret, day)
            k_region = _hmac(k_date, self.region)
            k_service = _hmac(k_region, "s3")
            inner, outer = _hmac_states(_hmac(k_service, "aws4_request"))
        moment = (
            second,
            stamp,
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={self._cred_prefix}{day}"
            f"%2F{self.region}%2Fs3%2Faws4_request&X-Amz-Date={stamp}&X-Amz-Expires=",
            f"AWS4-HMAC-SHA256\n{stamp}\n{day}{self._scope_tail}\n",
            inner,
            outer,
        )
        self._moments = moment
        return moment

    def sign(self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None) -> str:
        """A presigned GET URL for ``s3://bucket/key`` valid ``expires_in`` seconds.

        ``expires_in`` is not re-validated here (hot path): ``sign_many`` and the CLI call
        ``validate_ttl`` once per batch.
        """
        url_head, canon_head, canon_tail = self._bucket_parts(bucket)
        _, _, query_head, sts_head, inner, outer = self._moment(now)
        qkey = _quote(key, "/~")
        query = f"{query_head}{expires_in}"
        canonical = f"{canon_head}{qkey}\n{query}{canon_tail}"
        digest = _SHA256(canonical.encode("utf-8")).hexdigest()
        mac = inner.copy()
        mac.update(f"{sts_head}{digest}".encode())
        final = outer.copy()
        final.update(mac.digest())
        return (
            f"{url_head}{qkey}?{query}&X-Amz-SignedHeaders=host{self._token_param}"
            f"&X-Amz-Signature={final.hexdigest()}"
        )

    def warnings(self, expires_in: int, now: datetime | None = None) -> tuple[str, ...]:
        """Temporary credentials that end before the URLs would."""
        if self.session_token is None:
            return ()
        now = now or datetime.now(UTC)
        expiry = self.credentials_expiry
        if expiry is None:
            return (
                f"S3 URLs are signed with temporary credentials ({self.credentials_source}) "
                "of unknown expiry: they stop working when that session ends, possibly "
                f"before the {expires_in} s asked for",
            )
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        left = (expiry - now).total_seconds()
        if left < expires_in:
            return (
                f"S3 URLs are signed with temporary credentials ({self.credentials_source}) "
                f"that expire at {expiry.isoformat()} ({max(int(left), 0)} s from now): the URLs "
                f"die with them, before the {expires_in} s asked for",
            )
        return ()
