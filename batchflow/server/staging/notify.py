"""Webhook notifications of ingests, written to the outbox inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.protocol.webhooks import (
    FailedFile,
    FilesStatusNotification,
    IngestErrorDetails,
    IngestStatusNotification,
    StagingNotification,
)
from batchflow.server.core.outbox import enqueue_webhook
from batchflow.server.staging.schema import batches, files

__all__ = ["DEFAULT_CATEGORIES", "MAX_NOTIFIED_NAMES", "notify_ingest_failed", "notify_shard"]

# Without notificationCategories both categories are sent (see batchflow/server/README.md).
DEFAULT_CATEGORIES: tuple[str, ...] = ("ingest-status", "files-status")
MAX_NOTIFIED_NAMES = 1000


async def _shard_names(conn: AsyncConnection, shard_pk: int, status: str) -> list[Any]:
    rows = await conn.execute(
        select(files.c.name, files.c.failure_type, files.c.failure_reason)
        .where(files.c.shard_pk == shard_pk, files.c.status == status)
        .order_by(files.c.id)
        .limit(MAX_NOTIFIED_NAMES + 1)
    )
    return list(rows)


async def notify_shard(
    conn: AsyncConnection, ingest: Any, shard_id: str, shard_pk: int, authorization: str | None
) -> None:
    """The events of a completed shard, for the categories its ingest asked for."""
    if not ingest.notifications_url:
        return
    categories = set(ingest.categories or DEFAULT_CATEGORIES)
    if "ingest-status" in categories:
        note = IngestStatusNotification(success=True)
        await _enqueue(conn, ingest, shard_id, note, authorization)
    if "files-status" in categories:
        ok = await _shard_names(conn, shard_pk, "ok")
        failed = await _shard_names(conn, shard_pk, "failed")
        truncated = len(ok) > MAX_NOTIFIED_NAMES or len(failed) > MAX_NOTIFIED_NAMES
        files_note = FilesStatusNotification(
            success=not failed,
            ingested_files=[r.name for r in ok[:MAX_NOTIFIED_NAMES]],
            failed_files=[
                FailedFile(type=r.failure_type, file_name=r.name, reason=r.failure_reason or "")
                for r in failed[:MAX_NOTIFIED_NAMES]
            ],
            content_truncated=truncated,
        )
        await _enqueue(conn, ingest, shard_id, files_note, authorization)


async def _enqueue(
    conn: AsyncConnection,
    ingest: Any,
    shard_id: str | None,
    note: IngestStatusNotification | FilesStatusNotification,
    authorization: str | None,
) -> None:
    envelope = StagingNotification(
        event_id=uuid.uuid4().hex,
        ingest_id=ingest.ingest_id,
        batch_id=await _batch_id(conn, ingest.batch_pk),
        shard_id=shard_id,
        notification=note,
    )
    body = envelope.wire()
    body.pop("delivery_attempt", None)
    await enqueue_webhook(
        conn, url=ingest.notifications_url, body=body, authorization=authorization
    )


async def _batch_id(conn: AsyncConnection, batch_pk: int) -> str:
    value = await conn.scalar(select(batches.c.batch_id).where(batches.c.id == batch_pk))
    return str(value)


async def notify_ingest_failed(
    conn: AsyncConnection, ingest: Any, error_type: str, reason: str, authorization: str | None
) -> None:
    """``ingest-status`` with ``success: false`` for an ingest that failed as a whole."""
    if ingest.notifications_url and "ingest-status" in set(ingest.categories or DEFAULT_CATEGORIES):
        note = IngestStatusNotification(
            success=False, error_details=IngestErrorDetails(type=error_type, reason=reason)
        )
        await _enqueue(conn, ingest, None, note, authorization)
