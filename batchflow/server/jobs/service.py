"""JobService: the batch-processing API over the catalog (create, read, abort, restart, logs).

It validates and records; the :class:`~batchflow.server.jobs.scheduler.Scheduler` does the work.
``on_change`` (usually ``scheduler.wake``) is called after every write so new jobs, aborts and
restarts are picked up without waiting for the poll interval. Abort and restart are moves of
the job state machine (:mod:`.states`): a move it refuses is never written.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from batchflow.errors import ConflictError, NotFoundError
from batchflow.protocol.ids import validate_job_id
from batchflow.protocol.jobs import (
    Job,
    JobStage,
    ListJobsResponse,
    ListLogsResponse,
    ListTasksResponse,
    LogSeverity,
    RestartOverrides,
)
from batchflow.server.core.paging import decode_token, page_of
from batchflow.server.core.paging import page_size as clamp_page_size
from batchflow.server.jobs._store import (
    definition_digest,
    inserted_pk,
    job_move,
    job_notification,
    parse_definition,
    stage_move,
    task_move,
    write_log,
)
from batchflow.server.jobs.ports import StagingPort, WorkflowExists
from batchflow.server.jobs.records import (
    JobRecord,
    job_by_id,
    job_page,
    job_stage,
    job_stages,
    log_page,
    machine_seconds_spent,
    task_page,
)
from batchflow.server.jobs.schema import jobs, stages, tasks, utcnow
from batchflow.server.jobs.states import (
    JOB,
    RESTARTED,
    IllegalTransitionError,
    JobState,
    StageId,
    TaskStatus,
)

__all__ = ["JobService", "WorkflowCheck"]

WorkflowCheck = Callable[[str], Awaitable[bool]]
"""The awaitable form of :data:`~batchflow.server.jobs.ports.WorkflowExists`: a registry that
loads in a thread is awaited, never loaded or waited for on the event loop."""


class JobService:
    """The BP routes' backend; every method takes the workspace the request addressed."""

    def __init__(
        self,
        engine: AsyncEngine,
        staging: StagingPort,
        *,
        workflow_exists: WorkflowExists | WorkflowCheck | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._staging = staging
        self._workflow_exists = workflow_exists
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    @staticmethod
    async def _job(conn: AsyncConnection, workspace: str, job_id: str) -> JobRecord:
        job = await job_by_id(conn, workspace, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} not found in workspace {workspace!r}")
        return job

    async def create_job(
        self,
        workspace: str,
        job_id: str,
        definition: Mapping[str, Any],
        name: str | None = None,
    ) -> bool:
        """Record a new job; True if created, False if it already existed identically.

        Raises UsageError (bad id, unsupported type, invalid definition), NotFoundError
        (unknown workflow or input batch), ConflictError (same id, other definition).
        """
        validate_job_id(job_id)
        model = parse_definition(definition)
        digest = definition_digest(model)
        async with self._engine.connect() as conn:
            existing = await job_by_id(conn, workspace, job_id)
        if existing is not None:
            return self._same(job_id, existing.digest, digest)
        workflow_id = model.processing_specification.workflow_id
        if self._workflow_exists is not None:
            found = self._workflow_exists(workflow_id)
            if inspect.isawaitable(found):
                found = await found
            if not found:
                raise NotFoundError(f"workflow {workflow_id!r} not found")
        batch_id = model.job_input.batch_id
        if not await self._staging.batch_exists(workspace, batch_id):
            raise NotFoundError(f"batch {batch_id!r} not found in workspace {workspace!r}")
        now = utcnow()
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    insert(jobs).values(
                        workspace=workspace,
                        job_id=job_id,
                        name=name or job_id,
                        definition=dict(definition),
                        digest=digest,
                        state=JobState.PENDING,
                        error=False,
                        is_terminal=False,
                        current_stage=None,
                        restart_overrides=[],
                        last_notification=job_notification(JobState.PENDING),
                        run=0,
                        machine_seconds_base=0.0,
                        notified=False,
                        created_at=now,
                        last_update=now,
                    )
                )
                job_pk = inserted_pk(result)
                await write_log(
                    conn,
                    job_pk,
                    "info",
                    "job-created",
                    {"jobType": model.type, "batchId": batch_id, "workflowId": workflow_id},
                    module="batchflow.api",
                )
        except IntegrityError:  # a concurrent create of the same id won the race
            async with self._engine.connect() as conn:
                job = await self._job(conn, workspace, job_id)
            return self._same(job_id, job.digest, digest)
        self._changed()
        return True

    @staticmethod
    def _same(job_id: str, existing: str, digest: str) -> bool:
        if existing != digest:
            raise ConflictError(f"job {job_id!r} already exists with a different definition")
        return False

    async def get_job(self, workspace: str, job_id: str) -> Job:
        async with self._engine.connect() as conn:
            return (await self._job(conn, workspace, job_id)).wire()

    async def list_jobs(
        self, workspace: str, page_size: int | None = None, token: str | None = None
    ) -> ListJobsResponse:
        size = clamp_page_size(page_size)
        after = decode_token(token)
        async with self._engine.connect() as conn:
            rows = await job_page(conn, workspace, after, size + 1)
        rows, next_page = page_of(rows, size, lambda row: row.pk)
        return ListJobsResponse(
            jobs=[r.wire() for r in rows],
            next_page_token=next_page,
        )

    async def list_stages(self, workspace: str, job_id: str) -> list[JobStage]:
        async with self._engine.connect() as conn:
            job = await self._job(conn, workspace, job_id)
            return [stage.wire() for stage in await job_stages(conn, job.pk)]

    async def list_tasks(
        self,
        workspace: str,
        job_id: str,
        stage_id: str,
        page_size: int | None = None,
        token: str | None = None,
    ) -> ListTasksResponse:
        size = clamp_page_size(page_size)
        after = decode_token(token)
        async with self._engine.connect() as conn:
            job = await self._job(conn, workspace, job_id)
            stage = None
            if stage_id in set(StageId):
                stage = await job_stage(conn, job.pk, StageId(stage_id))
            if stage is None:
                raise NotFoundError(f"stage {stage_id!r} not found in job {job_id!r}")
            rows = await task_page(conn, stage.pk, after, size + 1)
        rows, next_page = page_of(rows, size, lambda row: row.pk)
        return ListTasksResponse(
            tasks=[r.wire() for r in rows],
            next_page_token=next_page,
        )

    async def list_logs(
        self,
        workspace: str,
        job_id: str,
        severity: LogSeverity | None = None,
        page_size: int | None = None,
        token: str | None = None,
    ) -> ListLogsResponse:
        """Log entries oldest first; ``severity`` keeps only that exact level."""
        size = clamp_page_size(page_size)
        after = decode_token(token)
        async with self._engine.connect() as conn:
            job = await self._job(conn, workspace, job_id)
            rows = await log_page(conn, job.pk, after, size + 1, severity)
        rows, next_page = page_of(rows, size, lambda row: row.pk)
        return ListLogsResponse(
            logs=[r.entry for r in rows],
            next_page_token=next_page,
        )

    async def abort(self, workspace: str, job_id: str) -> None:
        """Mark the job aborted (terminal, error); the scheduler stops its running tasks.

        Aborting a terminal job is a no-op: the state machine refuses the move, nothing changes.
        """
        async with self._engine.begin() as conn:
            job = await self._job(conn, workspace, job_id)
            try:
                JOB.check(job.state, JobState.ABORTED)
            except IllegalTransitionError:
                return
            now = utcnow()
            changed = await conn.execute(
                job_move(JobState.ABORTED)  # from any live state: the abort wins a race
                .where(jobs.c.id == job.pk)
                .values(error=True, last_notification=job_notification(JobState.ABORTED))
            )
            if changed.rowcount == 0:
                return
            await conn.execute(
                task_move(TaskStatus.ABORTED, TaskStatus.PENDING)  # running: the scheduler's
                .where(tasks.c.job_pk == job.pk)
                .values(notification={"reason": "job aborted"}, updated_at=now)
            )
            await conn.execute(
                stage_move(TaskStatus.ABORTED)
                .where(stages.c.job_pk == job.pk)
                .values(updated_at=now)
            )
            await write_log(
                conn, job.pk, "warning", "job-aborted", {"by": "api"}, module="batchflow.api"
            )
        self._changed()

    async def restart(
        self, workspace: str, job_id: str, overrides: RestartOverrides | None = None
    ) -> None:
        """Re-run every task that did not succeed (then export again), with ``overrides``.

        Only a terminal job can be restarted (409 otherwise).
        """
        async with self._engine.begin() as conn:
            job = await self._job(conn, workspace, job_id)
            processing = await job_stage(conn, job.pk, StageId.PROCESSING)
            target = JobState.PENDING if processing is None else JobState.PROCESSING
            try:
                JOB.check(job.state, target)
            except IllegalTransitionError as exc:
                raise ConflictError(f"job {job_id!r} is still running: abort it or wait") from exc
            now = utcnow()
            spent = await machine_seconds_spent(conn, job.pk)
            await conn.execute(
                task_move(TaskStatus.PENDING)
                .where(tasks.c.job_pk == job.pk)
                .values(progress=0.0, notification={}, updated_at=now)
            )
            export = await job_stage(conn, job.pk, StageId.EXPORT)
            if export is not None:
                await conn.execute(delete(tasks).where(tasks.c.stage_pk == export.pk))
                await conn.execute(delete(stages).where(stages.c.id == export.pk))
            overrides_list = [dict(o) for o in job.restart_overrides]
            if overrides is not None:
                overrides_list.append(overrides.wire())
            await conn.execute(
                job_move(target, job.state)
                .where(jobs.c.id == job.pk)
                .values(
                    error=False,
                    run=job.run + 1,
                    machine_seconds_base=spent,
                    restart_overrides=overrides_list,
                    last_notification=job_notification(RESTARTED),
                )
            )
            await write_log(
                conn,
                job.pk,
                "info",
                "job-restarted",
                {"run": job.run + 1, "overrides": overrides.wire() if overrides else None},
                module="batchflow.api",
            )
        self._changed()
