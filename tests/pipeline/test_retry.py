"""The retry engine with a fake clock, through both drivers (``retry_call`` and
``retry_call_sync``): bounded, jittered, Retry-After aware, deadline aware."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from batchflow.config import RetryPolicy
from batchflow.errors import (
    AuthError,
    DeadlineExceeded,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetriesExhausted,
    TransientError,
    UsageError,
)
from batchflow.pipeline import (
    RetryEvent,
    SystemClock,
    is_transient,
    next_delay,
    retry_call,
    retry_call_sync,
)
from batchflow.pipeline.retry import Clock, SyncClock
from batchflow.testing import FakeClock


class Flaky:
    """Fails with the given errors in order, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture(params=["async", "sync"])
def drive(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run a blocking ``fn`` through one of the two drivers of the engine."""

    async def through_async(fn: Callable[[], Any], **kwargs: Any) -> Any:
        async def call() -> Any:
            return fn()

        return await retry_call(call, **kwargs)

    async def through_sync(fn: Callable[[], Any], **kwargs: Any) -> Any:
        return retry_call_sync(fn, **kwargs)

    return through_async if request.param == "async" else through_sync


def test_clocks_implement_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)
    assert isinstance(SystemClock(), SyncClock)
    assert isinstance(FakeClock(), SyncClock)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransientError("x"), True),
        (RateLimitedError("x", retry_after=1), True),
        (NetworkError("x"), True),
        (PermanentError("x"), False),
        (UsageError("x"), False),
        (AuthError("x"), False),
        (NotFoundError("x"), False),
        (DeadlineExceeded("x"), False),
        (ConnectionResetError("raw vendor error"), False),
        (ValueError("503 Service Unavailable"), False),
    ],
)
def test_is_transient_uses_types_only(error: Exception, expected: bool) -> None:
    assert is_transient(error) is expected


@pytest.mark.anyio
async def test_success_after_transient_failures_with_bounded_delays(drive: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0, deadline=None)
    fn = Flaky(*(NetworkError("reset") for _ in range(5)))
    events: list[RetryEvent] = []
    result = await drive(
        fn, policy=policy, clock=clock, on_retry=events.append, rng=random.Random(7)
    )
    assert result == "ok"
    assert fn.calls == 6
    assert len(clock.sleeps) == 5
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0]
    for delay, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling
    assert [e.attempt for e in events] == [1, 2, 3, 4, 5]
    assert [e.delay for e in events] == clock.sleeps
    assert clock.now() == pytest.approx(sum(clock.sleeps))


@pytest.mark.anyio
async def test_full_jitter_spreads_delays(drive: Any) -> None:
    rng = random.Random(1)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=2, base_delay=10.0, max_delay=10.0, deadline=None)
    for _ in range(50):
        await drive(Flaky(TransientError("x")), policy=policy, clock=clock, rng=rng)
    assert min(clock.sleeps) < 2.0
    assert max(clock.sleeps) > 8.0
    assert all(0.0 <= d <= 10.0 for d in clock.sleeps)


@pytest.mark.anyio
async def test_retry_after_is_respected_and_capped(drive: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=4, base_delay=0.01, max_delay=0.02, deadline=None, max_retry_after=30.0
    )
    fn = Flaky(
        RateLimitedError("slow down", retry_after=7.0),
        RateLimitedError("slow down", retry_after=500.0),
        RateLimitedError("slow down", retry_after=None),
    )
    assert await drive(fn, policy=policy, clock=clock) == "ok"
    assert clock.sleeps[0] == pytest.approx(7.0)
    assert clock.sleeps[1] == pytest.approx(30.0)
    assert clock.sleeps[2] <= 0.02


@pytest.mark.anyio
async def test_attempts_are_bounded_and_last_error_raised(drive: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, deadline=None)
    errors = [NetworkError(f"fail {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(NetworkError) as info:
        await drive(fn, policy=policy, clock=clock)
    assert info.value is errors[2]
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


@pytest.mark.anyio
async def test_permanent_errors_are_not_retried(drive: Any) -> None:
    clock = FakeClock()
    fn = Flaky(NotFoundError("no such batch"))
    with pytest.raises(NotFoundError):
        await drive(fn, policy=RetryPolicy(), clock=clock)
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_retry_deadline_raises_retries_exhausted_chained(drive: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=10.0)
    last: list[Exception] = []

    def always_fails() -> None:
        clock.advance(2.0)  # each attempt takes 2 s of (fake) time
        err = RateLimitedError("busy", retry_after=1.0)
        last.append(err)
        raise err

    with pytest.raises(RetriesExhausted) as info:
        await drive(always_fails, policy=policy, clock=clock)
    assert info.value.__cause__ is last[-1]
    # the retry budget is not a deadline the user set: still transient, exit 75 ("run again")
    assert is_transient(info.value)
    assert info.value.exit_code == 75
    assert not isinstance(info.value, DeadlineExceeded)
    # attempts at t=0..2, 3..5, 6..8, 9..11: after the 4th the next sleep would end past 10 s
    assert len(last) == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert "deadline" in str(info.value)


@pytest.mark.anyio
async def test_custom_classifier(drive: Any) -> None:
    clock = FakeClock()
    fn = Flaky(KeyError("a"), KeyError("b"))
    result = await drive(
        fn,
        policy=RetryPolicy(base_delay=0.0),
        clock=clock,
        classify=lambda e: isinstance(e, KeyError),
    )
    assert result == "ok"
    assert fn.calls == 3


@pytest.mark.parametrize(
    ("attempt", "error", "elapsed", "expected"),
    [
        (1, NetworkError("x"), 0.0, "jitter"),
        (1, RateLimitedError("x", retry_after=7.0), 0.0, 7.0),
        (1, RateLimitedError("x", retry_after=500.0), 0.0, 30.0),  # capped by max_retry_after
        (1, RateLimitedError("x", retry_after=-3.0), 0.0, "jitter"),
        (2, RateLimitedError("x", retry_after=7.0), 52.0, 7.0),  # ends at 59 s: in time
        (2, RateLimitedError("x", retry_after=7.0), 54.0, None),  # ends at 61 s: past 60 s
        (3, NetworkError("x"), 0.0, None),  # attempts ran out
        (1, NotFoundError("x"), 0.0, None),  # not retryable
        (1, ValueError("x"), 0.0, None),  # not of the tree: never retried
    ],
)
def test_next_delay_is_the_one_decision(
    attempt: int, error: Exception, elapsed: float, expected: float | str | None
) -> None:
    policy = RetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=2.0, deadline=60.0, max_retry_after=30.0
    )
    delay = next_delay(policy, attempt, error, elapsed, rng=random.Random(3))
    if expected == "jitter":
        assert delay is not None
        assert 0.0 <= delay <= policy.backoff_ceiling(attempt)
    else:
        assert delay == expected


@pytest.mark.anyio
async def test_manual_fake_clock_wakes_sleepers_in_order() -> None:
    clock = FakeClock(auto_advance=False)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 5.0)
        tg.start_soon(sleeper, "early", 1.0)
        await wait_all_tasks_blocked()
        assert clock.sleepers == 2
        clock.advance(1.0)
        await wait_all_tasks_blocked()
        assert woke == ["early"]
        clock.advance(4.0)
    assert woke == ["early", "late"]
