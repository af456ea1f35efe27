"""HTTP at the boundary, shared by the client and the server: what an answer's headers say.

``parse_retry_after`` is the one reader of ``Retry-After`` (client status mapping, the server's
reference fetcher, webhooks, remote workflows); the retry engine (``batchflow.pipeline.retry``)
honours the seconds it returns, capped by the policy.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date (relative to ``now``,
    default the current UTC time); never negative; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
