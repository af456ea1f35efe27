"""Catalog queries on batches and staged files (SQLAlchemy Core, in the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.errors import ConflictError, NotFoundError
from batchflow.protocol.staging import Batch
from batchflow.server.core.db import as_utc, utcnow
from batchflow.server.staging.schema import batches, files, shards

__all__ = [
    "BatchRow",
    "FileRow",
    "count_files",
    "find_batch",
    "get_or_create_batch",
    "list_batches",
    "list_files",
    "list_parts",
    "require_batch",
]


# the workspace of expired batches whose id was taken again: no real workspace name has a "~"
_EXPIRED_WORKSPACE = literal("~expired-")


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One batch as the catalog holds it."""

    pk: int
    batch_id: str
    display_name: str
    batch_type: str
    content_type: str
    upload_mode: str
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> BatchRow:
        return cls(
            pk=row.id,
            batch_id=row.batch_id,
            display_name=row.display_name,
            batch_type=row.batch_type,
            content_type=row.content_type,
            upload_mode=row.upload_mode,
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at),
        )

    def to_wire(self) -> Batch:
        return Batch.model_validate(
            {
                "displayName": self.display_name,
                "batchId": self.batch_id,
                "batchType": self.batch_type,
                "batchContentType": self.content_type,
                "createdDate": self.created_at,
                "expiryDate": self.expires_at,
            }
        )


@dataclass(frozen=True, slots=True)
class FileRow:
    """One successfully staged file: where its bytes are and what they are."""

    pk: int
    batch_pk: int
    name: str
    part_name: str | None
    shard_id: str | None
    size: int
    sha256: str
    content_type: str
    blob_key: str


_FILE_COLUMNS = (
    files.c.id,
    files.c.batch_pk,
    files.c.name,
    files.c.part_name,
    shards.c.shard_id,
    files.c.size,
    files.c.sha256,
    files.c.content_type,
    files.c.blob_key,
)


def file_from_row(row: Any) -> FileRow:
    return FileRow(
        pk=row.id,
        batch_pk=row.batch_pk,
        name=row.name,
        part_name=row.part_name or None,
        shard_id=row.shard_id,
        size=row.size or 0,
        sha256=row.sha256 or "",
        content_type=row.content_type or "application/octet-stream",
        blob_key=row.blob_key,
    )


async def find_batch(conn: AsyncConnection, workspace: str, batch_id: str) -> BatchRow | None:
    """The live (unexpired) batch ``batch_id`` of ``workspace``, or None."""
    row = (
        await conn.execute(
            select(batches).where(
                batches.c.workspace == workspace,
                batches.c.batch_id == batch_id,
                batches.c.expires_at > utcnow(),
            )
        )
    ).first()
    return None if row is None else BatchRow.from_row(row)


async def require_batch(conn: AsyncConnection, workspace: str, batch_id: str) -> BatchRow:
    batch = await find_batch(conn, workspace, batch_id)
    if batch is None:
        raise NotFoundError(f"batch {batch_id!r} not found")
    return batch


async def get_or_create_batch(
    conn: AsyncConnection,
    *,
    workspace: str,
    batch_id: str,
    batch_type: str,
    content_type: str,
    upload_mode: str,
    display_name: str | None,
    ttl: timedelta,
) -> BatchRow:
    """The batch, created when missing; 409 when it exists with another mode or content type."""
    batch = await find_batch(conn, workspace, batch_id)
    if batch is None:
        # an expired batch the sweeper has not removed yet would block the unique key; only an
        # expired one: a live batch a concurrent request just created must survive. It is moved
        # out of the workspace, not deleted: deleting its row here would leave its blobs with no
        # row for the sweeper to find; moved, the sweeper removes rows and blobs together
        now = utcnow()
        await conn.execute(
            update(batches)
            .where(
                batches.c.workspace == workspace,
                batches.c.batch_id == batch_id,
                batches.c.expires_at <= now,
            )
            .values(workspace=_EXPIRED_WORKSPACE + cast(batches.c.id, String))
        )
        row = BatchRow(
            pk=0,
            batch_id=batch_id,
            display_name=display_name or batch_id,
            batch_type=batch_type,
            content_type=content_type,
            upload_mode=upload_mode,
            created_at=now,
            expires_at=now + ttl,
        )
        fields = {name: getattr(row, name) for name in BatchRow.__slots__ if name != "pk"}
        result = await conn.execute(batches.insert().values(workspace=workspace, **fields))
        assert result.inserted_primary_key is not None
        return replace(row, pk=int(result.inserted_primary_key[0]))
    if batch.upload_mode != upload_mode:
        raise ConflictError(
            f"batch {batch_id!r} holds {batch.upload_mode} uploads; "
            f"{upload_mode} uploads can not be mixed into it"
        )
    if batch.content_type != content_type:
        raise ConflictError(f"batch {batch_id!r} holds {batch.content_type}, not {content_type}")
    if display_name and display_name != batch.display_name:
        await conn.execute(
            update(batches).where(batches.c.id == batch.pk).values(display_name=display_name)
        )
    return batch


async def list_batches(
    conn: AsyncConnection, workspace: str, *, after: int, limit: int
) -> list[BatchRow]:
    rows = await conn.execute(
        select(batches)
        .where(
            batches.c.workspace == workspace,
            batches.c.expires_at > utcnow(),
            batches.c.id > after,
        )
        .order_by(batches.c.id)
        .limit(limit)
    )
    return [BatchRow.from_row(row) for row in rows]


def _part_filter(part_name: str | None) -> Sequence[Any]:
    return [] if part_name is None else [files.c.part_name == part_name]


async def count_files(conn: AsyncConnection, batch_pk: int, part_name: str | None = None) -> int:
    value = await conn.scalar(
        select(func.count())
        .select_from(files)
        .where(files.c.batch_pk == batch_pk, files.c.status == "ok", *_part_filter(part_name))
    )
    return int(value or 0)


async def list_files(
    conn: AsyncConnection,
    batch_pk: int,
    *,
    part_name: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[FileRow]:
    """Staged (``ok``) files in id order, ``limit`` after the row id ``after``."""
    rows = await conn.execute(
        select(*_FILE_COLUMNS)
        .select_from(files.outerjoin(shards, shards.c.id == files.c.shard_pk))
        .where(
            files.c.batch_pk == batch_pk,
            files.c.status == "ok",
            files.c.id > after,
            *_part_filter(part_name),
        )
        .order_by(files.c.id)
        .limit(limit)
    )
    return [file_from_row(row) for row in rows]


async def list_parts(conn: AsyncConnection, batch_pk: int) -> list[tuple[str, str]]:
    """(part name, most common content type) of each named part of a batch."""
    rows = await conn.execute(
        select(files.c.part_name, func.min(files.c.content_type))
        .where(files.c.batch_pk == batch_pk, files.c.status == "ok", files.c.part_name != "")
        .group_by(files.c.part_name)
        .order_by(files.c.part_name)
    )
    return [(row[0], row[1] or "application/octet-stream") for row in rows]
