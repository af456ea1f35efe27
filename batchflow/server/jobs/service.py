"""JobService: the batch-processing API over the catalog (create, read, abort, restart, logs).

It validates and records; the :class:`~batchflow.server.jobs.scheduler.Scheduler` does the work.
``on_change`` (usually ``scheduler.wake``) is called after every write so new jobs, aborts and
restarts are picked up without waiting for the poll interval.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Row
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
from batchflow.server.jobs._store import (
    clamp_page_size,
    decode_token,
    definition_digest,
    encode_token,
    inserted_pk,
    job_from_row,
    log_from_row,
    parse_definition,
    stage_from_row,
    task_from_row,
    write_log,
)
from batchflow.server.jobs.ports import StagingPort, WorkflowExists
from batchflow.server.jobs.schema import jobs, logs, stages, tasks, utcnow

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

    async def _job_row(self, conn: AsyncConnection, workspace: str, job_id: str) -> Row[Any]:
        row = (
            await conn.execute(
                select(jobs).where(jobs.c.workspace == workspace, jobs.c.job_id == job_id)
            )
        ).first()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found in workspace {workspace!r}")
        return row

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
            existing = (
                await conn.execute(
                    select(jobs.c.digest).where(
                        jobs.c.workspace == workspace, jobs.c.job_id == job_id
                    )
                )
            ).scalar_one_or_none()
        if existing is not None:
            return self._same(job_id, existing, digest)
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
                        state="pending",
                        error=False,
                        is_terminal=False,
                        current_stage=None,
                        restart_overrides=[],
                        last_notification={"type": "job-state", "state": "pending"},
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
                row = await self._job_row(conn, workspace, job_id)
            return self._same(job_id, row.digest, digest)
        self._changed()
        return True

    @staticmethod
    def _same(job_id: str, existing: str, digest: str) -> bool:
        if existing != digest:
            raise ConflictError(f"job {job_id!r} already exists with a different definition")
        return False

    async def get_job(self, workspace: str, job_id: str) -> Job:
        async with self._engine.connect() as conn:
            return job_from_row(await self._job_row(conn, workspace, job_id))

    async def list_jobs(
        self, workspace: str, page_size: int | None = None, token: str | None = None
    ) -> ListJobsResponse:
        size = clamp_page_size(page_size)
        after = decode_token(token)
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.workspace == workspace, jobs.c.id > after)
                    .order_by(jobs.c.id)
                    .limit(size + 1)
                )
            ).all()
        more = len(rows) > size
        rows = rows[:size]
        return ListJobsResponse(
            jobs=[job_from_row(r) for r in rows],
            next_page_token=encode_token(rows[-1].id) if more else None,
        )

    async def list_stages(self, workspace: str, job_id: str) -> list[JobStage]:
        async with self._engine.connect() as conn:
            job = await self._job_row(conn, workspace, job_id)
            rows = (
                await conn.execute(
                    select(stages).where(stages.c.job_pk == job.id).order_by(stages.c.id)
                )
            ).all()
        return [stage_from_row(r) for r in rows]

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
            job = await self._job_row(conn, workspace, job_id)
            stage_pk = (
                await conn.execute(
                    select(stages.c.id).where(
                        stages.c.job_pk == job.id, stages.c.stage_id == stage_id
                    )
                )
            ).scalar_one_or_none()
            if stage_pk is None:
                raise NotFoundError(f"stage {stage_id!r} not found in job {job_id!r}")
            rows = (
                await conn.execute(
                    select(tasks)
                    .where(tasks.c.stage_pk == stage_pk, tasks.c.id > after)
                    .order_by(tasks.c.id)
                    .limit(size + 1)
                )
            ).all()
        more = len(rows) > size
        rows = rows[:size]
        return ListTasksResponse(
            tasks=[task_from_row(r) for r in rows],
            next_page_token=encode_token(rows[-1].id) if more else None,
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
            job = await self._job_row(conn, workspace, job_id)
            query = select(logs).where(logs.c.job_pk == job.id, logs.c.id > after)
            if severity is not None:
                query = query.where(logs.c.severity == severity)
            rows = (await conn.execute(query.order_by(logs.c.id).limit(size + 1))).all()
        more = len(rows) > size
        rows = rows[:size]
        return ListLogsResponse(
            logs=[log_from_row(r) for r in rows],
            next_page_token=encode_token(rows[-1].id) if more else None,
        )

    async def abort(self, workspace: str, job_id: str) -> None:
        """Mark the job aborted (terminal, error); the scheduler stops its running tasks.

        Aborting a terminal job is a no-op.
        """
        async with self._engine.begin() as conn:
            job = await self._job_row(conn, workspace, job_id)
            if job.is_terminal:
                return
            now = utcnow()
            changed = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id, jobs.c.is_terminal.is_(False))
                .values(
                    state="aborted",
                    is_terminal=True,
                    error=True,
                    notified=False,
                    last_notification={"type": "job-state", "state": "aborted"},
                    last_update=now,
                )
            )
            if changed.rowcount == 0:
                return
            await conn.execute(
                update(tasks)
                .where(tasks.c.job_pk == job.id, tasks.c.status == "pending")
                .values(status="aborted", notification={"reason": "job aborted"}, updated_at=now)
            )
            await conn.execute(
                update(stages)
                .where(stages.c.job_pk == job.id, stages.c.status.in_(("pending", "running")))
                .values(status="aborted", updated_at=now)
            )
            await write_log(
                conn, job.id, "warning", "job-aborted", {"by": "api"}, module="batchflow.api"
            )
        self._changed()

    async def restart(
        self, workspace: str, job_id: str, overrides: RestartOverrides | None = None
    ) -> None:
        """Re-run every task that did not succeed (then export again), with ``overrides``.

        Only a terminal job can be restarted (409 otherwise).
        """
        async with self._engine.begin() as conn:
            job = await self._job_row(conn, workspace, job_id)
            if not job.is_terminal:
                raise ConflictError(f"job {job_id!r} is still running: abort it or wait")
            now = utcnow()
            spent = (
                await conn.execute(
                    select(func.coalesce(func.sum(tasks.c.machine_seconds), 0.0)).where(
                        tasks.c.job_pk == job.id
                    )
                )
            ).scalar_one()
            await conn.execute(
                update(tasks)
                .where(tasks.c.job_pk == job.id, tasks.c.status != "succeeded")
                .values(status="pending", progress=0.0, notification={}, updated_at=now)
            )
            export_pks = select(stages.c.id).where(
                and_(stages.c.job_pk == job.id, stages.c.stage_id == "export")
            )
            await conn.execute(delete(tasks).where(tasks.c.stage_pk.in_(export_pks)))
            await conn.execute(
                delete(stages).where(stages.c.job_pk == job.id, stages.c.stage_id == "export")
            )
            processing = (
                await conn.execute(
                    select(stages.c.id).where(
                        stages.c.job_pk == job.id, stages.c.stage_id == "processing"
                    )
                )
            ).scalar_one_or_none()
            overrides_list = list(job.restart_overrides)
            if overrides is not None:
                overrides_list.append(overrides.wire())
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(
                    state="processing" if processing is not None else "pending",
                    current_stage="processing" if processing is not None else None,
                    is_terminal=False,
                    error=False,
                    notified=False,
                    run=job.run + 1,
                    machine_seconds_base=float(spent),
                    restart_overrides=overrides_list,
                    last_notification={"type": "job-state", "state": "restarted"},
                    last_update=now,
                )
            )
            await write_log(
                conn,
                job.id,
                "info",
                "job-restarted",
                {"run": job.run + 1, "overrides": overrides.wire() if overrides else None},
                module="batchflow.api",
            )
        self._changed()
