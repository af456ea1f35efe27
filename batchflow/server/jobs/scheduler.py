"""The scheduler: a background service that drives every unfinished job to a terminal state.

State lives in the catalog (:mod:`batchflow.server.jobs.schema`), never only in memory, so the
server can crash at any point: :meth:`Scheduler.resume` (called by :meth:`run` on start) puts
tasks that were running back to pending, and the loop carries on. Finished jobs with a
``notificationsURL`` are announced through the :class:`Notifier` at least once.

Run it in the app's task group::

    scheduler = Scheduler(engine, staging, LocalProcessExecutor(2), notifier,
                          SchedulerConfig(work_dir=data_dir / "jobs"))
    await task_group.start(scheduler.run)
    service = JobService(engine, staging, workflow_exists=..., on_change=scheduler.wake)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from batchflow.server.jobs._export import ArchiveFormat
from batchflow.server.jobs._processing import plan_chunks
from batchflow.server.jobs._run import JobRun, RunContext
from batchflow.server.jobs._spec import DEFAULT_RUNNER
from batchflow.server.jobs._store import job_move, job_notification, shielded, task_move, write_log
from batchflow.server.jobs.executors import Executor
from batchflow.server.jobs.ports import Notifier, StagingPort
from batchflow.server.jobs.records import (
    job_by_pk,
    stranded_tasks,
    unannounced_jobs,
    unfinished_job_pks,
)
from batchflow.server.jobs.schema import jobs, tasks, utcnow
from batchflow.server.jobs.states import JobState, TaskStatus

__all__ = ["Scheduler", "SchedulerConfig", "detect_gpu", "plan_chunks"]

_log = structlog.get_logger(__name__)


def detect_gpu() -> bool:
    """True when an NVIDIA driver is visible (``nvidia-smi`` on PATH)."""
    return shutil.which("nvidia-smi") is not None


def _describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, or of each leaf of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Tuning knobs; only ``work_dir`` (scratch space for task outputs) is required.

    ``items_per_task``: a processing stage has ``max(ceil(n / items_per_task),
    min(n, maxParallelTasks))`` tasks. ``files_per_archive``: files per export archive.
    ``runner``: the worker-side TaskRunner import path (tests plug in fakes).
    """

    work_dir: Path
    poll_interval: float = 2.0
    watch_interval: float = 0.5  # abort/timeout checks and progress flushes while tasks run
    items_per_task: int = 500
    files_per_archive: int = 1000
    archive_format: ArchiveFormat = "tar.gz"
    max_concurrent_jobs: int = 4
    has_gpu: bool | None = None  # None: detect_gpu()
    workflows_file: Path | None = None
    runner: str = DEFAULT_RUNNER


class Scheduler:
    """Polls the catalog for unfinished jobs and drives each in its own task."""

    def __init__(
        self,
        engine: AsyncEngine,
        staging: StagingPort,
        executor: Executor,
        notifier: Notifier,
        config: SchedulerConfig,
    ) -> None:
        self._engine = engine
        self._notifier = notifier
        self._config = config
        self._context = RunContext(
            engine=engine,
            staging=staging,
            executor=executor,
            work_dir=config.work_dir,
            items_per_task=config.items_per_task,
            files_per_archive=config.files_per_archive,
            archive_format=config.archive_format,
            watch_interval=config.watch_interval,
            has_gpu=detect_gpu() if config.has_gpu is None else config.has_gpu,
            workflows_file=config.workflows_file,
            runner=config.runner,
        )
        self._wake = anyio.Event()
        self._active: set[int] = set()

    def wake(self) -> None:
        """Look at the catalog now instead of at the next poll (new job, abort, restart)."""
        self._wake.set()

    async def resume(self) -> int:
        """Put tasks left running by a previous process back to pending; returns how many.

        Their partial output is discarded when they run again (fresh output directory);
        succeeded tasks keep their published results and are never recomputed.
        """
        async with shielded(self._engine.begin()) as conn:
            rows = await stranded_tasks(conn)
            for row in rows:
                await conn.execute(
                    task_move(TaskStatus.PENDING, TaskStatus.RUNNING)
                    .where(tasks.c.id == row.pk)
                    .values(progress=0.0, updated_at=utcnow())
                )
                await write_log(
                    conn,
                    row.job_pk,
                    "warning",
                    "task-requeued",
                    {"reason": "the server restarted while the task was running"},
                    task_id=row.task_id,
                )
            # a terminal job can keep running rows only from a crash during abort
            await conn.execute(
                task_move(TaskStatus.ABORTED, TaskStatus.RUNNING)
                .where(tasks.c.job_pk.in_(select(jobs.c.id).where(jobs.c.is_terminal.is_(True))))
                .values(updated_at=utcnow())
            )
        return len(rows)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Resume, then serve forever (cancel the enclosing scope to stop)."""
        await self.resume()
        limiter = anyio.CapacityLimiter(self._config.max_concurrent_jobs)
        async with anyio.create_task_group() as group:
            task_status.started()
            while True:
                self._wake = anyio.Event()
                await self._announce_finished()
                for job_pk in await self._unfinished():
                    if job_pk not in self._active:
                        self._active.add(job_pk)
                        group.start_soon(self._drive, job_pk, limiter)
                with anyio.move_on_after(self._config.poll_interval):
                    await self._wake.wait()

    async def _unfinished(self) -> list[int]:
        async with shielded(self._engine.connect()) as conn:
            return await unfinished_job_pks(conn)

    async def _drive(self, job_pk: int, limiter: anyio.CapacityLimiter) -> None:
        try:
            async with limiter:
                async with shielded(self._engine.connect()) as conn:
                    job = await job_by_pk(conn, job_pk)
                if job is None or job.is_terminal:
                    return
                with structlog.contextvars.bound_contextvars(job_id=job.job_id):
                    await JobRun(self._context, job).execute()
        except Exception as exc:  # noqa: BLE001  # one broken job must not stop the others
            _log.exception("job failed unexpectedly", job_pk=job_pk)
            await self._fail_unexpectedly(job_pk, exc)
        finally:
            self._active.discard(job_pk)
            self.wake()

    async def _fail_unexpectedly(self, job_pk: int, exc: Exception) -> None:
        try:
            async with shielded(self._engine.begin()) as conn:
                changed = await conn.execute(
                    job_move(JobState.FAILED)  # from whatever live state it was in
                    .where(jobs.c.id == job_pk)
                    .values(error=True, last_notification=job_notification(JobState.FAILED))
                )
                if changed.rowcount:
                    for before, after in (
                        (TaskStatus.RUNNING, TaskStatus.FAILED),
                        (TaskStatus.PENDING, TaskStatus.ABORTED),
                    ):
                        await conn.execute(
                            task_move(after, before)
                            .where(tasks.c.job_pk == job_pk)
                            .values(updated_at=utcnow())
                        )
                    await write_log(
                        conn,
                        job_pk,
                        "error",
                        "internal-error",
                        {"reason": _describe(exc)},
                    )
        except Exception:  # noqa: BLE001
            _log.exception("could not record the failure of a job", job_pk=job_pk)

    async def _announce_finished(self) -> None:
        """Tell the notifier about terminal jobs not yet announced, then mark them."""
        async with shielded(self._engine.connect()) as conn:
            finished = await unannounced_jobs(conn)
        for job in finished:
            url = job.definition.get("notificationsURL")
            if url:
                try:
                    await self._notifier.job_finished(job.job_id, url, not job.error)
                except Exception:  # noqa: BLE001  # retried at the next tick
                    _log.exception("job notification failed", job_id=job.job_id)
                    continue
            async with shielded(self._engine.begin()) as conn:
                await conn.execute(update(jobs).where(jobs.c.id == job.pk).values(notified=True))
