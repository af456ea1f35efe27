"""Catalog side of ingests: shards, queued references, file outcomes, completion webhooks.

Each function runs inside the caller's transaction, so a file's outcome, its shard's completion
and the outbox rows announcing it commit together (at-least-once webhooks, never lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchflow.errors import UsageError
from batchflow.protocol.ids import validate_file_name
from batchflow.server.core.db import utcnow
from batchflow.server.staging.notify import (
    DEFAULT_CATEGORIES,
    MAX_NOTIFIED_NAMES,
    notify_ingest_failed,
    notify_shard,
)
from batchflow.server.staging.schema import files, ingests, shards

__all__ = [
    "DEFAULT_CATEGORIES",
    "MAX_NOTIFIED_NAMES",
    "FileOutcome",
    "IngestSpec",
    "PendingFile",
    "create_reference_ingest",
    "existing_names",
    "fail_ingest",
    "find_ingest",
    "finish_shard_if_done",
    "insert_ingest",
    "pending_files",
    "record_file",
    "shard_file_counts",
]

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IngestSpec:
    """What identifies an ingest and where its notifications go."""

    ingest_id: str
    digest: str
    kind: str
    notifications_url: str | None = None
    categories: tuple[str, ...] = DEFAULT_CATEGORIES


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A queued reference waiting to be fetched."""

    pk: int
    batch_pk: int
    shard_pk: int | None
    name: str
    url: str
    kind: str


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """How a queued file ended: staged (blob fields set) or failed (failure fields set)."""

    blob_key: str | None = None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    failure_type: str | None = None
    failure_reason: str | None = None


async def find_ingest(conn: AsyncConnection, batch_pk: int, ingest_id: str) -> Any:
    return (
        await conn.execute(
            select(ingests).where(ingests.c.batch_pk == batch_pk, ingests.c.ingest_id == ingest_id)
        )
    ).first()


async def insert_ingest(conn: AsyncConnection, batch_pk: int, spec: IngestSpec) -> int:
    now = utcnow()
    result = await conn.execute(
        ingests.insert().values(
            batch_pk=batch_pk,
            ingest_id=spec.ingest_id,
            digest=spec.digest,
            kind=spec.kind,
            notifications_url=spec.notifications_url,
            categories=list(spec.categories),
            state="in-progress",
            created_at=now,
            updated_at=now,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


async def existing_names(
    conn: AsyncConnection, batch_pk: int, names: Sequence[str], part_name: str = ""
) -> set[str]:
    """Which of ``names`` are already live (pending or staged) in the batch part."""
    found: set[str] = set()
    for start in range(0, len(names), _IN_CHUNK):
        chunk = list(names[start : start + _IN_CHUNK])
        rows = await conn.execute(
            select(files.c.name).where(
                files.c.batch_pk == batch_pk,
                files.c.part_name == part_name,
                files.c.status != "failed",
                files.c.name.in_(chunk),
            )
        )
        found.update(row[0] for row in rows)
    return found


def _failed_row(name: str, failure_type: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "status": "failed",
        "failure_type": failure_type,
        "failure_reason": reason,
    }


async def create_reference_ingest(
    conn: AsyncConnection,
    *,
    batch_pk: int,
    spec: IngestSpec,
    references: Sequence[tuple[str, str]],
    shard_size: int,
    authorization: str | None,
) -> list[str]:
    """Record an ingest, its shards and one queued file row per reference; return shard ids.

    Invalid names and names already live in the batch become failed files right away.
    """
    ingest_pk = await insert_ingest(conn, batch_pk, spec)
    taken = await existing_names(conn, batch_pk, [name for name, _ in references])
    now = utcnow()
    shard_ids: list[str] = []
    for index, start in enumerate(range(0, max(len(references), 1), shard_size)):
        chunk = references[start : start + shard_size]
        shard_id = f"{spec.ingest_id}-{index:04d}"
        result = await conn.execute(
            shards.insert().values(
                batch_pk=batch_pk,
                ingest_pk=ingest_pk,
                shard_id=shard_id,
                objects_count=len(chunk),
                state="pending",
                updated_at=now,
            )
        )
        assert result.inserted_primary_key is not None
        shard_pk = int(result.inserted_primary_key[0])
        shard_ids.append(shard_id)
        rows: list[dict[str, Any]] = []
        for name, url in chunk:
            try:
                validate_file_name(name)
            except UsageError as exc:
                rows.append(_failed_row(name, "invalid-file-name", exc.message))
                continue
            if name in taken:
                rows.append(
                    _failed_row(name, "duplicate-file-name", f"{name!r} is already in the batch")
                )
                continue
            taken.add(name)
            rows.append({"name": name, "status": "pending", "source_url": url})
        if rows:
            common = {
                "batch_pk": batch_pk,
                "ingest_pk": ingest_pk,
                "shard_pk": shard_pk,
                "part_name": "",
                "created_at": now,
            }
            await conn.execute(
                files.insert(),
                [
                    {"source_url": None, "failure_type": None, "failure_reason": None}
                    | common
                    | row
                    for row in rows
                ],
            )
        await finish_shard_if_done(conn, shard_pk, authorization=authorization)
    return shard_ids


async def pending_files(conn: AsyncConnection, *, limit: int, after: int = 0) -> list[PendingFile]:
    """Queued references in id order (the worker skips the ones it already has in flight)."""
    rows = await conn.execute(
        select(
            files.c.id,
            files.c.batch_pk,
            files.c.shard_pk,
            files.c.name,
            files.c.source_url,
            ingests.c.kind,
        )
        .select_from(files.join(ingests, ingests.c.id == files.c.ingest_pk))
        .where(files.c.status == "pending", files.c.id > after)
        .order_by(files.c.id)
        .limit(limit)
    )
    return [
        PendingFile(
            pk=r.id,
            batch_pk=r.batch_pk,
            shard_pk=r.shard_pk,
            name=r.name,
            url=r.source_url,
            kind=r.kind,
        )
        for r in rows
    ]


async def record_file(
    conn: AsyncConnection,
    file_pk: int,
    outcome: FileOutcome,
    *,
    authorization: str | None,
    finish_shard: bool = True,
) -> int | None:
    """Store a queued file's outcome (once) and complete its shard when it was the last.

    Returns the file's shard pk (0 without one) when the row changed, None when it was not
    pending any more. With ``finish_shard=False`` the caller completes shards itself (once per
    shard for a group of files recorded in one transaction).
    """
    status = "failed" if outcome.failure_type else "ok"
    result = await conn.execute(
        update(files)
        .where(files.c.id == file_pk, files.c.status == "pending")
        .values(
            status=status,
            blob_key=outcome.blob_key,
            size=outcome.size,
            sha256=outcome.sha256,
            content_type=outcome.content_type,
            failure_type=outcome.failure_type,
            failure_reason=outcome.failure_reason,
        )
        .returning(files.c.shard_pk)
    )
    row = result.first()
    if row is None:
        return None
    if row.shard_pk is not None and finish_shard:
        await finish_shard_if_done(conn, row.shard_pk, authorization=authorization)
    return int(row.shard_pk or 0)


async def finish_shard_if_done(
    conn: AsyncConnection, shard_pk: int, *, authorization: str | None
) -> bool:
    """Complete the shard when none of its files is pending; notify; complete the ingest.

    The shard row is locked first (PostgreSQL): concurrent completions of its last files
    serialize here, so the last one sees every other outcome committed.
    """
    await conn.execute(select(shards.c.id).where(shards.c.id == shard_pk).with_for_update())
    pending = await conn.scalar(
        select(func.count())
        .select_from(files)
        .where(files.c.shard_pk == shard_pk, files.c.status == "pending")
    )
    now = utcnow()
    if pending:
        await conn.execute(
            update(shards)
            .where(shards.c.id == shard_pk, shards.c.state == "pending")
            .values(state="in-progress", updated_at=now)
        )
        return False
    done = await conn.execute(
        update(shards)
        .where(shards.c.id == shard_pk, shards.c.state.in_(("pending", "in-progress")))
        .values(state="completed", updated_at=now)
        .returning(shards.c.ingest_pk, shards.c.shard_id)
    )
    row = done.first()
    if row is None:
        return False
    ingest = (
        await conn.execute(select(ingests).where(ingests.c.id == row.ingest_pk).with_for_update())
    ).one()
    await notify_shard(conn, ingest, row.shard_id, shard_pk, authorization)
    open_shards = await conn.scalar(
        select(func.count())
        .select_from(shards)
        .where(shards.c.ingest_pk == ingest.id, shards.c.state.in_(("pending", "in-progress")))
    )
    if not open_shards:
        await conn.execute(
            update(ingests)
            .where(ingests.c.id == ingest.id, ingests.c.state == "in-progress")
            .values(state="completed", updated_at=now)
        )
    return True


async def fail_ingest(
    conn: AsyncConnection,
    ingest_pk: int,
    error_type: str,
    reason: str,
    *,
    authorization: str | None,
) -> None:
    """Mark an ingest (and its open shards) failed and announce it."""
    now = utcnow()
    await conn.execute(
        update(ingests)
        .where(ingests.c.id == ingest_pk)
        .values(state="failed", error=reason, updated_at=now)
    )
    await conn.execute(
        update(shards)
        .where(shards.c.ingest_pk == ingest_pk, shards.c.state.in_(("pending", "in-progress")))
        .values(state="failed", updated_at=now)
    )
    ingest = (await conn.execute(select(ingests).where(ingests.c.id == ingest_pk))).one()
    await notify_ingest_failed(conn, ingest, error_type, reason, authorization)


async def shard_file_counts(
    conn: AsyncConnection, shard_pks: Sequence[int]
) -> dict[int, dict[str, int]]:
    """``{shard_pk: {status: count}}`` for the given shards (one grouped query)."""
    if not shard_pks:
        return {}
    rows = await conn.execute(
        select(files.c.shard_pk, files.c.status, func.count())
        .where(files.c.shard_pk.in_(list(shard_pks)))
        .group_by(files.c.shard_pk, files.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for shard_pk, status, count in rows:
        counts.setdefault(shard_pk, {})[status] = int(count)
    return counts


async def shard_page(conn: AsyncConnection, batch_pk: int, *, after: int, limit: int) -> list[Any]:
    """Shards of a batch after id ``after``, in id order, each with its ``ingest_id``."""
    rows = await conn.execute(
        select(shards, ingests.c.ingest_id)
        .join(ingests, ingests.c.id == shards.c.ingest_pk)
        .where(shards.c.batch_pk == batch_pk, shards.c.id > after)
        .order_by(shards.c.id)
        .limit(limit)
    )
    return list(rows)
