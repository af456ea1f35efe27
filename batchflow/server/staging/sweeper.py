"""Removes expired batches (rows and blobs), stale upload sessions and old outbox rows."""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.abc
import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from batchflow.server.core.blobs import BlobStore
from batchflow.server.core.db import utcnow
from batchflow.server.core.outbox import outbox
from batchflow.server.core.settings import ServerSettings
from batchflow.server.staging.schema import batches, uploads

__all__ = ["Sweeper"]

log = structlog.get_logger(__name__)

OUTBOX_RETENTION = timedelta(days=7)


class Sweeper:
    """Runs :meth:`sweep_once` every ``settings.sweep_interval`` seconds."""

    def __init__(self, engine: AsyncEngine, blobs: BlobStore, settings: ServerSettings) -> None:
        self.engine = engine
        self.blobs = blobs
        self.settings = settings

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            try:
                removed = await self.sweep_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("sweeper.failed", error=str(exc))
            else:
                if removed:
                    log.info("sweeper.removed_batches", count=removed)
            await anyio.sleep(self.settings.sweep_interval)

    async def sweep_once(self) -> int:
        """Delete expired batches (cascading to their files, ingests, shards, uploads)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            expired = [
                row[0]
                for row in await conn.execute(
                    select(batches.c.id).where(batches.c.expires_at <= now).limit(500)
                )
            ]
            if expired:
                await conn.execute(batches.delete().where(batches.c.id.in_(expired)))
            await conn.execute(
                uploads.delete().where(uploads.c.state == "open", uploads.c.expires_at <= now)
            )
            await conn.execute(
                outbox.delete().where(
                    outbox.c.state.in_(("delivered", "failed")),
                    outbox.c.created_at <= now - OUTBOX_RETENTION,
                )
            )
        for pk in expired:
            await self.blobs.delete_prefix(f"b{pk}")
        return len(expired)
