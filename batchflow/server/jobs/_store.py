"""Catalog helpers shared by the service and the scheduler: rows to wire models, logs, tokens.

Page tokens are opaque (base64 of the last row id seen); listings are keyset-paginated on the
autoincrement id, so a token stays valid while rows are appended.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.errors import UsageError
from batchflow.protocol.jobs import (
    Job,
    JobDefinition,
    JobStage,
    JobTask,
    LogEntry,
    LogSeverity,
    RestartOverrides,
)
from batchflow.server.jobs.schema import as_utc, logs, utcnow

__all__ = [
    "PLANNED_STAGES",
    "SUPPORTED_JOB_TYPES",
    "decode_token",
    "definition_digest",
    "effective_definition",
    "encode_token",
    "inserted_pk",
    "job_from_row",
    "log_from_row",
    "parse_definition",
    "shielded",
    "stage_from_row",
    "task_from_row",
    "write_log",
]

PLANNED_STAGES = ("processing", "export")
SUPPORTED_JOB_TYPES = ("simple-image-processing-v1", "simple-video-processing-v1")
MAX_PAGE_SIZE = 1000


def encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    """The id after which the next page starts (0 for the first page)."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, value = text.partition(":")
        last_id = int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"invalid nextPageToken {token!r}") from exc
    if prefix != "after" or last_id < 0:
        raise UsageError(f"invalid nextPageToken {token!r}")
    return last_id


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


def clamp_page_size(page_size: int | None, default: int = 100) -> int:
    if page_size is None:
        return default
    if page_size < 1:
        raise UsageError(f"invalid pageSize {page_size}: must be at least 1")
    return min(page_size, MAX_PAGE_SIZE)


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


def effective_definition(
    definition: Mapping[str, Any], overrides: list[dict[str, Any]]
) -> JobDefinition:
    """The stored definition with every restart override applied in order."""
    model = JobDefinition.model_validate(dict(definition))
    for raw in overrides:
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


def job_from_row(row: Row[Any]) -> Job:
    return Job(
        job_id=row.job_id,
        name=row.name,
        job_definition=row.definition,
        current_stage=row.current_stage,
        planned_stages=list(PLANNED_STAGES),
        error=bool(row.error),
        is_terminal=bool(row.is_terminal),
        last_notification=row.last_notification,
        created_at=as_utc(row.created_at),
        last_update=as_utc(row.last_update),
        restart_parameters_override=list(row.restart_overrides),
    )


def stage_from_row(row: Row[Any]) -> JobStage:
    return JobStage(
        processing_stage_id=row.stage_id,
        processing_stage_name=row.stage_id,
        tasks_number=row.tasks_number,
        output_batches=list(row.output_batches),
        start_timestamp=as_utc(row.started_at),
        notification=row.notification,
        status_type=row.status,
        last_event_timestamp=as_utc(row.updated_at),
    )


def task_from_row(row: Row[Any]) -> JobTask:
    return JobTask(
        task_id=row.task_id,
        notification=row.notification,
        status_type=row.status,
        progress=float(row.progress),
        event_timestamp=as_utc(row.updated_at),
    )


def log_from_row(row: Row[Any]) -> LogEntry:
    return LogEntry(
        created_at=as_utc(row.created_at),
        processing_stage_id=row.stage_id,
        task_id=row.task_id,
        severity=row.severity,
        reporting_module=row.reporting_module,
        log_type=row.log_type,
        payload=row.payload,
    )


async def write_log(
    conn: AsyncConnection,
    job_pk: int,
    severity: LogSeverity,
    log_type: str,
    payload: Mapping[str, Any],
    *,
    stage_id: str | None = None,
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
