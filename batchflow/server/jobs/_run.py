"""One job's way through its stages: processing (:mod:`._processing`), export, finish.

Every state change is a compare-and-set on ``bp_jobs.state`` so an abort from the API always
wins over a scheduler update racing it. A crash at any point leaves a state that
:meth:`Scheduler.resume` plus a fresh :class:`JobRun` continue from: tasks that were running go
back to pending and run again into a fresh directory; succeeded tasks are never recomputed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from batchflow.protocol.jobs import JobDefinition, LogSeverity
from batchflow.server.jobs._export import ArchiveFormat, export_archive
from batchflow.server.jobs._processing import ProcessingStage, new_task
from batchflow.server.jobs._store import effective_definition, inserted_pk, shielded, write_log
from batchflow.server.jobs.executors import Executor
from batchflow.server.jobs.ports import StagedItem, StagingPort
from batchflow.server.jobs.schema import jobs, stages, tasks, utcnow

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

    def __init__(self, ctx: RunContext, job: Row[Any]) -> None:
        self.ctx = ctx
        self.job = job
        self.pk: int = job.id
        self.definition: JobDefinition = effective_definition(job.definition, job.restart_overrides)

    async def execute(self) -> None:
        state = self.job.state
        if state == "pending":
            if not await ProcessingStage(self).plan():
                return
            state = "processing"
        if state == "processing":
            if not await ProcessingStage(self).run():
                return
            state = "export"
        if state == "export":
            await self.run_export()

    # -- helpers -----------------------------------------------------------------------------

    async def transition(self, conn: AsyncConnection, from_state: str, **values: Any) -> bool:
        result = await conn.execute(
            update(jobs)
            .where(jobs.c.id == self.pk, jobs.c.state == from_state)
            .values(last_update=utcnow(), **values)
        )
        return result.rowcount == 1

    async def log(
        self,
        severity: LogSeverity,
        log_type: str,
        payload: dict[str, Any],
        *,
        stage_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        """Append one log entry in its own transaction."""
        async with shielded(self.ctx.engine.begin()) as conn:
            await write_log(
                conn, self.pk, severity, log_type, payload, stage_id=stage_id, task_id=task_id
            )

    async def fail(self, from_state: str, log_type: str, payload: dict[str, Any]) -> None:
        async with shielded(self.ctx.engine.begin()) as conn:
            if await self.transition(
                conn,
                from_state,
                state="failed",
                is_terminal=True,
                error=True,
                notified=False,
                last_notification={"type": "job-state", "state": "failed", "reason": log_type},
            ):
                await write_log(conn, self.pk, "error", log_type, payload)

    async def stage(self, stage_id: str) -> Row[Any] | None:
        async with shielded(self.ctx.engine.connect()) as conn:
            return (
                await conn.execute(
                    select(stages).where(stages.c.job_pk == self.pk, stages.c.stage_id == stage_id)
                )
            ).first()

    def task_dir(self, stage_id: str, task_id: str) -> Path:
        """Scratch directory of one task (wiped before each attempt)."""
        workspace: str = self.job.workspace
        job_id: str = self.job.job_id
        return self.ctx.work_dir / workspace / job_id / stage_id / task_id

    async def finish_task(
        self,
        row: Row[Any],
        status: str,
        notification: dict[str, Any],
        *,
        machine_seconds: float,
        processed: int = 0,
        failed: int = 0,
        result_file: str | None = None,
    ) -> None:
        async with shielded(self.ctx.engine.begin()) as conn:
            await conn.execute(
                update(tasks)
                .where(tasks.c.id == row.id)
                .values(
                    status=status,
                    notification=notification,
                    progress=1.0 if status == "succeeded" else tasks.c.progress,
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
        processing = await self.stage("processing")
        source_batch = processing.output_batches[0] if processing is not None else None
        files = (
            sorted(
                await self.ctx.staging.list_items(workspace, source_batch, None),
                key=lambda item: item.name,
            )
            if source_batch is not None
            else []
        )
        stage = await self.stage("export") or await self._plan_export(files)
        by_name = {item.name: item for item in files}
        extension = self.ctx.archive_format
        export_failed = False
        async with shielded(self.ctx.engine.connect()) as conn:
            todo = (
                await conn.execute(
                    select(tasks)
                    .where(tasks.c.stage_pk == stage.id, tasks.c.status != "succeeded")
                    .order_by(tasks.c.id)
                )
            ).all()
        for row in todo:
            async with shielded(self.ctx.engine.connect()) as conn:
                state = (
                    await conn.execute(select(jobs.c.state).where(jobs.c.id == self.pk))
                ).scalar_one()
            if state != "export":
                return
            name = f"{job_id}-{row.task_id}.{extension}"
            target = self.task_dir("export", row.task_id) / name
            members = [by_name[n] for n in row.items if n in by_name]
            started = time.monotonic()
            async with shielded(self.ctx.engine.begin()) as conn:
                await conn.execute(
                    update(tasks)
                    .where(tasks.c.id == row.id)
                    .values(status="running", attempts=tasks.c.attempts + 1, updated_at=utcnow())
                )
            batch = stage.output_batches[0]
            try:
                prefix = await self.ctx.staging.output_prefix(workspace, batch)
                blob = await anyio.to_thread.run_sync(
                    export_archive,
                    self.ctx.staging.blob_store,
                    members,
                    target,
                    f"{prefix}/{row.task_id}/archive",
                    self.ctx.archive_format,
                )
                await self.ctx.staging.add_output_blob(workspace, batch, blob)
            except OSError as exc:
                export_failed = True
                await self.finish_task(
                    row, "failed", {"reason": str(exc)},
                    machine_seconds=time.monotonic() - started,
                )  # fmt: skip
                await self.log(
                    "error", "export-failed", {"reason": str(exc)},
                    stage_id="export", task_id=row.task_id,
                )  # fmt: skip
                continue
            await self.finish_task(
                row, "succeeded", {"files": len(members)},
                machine_seconds=time.monotonic() - started, processed=len(members),
                result_file=name,
            )  # fmt: skip
            await anyio.to_thread.run_sync(shutil.rmtree, target.parent, True)
        await self._finish_job(stage.id, export_failed)

    async def _plan_export(self, files: Sequence[StagedItem]) -> Row[Any]:
        run = int(self.job.run)
        batch = f"{self.job.job_id}-export" + (f"-{run}" if run else "")
        await self.ctx.staging.create_output_batch(
            self.job.workspace,
            batch,
            content_type="archives",
            display_name=f"{self.job.job_id} export archives",
        )
        size = self.ctx.files_per_archive
        chunks = [files[i : i + size] for i in range(0, len(files), size)]
        now = utcnow()
        async with shielded(self.ctx.engine.begin()) as conn:
            result = await conn.execute(
                insert(stages).values(
                    job_pk=self.pk,
                    stage_id="export",
                    status="running",
                    tasks_number=len(chunks),
                    output_batches=[batch],
                    notification={},
                    started_at=now,
                    updated_at=now,
                )
            )
            stage_pk = inserted_pk(result)
            if chunks:
                await conn.execute(
                    insert(tasks),
                    [
                        new_task(self.pk, stage_pk, index, [f.name for f in chunk], now)
                        for index, chunk in enumerate(chunks)
                    ],
                )
            await write_log(
                conn,
                self.pk,
                "info",
                "export-planned",
                {"files": len(files), "archives": len(chunks), "outputBatch": batch},
                stage_id="export",
            )
            return (await conn.execute(select(stages).where(stages.c.id == stage_pk))).one()

    async def _finish_job(self, stage_pk: int, export_failed: bool) -> None:
        now = utcnow()
        async with shielded(self.ctx.engine.begin()) as conn:
            await conn.execute(
                update(stages)
                .where(stages.c.id == stage_pk)
                .values(status="failed" if export_failed else "succeeded", updated_at=now)
            )
            error = bool(
                (await conn.execute(select(jobs.c.error).where(jobs.c.id == self.pk))).scalar_one()
            )
            error = error or export_failed
            if await self.transition(
                conn,
                "export",
                state="completed",
                is_terminal=True,
                error=error,
                notified=False,
                last_notification={"type": "job-state", "state": "completed", "error": error},
            ):
                await write_log(
                    conn,
                    self.pk,
                    "warning" if error else "info",
                    "job-completed",
                    {"error": error},
                )
