"""Stages and pipelines: backpressure, cancellation on error, termination, statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchflow.pipeline import Pipeline, ProgressEvent, Stage, StageCounters, run_workers
from batchflow.sources import ObjectRef
from batchflow.testing import FakeClock, SyntheticSource


class Counter:
    """A source that sends 0..n-1 and counts what the stream accepted."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sent = 0

    async def __call__(self, send: MemoryObjectSendStream[Any]) -> None:
        async with send:
            for i in range(self.n):
                await send.send(i)
                self.sent += 1


@pytest.mark.anyio
@pytest.mark.parametrize(("buffer", "workers"), [(0, 1), (2, 3), (5, 1)])
async def test_slow_consumer_bounds_producer(buffer: int, workers: int) -> None:
    gate = anyio.Event()
    source = Counter(1000)
    received: list[int] = []

    async def slow(item: int) -> int:
        await gate.wait()
        return item * 2

    async def sink(receive: MemoryObjectReceiveStream[Any]) -> None:
        received.extend([item async for item in receive])

    stage = Stage("slow", slow, workers=workers)
    pipeline = Pipeline(stage, buffer=buffer)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run, source, sink)
            await wait_all_tasks_blocked()
            stats = stage.statistics()
            # each worker holds one item, the buffer holds `buffer`, nothing more was produced
            assert source.sent == buffer + workers
            assert stats.in_flight == workers
            assert stats.items_in == workers
            assert stats.items_out == 0
            assert stats.started_at is not None
            assert not stats.done
            gate.set()
    assert sorted(received) == [2 * i for i in range(1000)]
    final = stage.statistics()
    assert final.items_in == final.items_out == 1000
    assert final.in_flight == 0
    assert final.done


@pytest.mark.anyio
async def test_error_in_one_stage_cancels_pipeline() -> None:
    cancelled: list[str] = []
    never = anyio.Event()

    async def first(item: int) -> int:
        return item

    calls: list[int] = []

    async def boom(item: int) -> int:
        calls.append(item)
        if len(calls) == 2:  # the sink is still blocked on the first item
            raise RuntimeError("stage 2 broke on its second item")
        return item

    async def sink(receive: MemoryObjectReceiveStream[Any]) -> None:
        try:
            async for _ in receive:
                await never.wait()  # a consumer that would block forever
        except anyio.get_cancelled_exc_class():
            cancelled.append("sink")
            raise

    pipeline = Pipeline(Stage("first", first, workers=2), Stage("boom", boom), buffer=1)
    with anyio.fail_after(10), pytest.raises(RuntimeError, match="second item"):
        await pipeline.run(Counter(10_000), sink)
    assert cancelled == ["sink"]


@pytest.mark.anyio
async def test_source_error_propagates_as_itself() -> None:
    async def broken(send: MemoryObjectSendStream[Any]) -> None:
        await send.send(1)
        raise ValueError("listing failed")

    async def ident(item: int) -> int:
        return item

    with anyio.fail_after(10), pytest.raises(ValueError, match="listing failed"):
        await Pipeline(Stage("a", ident), Stage("b", ident, workers=3)).run(broken)


@pytest.mark.anyio
async def test_streams_close_so_pipeline_terminates_and_filters() -> None:
    seen: list[int] = []

    async def evens(page: Sequence[ObjectRef]) -> list[int] | None:
        kept = [int(ref.etag or "0", 16) for ref in page if int(ref.etag or "0", 16) % 2 == 0]
        return kept or None

    async def total(indices: list[int]) -> int:
        return sum(indices)

    async def sink(receive: MemoryObjectReceiveStream[Any]) -> None:
        seen.extend([value async for value in receive])

    source = SyntheticSource(1001, page_size=1)
    first = Stage("evens", evens, workers=4)
    second = Stage("sum", total, workers=2)
    with anyio.fail_after(10):
        await Pipeline(first, second, buffer=2).run(source.list_pages, sink)
    assert sum(seen) == sum(range(0, 1001, 2))
    assert first.statistics().skipped == 500
    assert first.statistics().items_out == 501
    assert second.statistics().items_in == 501
    assert source.statistics().pages == 1001


@pytest.mark.anyio
async def test_on_error_counts_failures_and_keeps_going() -> None:
    failures: list[tuple[int, str]] = []

    async def picky(item: int) -> int:
        if item % 10 == 0:
            raise ValueError(f"bad {item}")
        return item

    async def record(item: Any, exc: Exception) -> None:
        failures.append((item, str(exc)))

    stage = Stage("picky", picky, workers=3, on_error=record)
    with anyio.fail_after(10):
        await Pipeline(stage).run(Counter(100))
    stats = stage.statistics()
    assert stats.failed == 10
    assert stats.items_out == 90
    assert stats.items_in == 100
    assert sorted(i for i, _ in failures) == list(range(0, 100, 10))


@pytest.mark.anyio
async def test_run_workers_directly_owns_streams() -> None:
    send_in, receive_in = anyio.create_memory_object_stream[int](4)
    send_out, receive_out = anyio.create_memory_object_stream[int](4)
    counters = StageCounters("double")

    async def double(i: int) -> int:
        return 2 * i

    out: list[int] = []

    async def consume() -> None:
        async with receive_out:
            out.extend([v async for v in receive_out])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            tg.start_soon(run_workers, 3, receive_in, send_out, double, counters)
            async with send_in:
                for i in range(50):
                    await send_in.send(i)
    assert sorted(out) == [2 * i for i in range(50)]
    assert counters.snapshot().workers == 3
    with pytest.raises(anyio.ClosedResourceError):
        receive_in.receive_nowait()


@pytest.mark.anyio
async def test_progress_events_from_a_fake_clock() -> None:
    clock = FakeClock(auto_advance=False)
    gate = anyio.Event()
    events: list[ProgressEvent] = []

    async def slow(item: int) -> int:
        await gate.wait()
        return item

    stage = Stage("slow", slow, workers=2, clock=clock)
    pipeline = Pipeline(stage, buffer=1, clock=clock)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: pipeline.run(Counter(5), on_progress=events.append, interval=1.0))
            await wait_all_tasks_blocked()
            assert events == []
            clock.advance(1.0)
            await wait_all_tasks_blocked()
            assert len(events) == 1
            assert events[0].elapsed == 1.0
            assert events[0].stage("slow").in_flight == 2
            assert not events[0].done
            gate.set()
    assert events[-1].done
    final = events[-1].stage("slow")
    assert final.items_out == 5
    assert final.busy_seconds == 2.0  # two workers each held an item for the 1 s advanced
    assert final.elapsed(clock.now()) == 1.0
    assert final.utilisation(clock.now()) == 1.0
    line = events[-1].as_dict()
    assert line["done"] is True
    assert line["stages"][0]["name"] == "slow"


def test_stage_validation() -> None:
    async def fn(i: int) -> int:
        return i

    with pytest.raises(ValueError, match="worker"):
        Stage("x", fn, workers=0)
    with pytest.raises(ValueError, match="unique"):
        Pipeline(Stage("x", fn), Stage("x", fn))


@pytest.mark.anyio
async def test_source_straight_into_sink() -> None:
    got: list[int] = []

    async def sink(receive: MemoryObjectReceiveStream[Any]) -> None:
        got.extend([i async for i in receive])

    with anyio.fail_after(10):
        await Pipeline(buffer=0).run(Counter(20), sink)
    assert got == list(range(20))
    with pytest.raises(ValueError, match="at least one stage"):
        await Pipeline().run(Counter(1))
