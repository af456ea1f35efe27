"""Retries as data: a frozen :class:`RetryPolicy`, a typed classifier and a replaceable clock.

``retry_call`` runs an async callable until it succeeds, the error is not transient, the attempts
run out, or the next sleep would pass the policy's overall deadline. Delays are capped exponential
backoff with full jitter; a server's ``Retry-After`` wins when it asks for longer (capped by
``policy.max_retry_after``). The clock is a Protocol so tests run without real sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import anyio

from batchflow.config import RetryPolicy
from batchflow.errors import BatchflowError, RetriesExhausted, TransientError

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "RetryEvent",
    "SystemClock",
    "backoff_delay",
    "is_transient",
    "retry_call",
]

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """Monotonic time and sleeping; replaced by ``batchflow.testing.FakeClock`` in tests."""

    def now(self) -> float:
        """Monotonic seconds (only differences are meaningful)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (a checkpoint even when 0)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``anyio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One decision to retry: which attempt failed, why, and how long we wait before the next."""

    attempt: int
    delay: float
    error: BaseException
    elapsed: float


def is_transient(exc: BaseException) -> bool:
    """True for errors of the batchflow tree marked retryable (``TransientError`` and below)."""
    return isinstance(exc, BatchflowError) and exc.transient


def backoff_delay(
    policy: RetryPolicy, retry: int, error: BaseException | None, rng: random.Random
) -> float:
    """The delay before retry number ``retry`` (1-based): full jitter, then ``Retry-After``."""
    delay = rng.uniform(0.0, policy.backoff_ceiling(retry))
    if isinstance(error, TransientError) and error.retry_after is not None:
        asked = min(max(error.retry_after, 0.0), policy.max_retry_after)
        delay = max(delay, asked)
    return delay


_DEFAULT_RNG = random.Random()  # jitter, not security


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    clock: Clock = SYSTEM_CLOCK,
    classify: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[RetryEvent], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` with retries per ``policy``; return its result or raise its last error.

    Only ``Exception``s that ``classify`` accepts are retried (cancellation never is). When the
    next sleep would end past ``policy.deadline`` (seconds since the first attempt),
    :class:`RetriesExhausted` (transient: exit 75) is raised, chained from the last error.
    """
    rng = rng or _DEFAULT_RNG
    started = clock.now()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            if not classify(exc) or attempt >= max(policy.max_attempts, 1):
                raise
            delay = backoff_delay(policy, attempt, exc, rng)
            elapsed = clock.now() - started
            if policy.deadline is not None and elapsed + delay > policy.deadline:
                retry_after = exc.retry_after if isinstance(exc, TransientError) else None
                raise RetriesExhausted(
                    f"gave up after {attempt} attempt(s) and {elapsed:.1f}s "
                    f"(retry deadline {policy.deadline:g}s): {exc}",
                    retry_after=retry_after,
                ) from exc
            if on_retry is not None:
                on_retry(RetryEvent(attempt=attempt, delay=delay, error=exc, elapsed=elapsed))
        await clock.sleep(delay)
