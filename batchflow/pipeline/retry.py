"""Retries as data: a frozen :class:`RetryPolicy`, a typed classifier and a replaceable clock.

The one retry engine of batchflow. :func:`next_delay` decides: after a failed attempt, how long
to wait before the next one, or stop (the error is not transient, the attempts ran out, or the
sleep would pass the policy's overall deadline). Delays are capped exponential backoff with full
jitter; a server's ``Retry-After`` wins when it asks for longer (capped by
``policy.max_retry_after``). Two thin drivers run it: ``retry_call`` (async) and
``retry_call_sync`` (worker threads and processes); a persisted outbox calls ``next_delay``
itself. The clock is a Protocol so tests run without real sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import anyio

from batchflow.config import RetryPolicy
from batchflow.errors import BatchflowError, RetriesExhausted, TransientError

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "RetryEvent",
    "SyncClock",
    "SystemClock",
    "backoff_delay",
    "is_transient",
    "next_delay",
    "retry_call",
    "retry_call_sync",
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


@runtime_checkable
class SyncClock(Protocol):
    """The clock of :func:`retry_call_sync`: monotonic time and a blocking sleep."""

    def now(self) -> float: ...

    def sleep_sync(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``anyio.sleep`` and ``time.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def sleep_sync(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


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


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    error: BaseException,
    elapsed: float,
    *,
    classify: Callable[[BaseException], bool] = is_transient,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` now that attempt ``attempt`` (1-based)
    failed with ``error``, ``elapsed`` seconds after the first began; ``None``: stop."""
    if not classify(error) or attempt >= max(policy.max_attempts, 1):
        return None
    delay = backoff_delay(policy, attempt, error, rng or _DEFAULT_RNG)
    if policy.deadline is not None and elapsed + delay > policy.deadline:
        return None
    return delay


@dataclass(slots=True)
class _Attempts:
    """The state of one retried call, shared by both drivers: attempts made, time started."""

    policy: RetryPolicy
    now: Callable[[], float]
    classify: Callable[[BaseException], bool]
    on_retry: Callable[[RetryEvent], None] | None
    rng: random.Random | None
    attempt: int = 1
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.now()

    def failed(self, error: Exception) -> float:
        """Called while ``error`` is handled: the delay before the next attempt, or raise the
        error itself, or :class:`RetriesExhausted` (transient: exit 75) when only the retry
        deadline stopped it."""
        policy, attempt, elapsed = self.policy, self.attempt, self.now() - self.started
        delay = next_delay(policy, attempt, error, elapsed, classify=self.classify, rng=self.rng)
        if delay is None:
            if not self.classify(error) or attempt >= max(policy.max_attempts, 1):
                raise error
            retry_after = error.retry_after if isinstance(error, TransientError) else None
            raise RetriesExhausted(
                f"gave up after {attempt} attempt(s) and {elapsed:.1f}s "
                f"(retry deadline {policy.deadline:g}s): {error}",
                retry_after=retry_after,
            ) from error
        if self.on_retry is not None:
            self.on_retry(RetryEvent(attempt=attempt, delay=delay, error=error, elapsed=elapsed))
        self.attempt += 1
        return delay


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
    attempts = _Attempts(policy, clock.now, classify, on_retry, rng)
    while True:
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001  # attempts.failed re-raises what is not retried
            delay = attempts.failed(exc)
        await clock.sleep(delay)


def retry_call_sync(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    clock: SyncClock = SYSTEM_CLOCK,
    classify: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[RetryEvent], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """:func:`retry_call` for blocking code (worker threads and processes): same decisions."""
    attempts = _Attempts(policy, clock.now, classify, on_retry, rng)
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001  # attempts.failed re-raises what is not retried
            delay = attempts.failed(exc)
        clock.sleep_sync(delay)
