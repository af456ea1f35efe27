"""Catalog writes shared by the service and the scheduler: guarded state moves, new stages,
logs; definitions. Reads are in :mod:`.records`; listings page with
:mod:`batchflow.server.core.paging`, as the staging routes do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeVar

import anyio
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Update, insert, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.errors import UsageError
from batchflow.protocol.jobs import JobDefinition, LogSeverity, RestartOverrides
from batchflow.server.jobs.records import JobRecord, StageRecord, stage_by_pk
from batchflow.server.jobs.schema import jobs, logs, stages, tasks, utcnow
from batchflow.server.jobs.states import (
    JOB,
    STAGE,
    TASK,
    JobState,
    StageId,
    StateMachine,
    TaskStatus,
)

__all__ = [
    "SUPPORTED_JOB_TYPES",
    "definition_digest",
    "effective_definition",
    "insert_stage",
    "inserted_pk",
    "job_move",
    "job_notification",
    "parse_definition",
    "shielded",
    "stage_move",
    "task_move",
    "write_log",
]

SUPPORTED_JOB_TYPES = ("simple-image-processing-v1", "simple-video-processing-v1")
_S = TypeVar("_S", JobState, TaskStatus)


@asynccontextmanager
async def shielded(
    opening: AbstractAsyncContextManager[AsyncConnection],
) -> AsyncIterator[AsyncConnection]:
    """A catalog connection whose (short) work cancellation does not interrupt.

    A database call cancelled half-way makes SQLAlchemy terminate the connection from a
    background task, which can outlive the event loop; the scheduler's transactions are short,
    so it lets them finish and takes the cancellation right after.
    """
    with anyio.CancelScope(shield=True):
        async with opening as conn:
            yield conn


def inserted_pk(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just created."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def parse_definition(definition: Mapping[str, Any]) -> JobDefinition:
    """Validate a job definition as sent; unsupported types and bad fields are UsageErrors."""
    job_type = definition.get("type")
    if job_type not in SUPPORTED_JOB_TYPES:
        raise UsageError(
            f"unsupported job type {job_type!r}: batchflow serve runs "
            + " and ".join(SUPPORTED_JOB_TYPES)
        )
    try:
        return JobDefinition.model_validate(dict(definition))
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UsageError(f"invalid job definition: {details}") from exc


def definition_digest(definition: JobDefinition) -> str:
    """SHA-256 of the normalised definition (defaults applied), for idempotent creation."""
    canonical = json.dumps(definition.wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def effective_definition(job: JobRecord) -> JobDefinition:
    """The job's stored definition with every restart override applied in order."""
    model = JobDefinition.model_validate(dict(job.definition))
    for raw in job.restart_overrides:
        override = RestartOverrides.model_validate(raw)
        changes: dict[str, Any] = {}
        if override.compute_configuration is not None:
            changes["compute_configuration"] = override.compute_configuration
        if override.max_parallel_tasks is not None:
            changes["max_parallel_tasks"] = override.max_parallel_tasks
        if override.processing_timeout_seconds is not None:
            changes["processing_timeout_seconds"] = override.processing_timeout_seconds
        if override.max_image_failure_rate is not None:
            changes["max_image_failure_rate"] = override.max_image_failure_rate
        model = model.model_copy(update=changes)
    return model


def job_notification(state: JobState | Literal["restarted"], **extra: object) -> dict[str, object]:
    """``lastNotification`` of a job entering ``state`` (or :data:`~.states.RESTARTED`)."""
    return {"type": "job-state", "state": state, **extra}


def _guard(
    column: ColumnElement[str],
    machine: StateMachine[_S],
    target: _S,
    current: _S | None,
) -> ColumnElement[bool]:
    if current is None:
        return column.in_(machine.sources(target))
    machine.check(current, target)
    return column == current


def job_move(target: JobState, current: JobState | None = None) -> Update:
    """``UPDATE bp_jobs`` into ``target``, only for rows in ``current`` (checked against the
    state machine) or, when None, in any state allowed to move there: a compare-and-set, so an
    abort always wins over a scheduler update racing it. Sets ``is_terminal``, ``notified``
    (False: a terminal job is announced again), ``current_stage`` (non-terminal targets) and
    ``last_update``; the caller adds the job's pk and any other value."""
    values: dict[str, object] = {
        "state": target,
        "is_terminal": target.is_terminal,
        "notified": False,
        "last_update": utcnow(),
    }
    if not target.is_terminal:
        values["current_stage"] = _CURRENT_STAGE[target]
    return update(jobs).where(_guard(jobs.c.state, JOB, target, current)).values(values)


_CURRENT_STAGE = {
    JobState.PENDING: None,
    JobState.PROCESSING: StageId.PROCESSING,
    JobState.EXPORT: StageId.EXPORT,
}


def task_move(target: TaskStatus, current: TaskStatus | None = None) -> Update:
    """``UPDATE bp_tasks SET status=target`` guarded like :func:`job_move`."""
    return update(tasks).where(_guard(tasks.c.status, TASK, target, current)).values(status=target)


def stage_move(target: TaskStatus, current: TaskStatus | None = None) -> Update:
    """``UPDATE bp_stages SET status=target`` guarded like :func:`job_move`."""
    return (
        update(stages).where(_guard(stages.c.status, STAGE, target, current)).values(status=target)
    )


async def insert_stage(
    conn: AsyncConnection,
    job_pk: int,
    stage_id: StageId,
    output_batch: str,
    task_items: Sequence[Sequence[str]],
) -> StageRecord:
    """A ``running`` stage writing into ``output_batch``, with one ``pending`` task per entry of
    ``task_items`` (its item names), task ids ``00000``, ``00001``, ..."""
    now = utcnow()
    result = await conn.execute(
        insert(stages).values(
            job_pk=job_pk,
            stage_id=stage_id,
            status=TaskStatus.RUNNING,
            tasks_number=len(task_items),
            output_batches=[output_batch],
            notification={},
            started_at=now,
            updated_at=now,
        )
    )
    stage_pk = inserted_pk(result)
    if task_items:
        await conn.execute(
            insert(tasks),
            [
                {
                    "job_pk": job_pk,
                    "stage_pk": stage_pk,
                    "task_id": f"{index:05d}",
                    "items": list(names),
                    "status": TaskStatus.PENDING,
                    "attempts": 0,
                    "progress": 0.0,
                    "processed": 0,
                    "failed": 0,
                    "machine_seconds": 0.0,
                    "result_file": None,
                    "notification": {},
                    "updated_at": now,
                }
                for index, names in enumerate(task_items)
            ],
        )
    return await stage_by_pk(conn, stage_pk)


async def write_log(
    conn: AsyncConnection,
    job_pk: int,
    severity: LogSeverity,
    log_type: str,
    payload: Mapping[str, object],
    *,
    stage_id: StageId | None = None,
    task_id: str | None = None,
    module: str = "batchflow.scheduler",
) -> None:
    """Append one structured log entry of a job (inside the caller's transaction)."""
    await conn.execute(
        insert(logs).values(
            job_pk=job_pk,
            stage_id=stage_id,
            task_id=task_id,
            severity=severity,
            reporting_module=module,
            log_type=log_type,
            payload=dict(payload),
            created_at=utcnow(),
        )
    )
