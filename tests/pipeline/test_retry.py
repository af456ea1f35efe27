"""retry_call with a fake clock: bounded, jittered, Retry-After aware, deadline aware."""

from __future__ import annotations

import random

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
from batchflow.pipeline import RetryEvent, SystemClock, is_transient, retry_call
from batchflow.pipeline.retry import Clock
from batchflow.testing import FakeClock


class Flaky:
    """Fails with the given errors in order, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_clocks_implement_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)


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
async def test_success_after_transient_failures_with_bounded_delays() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0, deadline=None)
    fn = Flaky(*(NetworkError("reset") for _ in range(5)))
    events: list[RetryEvent] = []
    result = await retry_call(
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
async def test_full_jitter_spreads_delays() -> None:
    rng = random.Random(1)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=2, base_delay=10.0, max_delay=10.0, deadline=None)
    for _ in range(50):
        await retry_call(Flaky(TransientError("x")), policy=policy, clock=clock, rng=rng)
    assert min(clock.sleeps) < 2.0
    assert max(clock.sleeps) > 8.0
    assert all(0.0 <= d <= 10.0 for d in clock.sleeps)


@pytest.mark.anyio
async def test_retry_after_is_respected_and_capped() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=4, base_delay=0.01, max_delay=0.02, deadline=None, max_retry_after=30.0
    )
    fn = Flaky(
        RateLimitedError("slow down", retry_after=7.0),
        RateLimitedError("slow down", retry_after=500.0),
        RateLimitedError("slow down", retry_after=None),
    )
    assert await retry_call(fn, policy=policy, clock=clock) == "ok"
    assert clock.sleeps[0] == pytest.approx(7.0)
    assert clock.sleeps[1] == pytest.approx(30.0)
    assert clock.sleeps[2] <= 0.02


@pytest.mark.anyio
async def test_attempts_are_bounded_and_last_error_raised() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, deadline=None)
    errors = [NetworkError(f"fail {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(NetworkError) as info:
        await retry_call(fn, policy=policy, clock=clock)
    assert info.value is errors[2]
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


@pytest.mark.anyio
async def test_permanent_errors_are_not_retried() -> None:
    clock = FakeClock()
    fn = Flaky(NotFoundError("no such batch"))
    with pytest.raises(NotFoundError):
        await retry_call(fn, policy=RetryPolicy(), clock=clock)
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_retry_deadline_raises_retries_exhausted_chained() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=10.0)
    last: list[Exception] = []

    async def always_fails() -> None:
        clock.advance(2.0)  # each attempt takes 2 s of (fake) time
        err = RateLimitedError("busy", retry_after=1.0)
        last.append(err)
        raise err

    with pytest.raises(RetriesExhausted) as info:
        await retry_call(always_fails, policy=policy, clock=clock)
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
async def test_custom_classifier() -> None:
    clock = FakeClock()
    fn = Flaky(KeyError("a"), KeyError("b"))
    result = await retry_call(
        fn,
        policy=RetryPolicy(base_delay=0.0),
        clock=clock,
        classify=lambda e: isinstance(e, KeyError),
    )
    assert result == "ok"
    assert fn.calls == 3


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
