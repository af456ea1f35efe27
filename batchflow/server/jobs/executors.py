"""Executors run one processing task somewhere and hand back its :class:`TaskOutcome`.

The scheduler only knows the :class:`Executor` Protocol, so a Ray executor can be added later
without touching it. Cancelling the scope that awaits ``run_task`` must stop the task within
seconds: :class:`LocalProcessExecutor` kills the worker process (and starts a fresh one for the
next task), :class:`InlineExecutor` (tests) stops between two items.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Any, Literal, Protocol

import anyio
import anyio.to_thread

from batchflow.errors import ConfigError
from batchflow.server.jobs._spec import TaskFailedError, TaskOutcome, TaskSpec
from batchflow.server.jobs.worker import TaskCancelledError, execute_task, serve

__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "LocalProcessExecutor",
    "ProgressCallback",
    "TaskFailedError",
    "TaskOutcome",
    "TaskSpec",
    "make_executor",
]

EXECUTORS = ("local", "inline")
"""``--executor`` choices: worker processes of this machine (default), or threads of the server."""

ProgressCallback = Callable[[float], None]


class Executor(Protocol):
    """Runs processing tasks; at most its own capacity at once (callers may ask for more)."""

    async def run_task(
        self, spec: TaskSpec, *, on_progress: ProgressCallback | None = None
    ) -> TaskOutcome: ...

    async def aclose(self) -> None: ...


class InlineExecutor:
    """Runs tasks on threads of this process; for tests and tiny deployments."""

    def __init__(self, max_workers: int = 2) -> None:
        self._limiter = anyio.CapacityLimiter(max_workers)

    async def run_task(
        self, spec: TaskSpec, *, on_progress: ProgressCallback | None = None
    ) -> TaskOutcome:
        stop = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                lambda: execute_task(spec, on_progress=on_progress, should_stop=stop.is_set),
                limiter=self._limiter,
                abandon_on_cancel=True,
            )
        except TaskCancelledError as exc:  # pragma: no cover - only after a cancel
            raise TaskFailedError(f"task {spec.task_id} was stopped") from exc
        except Exception as exc:
            raise TaskFailedError(f"task {spec.task_id} failed: {exc}") from exc
        finally:
            stop.set()

    async def aclose(self) -> None:
        return None


class _Worker:
    """One long-lived worker process and our end of its pipe."""

    def __init__(self, ctx: multiprocessing.context.BaseContext) -> None:
        self.conn, child = multiprocessing.Pipe(duplex=True)
        self.process: SpawnProcess = ctx.Process(  # type: ignore[attr-defined]
            target=serve, args=(child,), daemon=True, name="batchflow-job-worker"
        )
        self.process.start()
        child.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class LocalProcessExecutor:
    """A pool of up to ``max_workers`` reusable worker processes (spawn/forkserver context).

    Each task runs in one worker; its items run on ``spec.workers`` threads inside it. A
    cancelled or crashed task kills its worker; the next task starts a fresh one.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        start_method: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        self.max_workers = max_workers or max(1, os.cpu_count() or 1)
        self._ctx = multiprocessing.get_context(start_method)
        self._limiter = anyio.CapacityLimiter(self.max_workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False

    async def _checkout(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            self._discard(worker)
        return await anyio.to_thread.run_sync(self._spawn)

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx)
        self._all.add(worker)  # before returning: aclose() kills it even if we are cancelled
        return worker

    def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        worker.kill()

    async def run_task(
        self, spec: TaskSpec, *, on_progress: ProgressCallback | None = None
    ) -> TaskOutcome:
        if self._closed:
            raise TaskFailedError("the executor is closed")
        async with self._limiter:
            worker = await self._checkout()
            healthy = False
            try:
                outcome = await self._exchange(worker, spec, on_progress)
                healthy = True
                return outcome
            finally:
                if healthy and not self._closed:
                    self._idle.append(worker)
                else:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._discard, worker)

    async def _exchange(
        self, worker: _Worker, spec: TaskSpec, on_progress: ProgressCallback | None
    ) -> TaskOutcome:
        try:
            worker.conn.send(spec)
        except OSError as exc:
            raise TaskFailedError(f"task {spec.task_id}: worker pipe broken: {exc}") from exc
        while True:
            try:
                message: tuple[str, Any] = await anyio.to_thread.run_sync(
                    worker.conn.recv, abandon_on_cancel=True
                )
            except (EOFError, OSError) as exc:
                code = worker.process.exitcode
                raise TaskFailedError(
                    f"task {spec.task_id}: worker process died (exit code {code})"
                ) from exc
            kind, value = message
            if kind == "progress":
                if on_progress is not None:
                    on_progress(float(value))
            elif kind == "done":
                return value  # type: ignore[no-any-return]
            else:
                raise TaskFailedError(f"task {spec.task_id} failed: {value}")

    async def aclose(self) -> None:
        """Stop every worker process (idle ones politely, busy ones by kill)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        with anyio.CancelScope(shield=True):
            for worker in list(self._all):
                await anyio.to_thread.run_sync(self._discard, worker)


def make_executor(kind: str, workers: int | None) -> Executor:
    """The executor ``--executor kind`` names, with ``workers`` at once (default: CPU count)."""
    if kind == "local":
        return LocalProcessExecutor(workers)
    if kind == "inline":
        return InlineExecutor(workers or max(1, os.cpu_count() or 1))
    raise ConfigError(f"unknown --executor {kind!r}: use one of {', '.join(EXECUTORS)}")
