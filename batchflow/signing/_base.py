"""The Signer boundary, validity rules and the concurrent ``sign_many`` driver.

A signer turns ``(bucket, key)`` into an HTTPS URL the Batch API server can GET without
credentials (PROTOCOL.md "Signed URLs"). HMAC signers (S3 SigV4, GCS HMAC, Azure SAS) cost a few
microseconds and run inline on the event loop in chunks; RSA signers (GCS service-account keys)
cost ~1 ms of CPU each and run in worker threads bounded by a ``CapacityLimiter``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio import CapacityLimiter

from batchflow.errors import UsageError

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "INLINE_CHUNK",
    "MAX_TTL_SECONDS",
    "Signer",
    "parse_duration",
    "sign_many",
    "validate_ttl",
]

DEFAULT_TTL_SECONDS = 24 * 3600
MAX_TTL_SECONDS = 7 * 24 * 3600
INLINE_CHUNK = 512
"""Light signers sign this many keys between two yields to the event loop."""
_THREAD_CHUNK = 64
"""Heavy signers sign this many keys per worker-thread hop (amortises the hop cost)."""


@runtime_checkable
class Signer(Protocol):
    """Presigns GET URLs for objects of one cloud account."""

    scheme: str
    """``"s3"``, ``"gs"`` or ``"az"``: the URL scheme of the objects this signer covers."""
    cpu_heavy: bool
    """True when signing is slow CPU work (RSA): callers run it in a worker thread."""

    def sign(self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None) -> str:
        """A URL valid for ``expires_in`` seconds from ``now`` (default: the current time)."""
        ...

    def warnings(self, expires_in: int, now: datetime | None = None) -> tuple[str, ...]:
        """Reasons URLs signed now may stop working before ``expires_in`` seconds are up."""
        ...


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def validate_ttl(seconds: int) -> int:
    """``seconds`` if it is a valid URL lifetime (1 s .. 7 days), else a UsageError."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise UsageError(f"URL validity must be a whole number of seconds, got {seconds!r}")
    if seconds <= 0:
        raise UsageError(f"URL validity must be positive, got {seconds} s")
    if seconds > MAX_TTL_SECONDS:
        raise UsageError(
            f"URL validity {seconds} s is over the 7-day maximum ({MAX_TTL_SECONDS} s) "
            "that S3 and GCS allow"
        )
    return seconds


def parse_duration(text: str) -> int:
    """Seconds in ``"3600"``, ``"90m"``, ``"24h"``, ``"7d"``, ``"1w"`` (validated as a URL TTL)."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise UsageError(
            f"cannot read {text!r} as a duration: use seconds or a number with "
            "s/m/h/d/w, e.g. 3600, 90m, 24h, 7d"
        )
    value = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if value != int(value):
        raise UsageError(f"duration {text!r} is not a whole number of seconds")
    return validate_ttl(int(value))


async def sign_many(
    signer: Signer,
    bucket: str,
    keys: Sequence[str],
    *,
    expires_in: int,
    limiter: CapacityLimiter | None = None,
) -> list[str]:
    """Sign every key of ``keys`` (in order) without blocking the event loop for long.

    cpu_heavy signers run in worker threads, ``_THREAD_CHUNK`` keys per hop, bounded by
    ``limiter`` (anyio's default thread limiter when None); light signers run inline in chunks
    of ``INLINE_CHUNK`` with a checkpoint between chunks so other tasks keep flowing.
    """
    validate_ttl(expires_in)
    sign = signer.sign
    out: list[str] = []
    if signer.cpu_heavy:

        def run(chunk: Sequence[str]) -> list[str]:
            return [sign(bucket, key, expires_in=expires_in) for key in chunk]

        for start in range(0, len(keys), _THREAD_CHUNK):
            chunk = keys[start : start + _THREAD_CHUNK]
            out.extend(await anyio.to_thread.run_sync(run, chunk, limiter=limiter))
        return out
    for start in range(0, len(keys), INLINE_CHUNK):
        out.extend(
            [sign(bucket, key, expires_in=expires_in) for key in keys[start : start + INLINE_CHUNK]]
        )
        await anyio.lowlevel.checkpoint()
    return out
