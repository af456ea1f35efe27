"""A synchronous twin of ``batchflow.pipeline.retry.retry_call`` for worker threads.

Same policy, same delays (``backoff_delay``: capped exponential backoff with full jitter,
``Retry-After`` wins when longer), same classifier; sleeping and the clock are parameters so
tests need not wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from batchflow.config import RetryPolicy
from batchflow.errors import DeadlineExceeded
from batchflow.pipeline.retry import RetryEvent, backoff_delay, is_transient

__all__ = ["retry_call_sync"]

T = TypeVar("T")

_RNG = random.Random()  # jitter, not security


def retry_call_sync(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[RetryEvent], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn()`` with retries per ``policy``; return its result or raise its last error.

    Raises :class:`DeadlineExceeded` (chained) when the next sleep would pass the deadline.
    """
    rng = rng or _RNG
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not classify(exc) or attempt >= max(policy.max_attempts, 1):
                raise
            delay = backoff_delay(policy, attempt, exc, rng)
            elapsed = clock() - started
            if policy.deadline is not None and elapsed + delay > policy.deadline:
                raise DeadlineExceeded(
                    f"gave up after {attempt} attempt(s) and {elapsed:.1f}s "
                    f"(deadline {policy.deadline:g}s): {exc}"
                ) from exc
            if on_retry is not None:
                on_retry(RetryEvent(attempt=attempt, delay=delay, error=exc, elapsed=elapsed))
        sleep(delay)
