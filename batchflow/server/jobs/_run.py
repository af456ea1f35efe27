"""One job's way through its stages: processing (:mod:`._processing`), export, finish.

Every state change is a move of the state machine (:mod:`.states`) written as a compare-and-set
on ``bp_jobs.state`` (or a task's status), so an abort from the API always wins over a
scheduler update racing it. A crash at any point leaves a state that
:meth:`Scheduler.resume` plus a fresh :class:`JobRun` continue from: tasks that were running go
back to pending and run again into a fresh directory; succeeded tasks are never recomputed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from batchflow.protocol.jobs import JobDefinition, LogSeverity
from batchflow.server.jobs._export import ArchiveFormat, export_archive
from batchflow.server.jobs._processing import ProcessingStage
from batchflow.server.jobs._store import (
    effective_definition,
    insert_stage,
    job_move,
    job_notification,
    shielded,
    stage_move,
    task_move,
    write_log,
)
from batchflow.server.jobs.executors import Executor
from batchflow.server.jobs.ports import StagedItem, StagingPort
from batchflow.server.jobs.records import (
    JobRecord,
    StageRecord,
    TaskRecord,
    job_by_pk,
    job_stage,
    job_state,
    stage_tasks,
)
from batchflow.server.jobs.schema import jobs, stages, tasks, utcnow
from batchflow.server.jobs.states import TASK, JobState, StageId, TaskStatus

__all__ = ["JobRun", "RunContext"]


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a JobRun needs from its scheduler."""

    engine: AsyncEngine
    staging: StagingPort
    executor: Executor
    work_dir: Path
    items_per_task: int
    files_per_archive: int
    archive_format: ArchiveFormat
    watch_interval: float
    has_gpu: bool
    workflows_file: Path | None
    runner: str


class JobRun:
    """Drives one job from its current state to a terminal one (or until cancelled)."""

    def __init__(self, ctx: RunContext, job: JobRecord) -> None:
        self.ctx = ctx
        self.job = job
        self.pk = job.pk
        self.definition: JobDefinition = effective_definition(job)

    async def execute(self) -> None:
        state = self.job.state
        if state is JobState.PENDING:
            if not await ProcessingStage(self).plan():
                return
            state = JobState.PROCESSING
        if state is JobState.PROCESSING:
            if not await ProcessingStage(self).run():
                return
            state = JobState.EXPORT
        if state is JobState.EXPORT:
            await self.run_export()

    # -- helpers -----------------------------------------------------------------------------

    async def transition(
        self,
        conn: AsyncConnection,
        current: JobState,
        target: JobState,
        *,
        error: bool | None = None,
        notification: Mapping[str, object] | None = None,
    ) -> bool:
        """Move the job ``current -> target`` (IllegalTransitionError if the machine forbids
        it); False when it is no longer in ``current`` (an abort won)."""
        statement = job_move(target, current).where(jobs.c.id == self.pk)
        if error is not None:
            statement = statement.values(error=error)
        if notification is not None:
            statement = statement.values(last_notification=dict(notification))
        return (await conn.execute(statement)).rowcount == 1

    async def log(
        self,
        severity: LogSeverity,
        log_type: str,
        payload: Mapping[str, object],
        *,
        stage_id: StageId | None = None,
        task_id: str | None = None,
    ) -> None:
        """Append one log entry in its own transaction."""
        async with shielded(self.ctx.engine.begin()) as conn:
            await write_log(
                conn, self.pk, severity, log_type, payload, stage_id=stage_id, task_id=task_id
            )

    async def fail(self, current: JobState, log_type: str, payload: Mapping[str, object]) -> None:
        async with shielded(self.ctx.engine.begin()) as conn:
            if await self.transition(
                conn,
                current,
                JobState.FAILED,
                error=True,
                notification=job_notification(JobState.FAILED, reason=log_type),
            ):
                await write_log(conn, self.pk, "error", log_type, payload)

    async def stage(self, stage_id: StageId) -> StageRecord | None:
        async with shielded(self.ctx.engine.connect()) as conn:
            return await job_stage(conn, self.pk, stage_id)

    def task_dir(self, stage_id: StageId, task_id: str) -> Path:
        """Scratch directory of one task (wiped before each attempt)."""
        return self.ctx.work_dir / self.job.workspace / self.job.job_id / stage_id.value / task_id

    async def start_task(self, task: TaskRecord) -> bool:
        """Mark ``task`` running (one more attempt); False if it is no longer in the status it
        was read in (an abort won)."""
        async with shielded(self.ctx.engine.begin()) as conn:
            result = await conn.execute(
                task_move(TaskStatus.RUNNING, task.status)
                .where(tasks.c.id == task.pk)
                .values(attempts=tasks.c.attempts + 1, progress=0.0, updated_at=utcnow())
            )
        return result.rowcount == 1

    async def finish_task(
        self,
        task: TaskRecord,
        status: TaskStatus,
        notification: Mapping[str, object],
        *,
        machine_seconds: float,
        processed: int = 0,
        failed: int = 0,
        result_file: str | None = None,
    ) -> None:
        async with shielded(self.ctx.engine.begin()) as conn:
            await conn.execute(
                task_move(status, TaskStatus.RUNNING)
                .where(tasks.c.id == task.pk)
                .values(
                    notification=dict(notification),
                    progress=1.0 if status is TaskStatus.SUCCEEDED else tasks.c.progress,
                    processed=processed,
                    failed=failed,
                    machine_seconds=tasks.c.machine_seconds + machine_seconds,
                    result_file=result_file,
                    updated_at=utcnow(),
                )
            )

    # -- export ------------------------------------------------------------------------------

    async def run_export(self) -> None:
        workspace, job_id = self.job.workspace, self.job.job_id
        processing = await self.stage(StageId.PROCESSING)
        source_batch = processing.output_batches[0] if processing is not None else None
        files = (
            sorted(
                await self.ctx.staging.list_items(workspace, source_batch, None),
                key=lambda item: item.name,
            )
            if source_batch is not None
            else []
        )
        stage = await self.stage(StageId.EXPORT) or await self._plan_export(files)
        by_name = {item.name: item for item in files}
        extension = self.ctx.archive_format
        export_failed = False
        async with shielded(self.ctx.engine.connect()) as conn:
            # not yet succeeded: pending, or failed in a run a crash cut short
            todo = await stage_tasks(conn, stage.pk, TASK.sources(TaskStatus.RUNNING))
        for task in todo:
            async with shielded(self.ctx.engine.connect()) as conn:
                state = await job_state(conn, self.pk)
            if state is not JobState.EXPORT:
                return
            name = f"{job_id}-{task.task_id}.{extension}"
            target = self.task_dir(StageId.EXPORT, task.task_id) / name
            members = [by_name[n] for n in task.items if n in by_name]
            started = time.monotonic()
            if not await self.start_task(task):
                continue
            batch = stage.output_batches[0]
            try:
                prefix = await self.ctx.staging.output_prefix(workspace, batch)
                blob = await anyio.to_thread.run_sync(
                    export_archive,
                    self.ctx.staging.blob_store,
                    members,
                    target,
                    f"{prefix}/{task.task_id}/archive",
                    self.ctx.archive_format,
                )
                await self.ctx.staging.add_output_blob(workspace, batch, blob)
            except OSError as exc:
                export_failed = True
                await self.finish_task(
                    task, TaskStatus.FAILED, {"reason": str(exc)},
                    machine_seconds=time.monotonic() - started,
                )  # fmt: skip
                await self.log(
                    "error", "export-failed", {"reason": str(exc)},
                    stage_id=StageId.EXPORT, task_id=task.task_id,
                )  # fmt: skip
                continue
            await self.finish_task(
                task, TaskStatus.SUCCEEDED, {"files": len(members)},
                machine_seconds=time.monotonic() - started, processed=len(members),
                result_file=name,
            )  # fmt: skip
            await anyio.to_thread.run_sync(shutil.rmtree, target.parent, True)
        await self._finish_job(stage.pk, export_failed)

    async def _plan_export(self, files: Sequence[StagedItem]) -> StageRecord:
        run = self.job.run
        batch = f"{self.job.job_id}-export" + (f"-{run}" if run else "")
        await self.ctx.staging.create_output_batch(
            self.job.workspace,
            batch,
            content_type="archives",
            display_name=f"{self.job.job_id} export archives",
        )
        size = self.ctx.files_per_archive
        chunks = [[f.name for f in files[i : i + size]] for i in range(0, len(files), size)]
        async with shielded(self.ctx.engine.begin()) as conn:
            stage = await insert_stage(conn, self.pk, StageId.EXPORT, batch, chunks)
            await write_log(
                conn,
                self.pk,
                "info",
                "export-planned",
                {"files": len(files), "archives": len(chunks), "outputBatch": batch},
                stage_id=StageId.EXPORT,
            )
        return stage

    async def _finish_job(self, stage_pk: int, export_failed: bool) -> None:
        async with shielded(self.ctx.engine.begin()) as conn:
            await conn.execute(
                stage_move(TaskStatus.FAILED if export_failed else TaskStatus.SUCCEEDED)
                .where(stages.c.id == stage_pk)
                .values(updated_at=utcnow())
            )
            job = await job_by_pk(conn, self.pk)
            error = export_failed or (job is not None and job.error)
            if await self.transition(
                conn,
                JobState.EXPORT,
                JobState.COMPLETED,
                error=error,
                notification=job_notification(JobState.COMPLETED, error=error),
            ):
                await write_log(
                    conn,
                    self.pk,
                    "warning" if error else "info",
                    "job-completed",
                    {"error": error},
                )
