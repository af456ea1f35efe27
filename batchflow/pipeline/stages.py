"""Stages joined by small bounded memory object streams, with statistics snapshots.

A :class:`Stage` runs ``workers`` tasks that each own a ``clone()`` of the stage's receive and
send streams and close them when done, so end-of-stream propagates downstream once every worker
of a stage has finished. The bounded buffers give backpressure: a slow stage holds at most
``buffer + workers`` items from the stage before it. Any unhandled exception cancels the whole
task group (the whole :class:`Pipeline`); per-item failures can be turned into counts and records
with ``on_error`` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchflow.pipeline._groups import collapse_errors
from batchflow.pipeline.retry import SYSTEM_CLOCK, Clock

__all__ = [
    "Pipeline",
    "ProgressEvent",
    "Stage",
    "StageCounters",
    "StageStats",
    "run_workers",
]

InT = TypeVar("InT")
OutT = TypeVar("OutT")

ErrorHandler = Callable[[Any, Exception], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StageStats:
    """A snapshot of one stage's counters (times come from the stage's clock).

    ``items_out`` counts results passed on (or consumed, for a sink), ``skipped`` items ``fn``
    dropped, ``failed`` items handed to ``on_error``; ``busy_seconds`` is time spent in ``fn``
    summed over workers.
    """

    name: str
    workers: int
    items_in: int = 0
    items_out: int = 0
    skipped: int = 0
    failed: int = 0
    in_flight: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    busy_seconds: float = 0.0

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def utilisation(self, now: float) -> float:
        """Share of worker time spent in ``fn`` so far (0..1); low means starved by upstream."""
        capacity = self.elapsed(now) * self.workers
        return min(self.busy_seconds / capacity, 1.0) if capacity > 0 else 0.0

    def elapsed(self, now: float) -> float:
        """Seconds since the stage started (until it finished), 0 before it starts."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else now
        return max(end - self.started_at, 0.0)


class StageCounters:
    """The mutable counters behind :class:`StageStats`; owned and updated by one stage."""

    __slots__ = (
        "busy_seconds",
        "failed",
        "finished_at",
        "in_flight",
        "items_in",
        "items_out",
        "name",
        "skipped",
        "started_at",
        "workers",
    )

    def __init__(self, name: str, workers: int = 1) -> None:
        self.name = name
        self.workers = workers
        self.items_in = 0
        self.items_out = 0
        self.skipped = 0
        self.failed = 0
        self.in_flight = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.busy_seconds = 0.0

    def snapshot(self) -> StageStats:
        return StageStats(
            name=self.name,
            workers=self.workers,
            items_in=self.items_in,
            items_out=self.items_out,
            skipped=self.skipped,
            failed=self.failed,
            in_flight=self.in_flight,
            started_at=self.started_at,
            finished_at=self.finished_at,
            busy_seconds=self.busy_seconds,
        )


async def _worker(  # noqa: PLR0917  # private, called by start_soon (positional only)
    receive: MemoryObjectReceiveStream[InT],
    send: MemoryObjectSendStream[OutT] | None,
    fn: Callable[[InT], Awaitable[OutT | None]],
    counters: StageCounters,
    clock: Clock,
    on_error: ErrorHandler | None,
) -> None:
    try:
        async for item in receive:
            counters.items_in += 1
            counters.in_flight += 1
            try:
                began = clock.now()
                try:
                    result = await fn(item)
                except Exception as exc:
                    if on_error is None:
                        raise
                    counters.failed += 1
                    await on_error(item, exc)
                    continue
                finally:
                    counters.busy_seconds += clock.now() - began
                if result is None:
                    counters.skipped += 1
                    continue
                if send is not None:
                    await send.send(result)
                counters.items_out += 1
            finally:
                counters.in_flight -= 1
    finally:
        receive.close()
        if send is not None:
            send.close()


async def run_workers(
    n: int,
    receive: MemoryObjectReceiveStream[InT],
    send: MemoryObjectSendStream[OutT] | None,
    fn: Callable[[InT], Awaitable[OutT | None]],
    counters: StageCounters,
    *,
    clock: Clock = SYSTEM_CLOCK,
    on_error: ErrorHandler | None = None,
) -> None:
    """Run ``n`` workers applying ``fn`` to items of ``receive`` and sending results to ``send``.

    Takes ownership of both streams (closes them). ``fn`` returning ``None`` drops the item
    (counted as skipped). With ``send=None`` the stage is a sink.
    """
    try:
        if n < 1:
            raise ValueError("a stage needs at least one worker")
        counters.workers = n
        counters.started_at = clock.now()
        async with collapse_errors(), anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(
                    _worker,
                    receive.clone(),
                    send.clone() if send is not None else None,
                    fn,
                    counters,
                    clock,
                    on_error,
                )
            receive.close()
            if send is not None:
                send.close()
    finally:
        receive.close()
        if send is not None:
            send.close()
        counters.finished_at = clock.now()


class Stage(Generic[InT, OutT]):
    """A named map/filter step run by ``workers`` tasks; see :func:`run_workers`."""

    def __init__(
        self,
        name: str,
        fn: Callable[[InT], Awaitable[OutT | None]],
        *,
        workers: int = 1,
        on_error: ErrorHandler | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if workers < 1:
            raise ValueError("a stage needs at least one worker")
        self.name = name
        self.fn = fn
        self.workers = workers
        self.on_error = on_error
        self.clock = clock
        self.counters = StageCounters(name, workers)

    async def run(
        self,
        receive: MemoryObjectReceiveStream[InT],
        send: MemoryObjectSendStream[OutT] | None = None,
    ) -> None:
        """Consume ``receive`` until it ends; owns and closes both streams."""
        await run_workers(
            self.workers,
            receive,
            send,
            self.fn,
            self.counters,
            clock=self.clock,
            on_error=self.on_error,
        )

    def statistics(self) -> StageStats:
        return self.counters.snapshot()


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """What progress output shows: elapsed time and every stage's snapshot."""

    elapsed: float
    stages: tuple[StageStats, ...]
    done: bool = False

    def stage(self, name: str) -> StageStats:
        for stats in self.stages:
            if stats.name == name:
                return stats
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (one JSON line per event in machine-readable output)."""
        return {
            "elapsed": round(self.elapsed, 3),
            "done": self.done,
            "stages": [asdict(s) for s in self.stages],
        }


Producer = Callable[[MemoryObjectSendStream[Any]], Awaitable[None]]
Consumer = Callable[[MemoryObjectReceiveStream[Any]], Awaitable[None]]


class Pipeline:
    """A linear chain ``source -> stages... -> sink`` joined by bounded streams of ``buffer``."""

    def __init__(
        self, *stages: Stage[Any, Any], buffer: int = 16, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if buffer < 0:
            raise ValueError("buffer must be >= 0")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        self.stages = stages
        self.buffer = buffer
        self.clock = clock
        self._started: float | None = None
        self._done = False

    def statistics(self) -> tuple[StageStats, ...]:
        return tuple(s.statistics() for s in self.stages)

    def progress(self) -> ProgressEvent:
        elapsed = 0.0 if self._started is None else self.clock.now() - self._started
        return ProgressEvent(elapsed=elapsed, stages=self.statistics(), done=self._done)

    async def run(
        self,
        source: Producer,
        sink: Consumer | None = None,
        *,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        """Run everything in one task group; return when the last stream has ended.

        ``source(send)`` must send items and close ``send`` (it is closed for it anyway).
        ``on_progress`` gets an event every ``interval`` seconds of the pipeline's clock and a
        final ``done`` one (with a ``FakeClock``, use ``auto_advance=False`` and ``advance()``).
        """
        if not self.stages and sink is None:
            raise ValueError("a pipeline needs at least one stage or a sink")
        self._started = self.clock.now()
        self._done = False
        async with collapse_errors(), anyio.create_task_group() as outer:
            if on_progress is not None:
                outer.start_soon(self._tick, on_progress, interval)
            async with anyio.create_task_group() as tg:
                send, receive = anyio.create_memory_object_stream[Any](self.buffer)
                tg.start_soon(_produce, source, send)
                for stage in self.stages:
                    last = stage is self.stages[-1]
                    if last and sink is None:
                        tg.start_soon(stage.run, receive, None)
                        break
                    next_send, next_receive = anyio.create_memory_object_stream[Any](self.buffer)
                    tg.start_soon(stage.run, receive, next_send)
                    receive = next_receive
                else:
                    if sink is not None:
                        tg.start_soon(_consume, sink, receive)
                    else:
                        receive.close()
            self._done = True
            outer.cancel_scope.cancel()
        if on_progress is not None:
            on_progress(self.progress())

    async def _tick(self, on_progress: Callable[[ProgressEvent], None], interval: float) -> None:
        while True:
            await self.clock.sleep(interval)
            on_progress(self.progress())


async def _produce(source: Producer, send: MemoryObjectSendStream[Any]) -> None:
    with send:
        await source(send)


async def _consume(sink: Consumer, receive: MemoryObjectReceiveStream[Any]) -> None:
    with receive:
        await sink(receive)
