"""Frozen settings objects shared by the client, the pipeline and the server.

Precedence everywhere: an explicit flag, then the environment, then the default here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_API_URL",
    "ClientSettings",
    "Limits",
    "RetryPolicy",
    "Timeouts",
    "env_first",
]

DEFAULT_API_URL = "https://api.roboflow.com"


@dataclass(frozen=True, slots=True)
class Limits:
    """Protocol limits (PROTOCOL.md) and batchflow's defaults for concurrency."""

    max_image_bytes: int = 20 * 1024 * 1024
    max_references_per_request: int = 20_000
    max_tar_members: int = 500
    shard_size: int = 20_000
    tar_shard_size: int = 256
    url_ttl_seconds: int = 24 * 3600
    max_url_ttl_seconds: int = 7 * 24 * 3600
    concurrency: int = 8
    sign_workers: int = 4
    stream_buffer: int = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded by attempts and an overall deadline.

    ``delay(n)`` for the n-th retry (n >= 1) is uniform in [0, min(cap, base * 2**(n-1))];
    a server's ``Retry-After`` replaces it when larger (still capped by ``max_retry_after``).
    """

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0
    deadline: float | None = 600.0
    max_retry_after: float = 120.0

    def backoff_ceiling(self, retry: int) -> float:
        """Upper bound of the jittered delay before retry number ``retry`` (1-based)."""
        exponent = min(max(retry - 1, 0), 62)
        return float(min(self.max_delay, self.base_delay * (2**exponent)))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-call network timeouts in seconds."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0


def env_first(env: Mapping[str, str], *names: str) -> str | None:
    """The value of the first of ``names`` set (non-empty) in ``env``."""
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the client reaches a Batch API."""

    api_url: str
    api_key: str | None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Against batchflow serve the key travels in a header; the hosted API wants ``api_key``.
    key_in_header: bool = False

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
    ) -> ClientSettings:
        """Settings from flags first, then ``API_BASE_URL``/``BATCHFLOW_API_URL`` and the keys."""
        env = os.environ if env is None else env
        url = api_url or env_first(env, "BATCHFLOW_API_URL", "API_BASE_URL") or DEFAULT_API_URL
        key = api_key or env_first(env, "BATCHFLOW_API_KEY", "ROBOFLOW_API_KEY")
        return cls(api_url=url.rstrip("/"), api_key=key)
