"""The webhook outbox on the catalog: rows are written in the same transaction as the state
change they announce, and :class:`CatalogOutbox` hands them to the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from batchflow.server.core.db import ID_TYPE, as_utc, metadata, timestamp_column, utcnow
from batchflow.server.core.webhooks import OutboxItem

__all__ = ["CatalogOutbox", "enqueue_webhook", "outbox"]

outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("body", JSON, nullable=False),
    Column("authorization", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    timestamp_column("next_attempt_at"),
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("last_error", Text, nullable=True),
    timestamp_column("created_at"),
    sqlite_autoincrement=True,
)
Index("ix_outbox_due", outbox.c.state, outbox.c.next_attempt_at)


async def enqueue_webhook(
    conn: AsyncConnection, *, url: str, body: Mapping[str, Any], authorization: str | None
) -> None:
    """Add one notification (body without ``delivery_attempt``) to the outbox."""
    now = utcnow()
    await conn.execute(
        outbox.insert().values(
            url=url,
            body=dict(body),
            authorization=authorization,
            attempts=0,
            next_attempt_at=now,
            state="pending",
            created_at=now,
        )
    )


class CatalogOutbox:
    """:class:`batchflow.server.core.webhooks.OutboxStore` over the ``webhook_outbox`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def due(self, now: datetime, limit: int) -> Sequence[OutboxItem]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(outbox)
                .where(outbox.c.state == "pending", outbox.c.next_attempt_at <= as_utc(now))
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
                .limit(limit)
            )
            return [
                OutboxItem(
                    id=row.id,
                    url=row.url,
                    body=row.body,
                    attempts=row.attempts,
                    authorization=row.authorization,
                )
                for row in rows
            ]

    async def _set(self, item_id: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(outbox).where(outbox.c.id == item_id).values(**values))

    async def delivered(self, item_id: int, attempts: int) -> None:
        await self._set(item_id, state="delivered", attempts=attempts)

    async def retry_later(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None:
        await self._set(
            item_id, attempts=attempts, next_attempt_at=as_utc(next_at), last_error=error[:2000]
        )

    async def give_up(self, item_id: int, attempts: int, error: str) -> None:
        await self._set(item_id, state="failed", attempts=attempts, last_error=error[:2000])
