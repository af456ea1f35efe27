"""Frozen records of the job engine's catalog rows, and every read that returns them.

Job modules pass these, never SQLAlchemy rows: a row becomes a record here and only here, with
its states parsed into the enums of :mod:`.states` and its timestamps in UTC. ``wire()`` gives
the API's model (PROTOCOL.md, BP prefix). Writes live with their callers (:mod:`._store`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.protocol.jobs import Job, JobStage, JobTask, LogEntry, LogSeverity
from batchflow.server.jobs.schema import as_utc, jobs, logs, stages, tasks
from batchflow.server.jobs.states import JobState, StageId, TaskStatus

__all__ = [
    "JobRecord",
    "JsonObject",
    "LogRecord",
    "StageRecord",
    "TaskRecord",
    "job_by_id",
    "job_by_pk",
    "job_page",
    "job_stage",
    "job_stages",
    "job_state",
    "log_page",
    "machine_seconds_spent",
    "stage_by_pk",
    "stage_tasks",
    "stranded_tasks",
    "task_page",
    "unannounced_jobs",
    "unfinished_job_pks",
    "unsucceeded_count",
]

JsonObject = Mapping[str, Any]
"""A JSON object as stored (a definition, a notification, a log payload): free-form by protocol."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One ``bp_jobs`` row."""

    pk: int
    workspace: str
    job_id: str
    name: str
    definition: JsonObject  # as sent
    digest: str
    state: JobState
    error: bool
    is_terminal: bool
    current_stage: StageId | None
    restart_overrides: tuple[JsonObject, ...]
    last_notification: JsonObject | None
    run: int  # restarts so far
    machine_seconds_base: float
    notified: bool
    created_at: datetime
    last_update: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> JobRecord:
        return cls(
            pk=int(row.id),
            workspace=row.workspace,
            job_id=row.job_id,
            name=row.name,
            definition=row.definition,
            digest=row.digest,
            state=JobState(row.state),
            error=bool(row.error),
            is_terminal=bool(row.is_terminal),
            current_stage=None if row.current_stage is None else StageId(row.current_stage),
            restart_overrides=tuple(row.restart_overrides),
            last_notification=row.last_notification,
            run=int(row.run),
            machine_seconds_base=float(row.machine_seconds_base),
            notified=bool(row.notified),
            created_at=as_utc(row.created_at),
            last_update=as_utc(row.last_update),
        )

    def wire(self) -> Job:
        return Job(
            job_id=self.job_id,
            name=self.name,
            job_definition=dict(self.definition),
            current_stage=None if self.current_stage is None else self.current_stage.value,
            planned_stages=[stage.value for stage in StageId],
            error=self.error,
            is_terminal=self.is_terminal,
            last_notification=None
            if self.last_notification is None
            else dict(self.last_notification),
            created_at=self.created_at,
            last_update=self.last_update,
            restart_parameters_override=[dict(o) for o in self.restart_overrides],
        )


@dataclass(frozen=True, slots=True)
class StageRecord:
    """One ``bp_stages`` row."""

    pk: int
    job_pk: int
    stage_id: StageId
    status: TaskStatus
    tasks_number: int
    output_batches: tuple[str, ...]
    notification: JsonObject
    started_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> StageRecord:
        return cls(
            pk=int(row.id),
            job_pk=int(row.job_pk),
            stage_id=StageId(row.stage_id),
            status=TaskStatus(row.status),
            tasks_number=int(row.tasks_number),
            output_batches=tuple(row.output_batches),
            notification=row.notification,
            started_at=as_utc(row.started_at),
            updated_at=as_utc(row.updated_at),
        )

    def wire(self) -> JobStage:
        return JobStage(
            processing_stage_id=self.stage_id.value,
            processing_stage_name=self.stage_id.value,
            tasks_number=self.tasks_number,
            output_batches=list(self.output_batches),
            start_timestamp=self.started_at,
            notification=dict(self.notification),
            status_type=self.status.value,
            last_event_timestamp=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One ``bp_tasks`` row; ``items`` are item names (processing) or file names (export)."""

    pk: int
    job_pk: int
    stage_pk: int
    task_id: str
    items: tuple[str, ...]
    status: TaskStatus
    attempts: int
    progress: float
    processed: int
    failed: int
    machine_seconds: float
    result_file: str | None
    notification: JsonObject
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> TaskRecord:
        return cls(
            pk=int(row.id),
            job_pk=int(row.job_pk),
            stage_pk=int(row.stage_pk),
            task_id=row.task_id,
            items=tuple(row.items),
            status=TaskStatus(row.status),
            attempts=int(row.attempts),
            progress=float(row.progress),
            processed=int(row.processed),
            failed=int(row.failed),
            machine_seconds=float(row.machine_seconds),
            result_file=row.result_file,
            notification=row.notification,
            updated_at=as_utc(row.updated_at),
        )

    def wire(self) -> JobTask:
        return JobTask(
            task_id=self.task_id,
            notification=dict(self.notification),
            status_type=self.status.value,
            progress=self.progress,
            event_timestamp=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One ``bp_logs`` row."""

    pk: int
    entry: LogEntry

    @classmethod
    def from_row(cls, row: Row[Any]) -> LogRecord:
        return cls(
            pk=int(row.id),
            entry=LogEntry(
                created_at=as_utc(row.created_at),
                processing_stage_id=row.stage_id,
                task_id=row.task_id,
                severity=row.severity,
                reporting_module=row.reporting_module,
                log_type=row.log_type,
                payload=row.payload,
            ),
        )


# -- jobs --------------------------------------------------------------------------------------


async def job_by_id(conn: AsyncConnection, workspace: str, job_id: str) -> JobRecord | None:
    row = (
        await conn.execute(
            select(jobs).where(jobs.c.workspace == workspace, jobs.c.job_id == job_id)
        )
    ).first()
    return None if row is None else JobRecord.from_row(row)


async def job_by_pk(conn: AsyncConnection, job_pk: int) -> JobRecord | None:
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_pk))).first()
    return None if row is None else JobRecord.from_row(row)


async def job_state(conn: AsyncConnection, job_pk: int) -> JobState:
    state = (await conn.execute(select(jobs.c.state).where(jobs.c.id == job_pk))).scalar_one()
    return JobState(state)


async def job_page(
    conn: AsyncConnection, workspace: str, after: int, limit: int
) -> list[JobRecord]:
    """Jobs of ``workspace`` with a pk above ``after``, oldest first (keyset page)."""
    rows = await conn.execute(
        select(jobs)
        .where(jobs.c.workspace == workspace, jobs.c.id > after)
        .order_by(jobs.c.id)
        .limit(limit)
    )
    return [JobRecord.from_row(row) for row in rows]


async def unfinished_job_pks(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        select(jobs.c.id).where(jobs.c.is_terminal.is_(False)).order_by(jobs.c.id)
    )
    return [int(pk) for pk in rows.scalars()]


async def unannounced_jobs(conn: AsyncConnection) -> list[JobRecord]:
    """Terminal jobs whose end the notifier has not been told yet."""
    rows = await conn.execute(
        select(jobs).where(jobs.c.is_terminal.is_(True), jobs.c.notified.is_(False))
    )
    return [JobRecord.from_row(row) for row in rows]


# -- stages ------------------------------------------------------------------------------------


async def job_stages(conn: AsyncConnection, job_pk: int) -> list[StageRecord]:
    rows = await conn.execute(select(stages).where(stages.c.job_pk == job_pk).order_by(stages.c.id))
    return [StageRecord.from_row(row) for row in rows]


async def job_stage(conn: AsyncConnection, job_pk: int, stage_id: StageId) -> StageRecord | None:
    row = (
        await conn.execute(
            select(stages).where(stages.c.job_pk == job_pk, stages.c.stage_id == stage_id)
        )
    ).first()
    return None if row is None else StageRecord.from_row(row)


async def stage_by_pk(conn: AsyncConnection, stage_pk: int) -> StageRecord:
    row = (await conn.execute(select(stages).where(stages.c.id == stage_pk))).one()
    return StageRecord.from_row(row)


# -- tasks -------------------------------------------------------------------------------------


async def task_page(
    conn: AsyncConnection, stage_pk: int, after: int, limit: int
) -> list[TaskRecord]:
    """Tasks of a stage with a pk above ``after``, in task order (keyset page)."""
    rows = await conn.execute(
        select(tasks)
        .where(tasks.c.stage_pk == stage_pk, tasks.c.id > after)
        .order_by(tasks.c.id)
        .limit(limit)
    )
    return [TaskRecord.from_row(row) for row in rows]


async def stage_tasks(
    conn: AsyncConnection, stage_pk: int, statuses: Collection[TaskStatus]
) -> list[TaskRecord]:
    """The tasks of a stage in one of ``statuses``, in task order."""
    rows = await conn.execute(
        select(tasks)
        .where(tasks.c.stage_pk == stage_pk, tasks.c.status.in_(statuses))
        .order_by(tasks.c.id)
    )
    return [TaskRecord.from_row(row) for row in rows]


async def stranded_tasks(conn: AsyncConnection) -> list[TaskRecord]:
    """Tasks still ``running`` in unfinished jobs: left by a process that is gone."""
    rows = await conn.execute(
        select(tasks)
        .join(jobs, jobs.c.id == tasks.c.job_pk)
        .where(tasks.c.status == TaskStatus.RUNNING, jobs.c.is_terminal.is_(False))
        .order_by(tasks.c.id)
    )
    return [TaskRecord.from_row(row) for row in rows]


async def machine_seconds_spent(conn: AsyncConnection, job_pk: int) -> float:
    """Machine seconds recorded over every task of the job (all runs)."""
    spent = (
        await conn.execute(
            select(func.coalesce(func.sum(tasks.c.machine_seconds), 0.0)).where(
                tasks.c.job_pk == job_pk
            )
        )
    ).scalar_one()
    return float(spent)


async def unsucceeded_count(conn: AsyncConnection, stage_pk: int) -> int:
    count = (
        await conn.execute(
            select(func.count())
            .select_from(tasks)
            .where(tasks.c.stage_pk == stage_pk, tasks.c.status != TaskStatus.SUCCEEDED)
        )
    ).scalar_one()
    return int(count)


# -- logs --------------------------------------------------------------------------------------


async def log_page(
    conn: AsyncConnection,
    job_pk: int,
    after: int,
    limit: int,
    severity: LogSeverity | None = None,
) -> list[LogRecord]:
    """Log entries of a job with a pk above ``after``, oldest first; ``severity``: exact."""
    query = select(logs).where(logs.c.job_pk == job_pk, logs.c.id > after)
    if severity is not None:
        query = query.where(logs.c.severity == severity)
    rows = await conn.execute(query.order_by(logs.c.id).limit(limit))
    return [LogRecord.from_row(row) for row in rows]
