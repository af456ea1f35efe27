"""An in-memory :class:`~batchflow.server.core.webhooks.OutboxStore` for tests (ours, users')."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from batchflow.server.core.webhooks import OutboxItem

__all__ = ["MemoryOutboxStore", "OutboxRecord"]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A row of :class:`MemoryOutboxStore` as it stands."""

    id: int
    url: str
    body: Mapping[str, Any]
    authorization: str | None
    attempts: int = 0
    next_at: datetime | None = None
    state: Literal["pending", "delivered", "failed"] = "pending"
    last_error: str | None = None


class MemoryOutboxStore:
    """An in-memory :class:`OutboxStore` for tests (ours and users')."""

    def __init__(self) -> None:
        self._rows: dict[int, OutboxRecord] = {}
        self._next_id = 1

    def add(
        self,
        url: str,
        body: Mapping[str, Any],
        authorization: str | None = None,
        next_at: datetime | None = None,
    ) -> int:
        """Queue an event; due at once unless ``next_at`` is given. Returns its id."""
        item_id = self._next_id
        self._next_id += 1
        self._rows[item_id] = OutboxRecord(item_id, url, dict(body), authorization, next_at=next_at)
        return item_id

    def get(self, item_id: int) -> OutboxRecord:
        return self._rows[item_id]

    def records(self) -> list[OutboxRecord]:
        return list(self._rows.values())

    def pending(self) -> list[OutboxRecord]:
        return [r for r in self._rows.values() if r.state == "pending"]

    def delivered_ids(self) -> list[int]:
        return [r.id for r in self._rows.values() if r.state == "delivered"]

    def failed_ids(self) -> list[int]:
        return [r.id for r in self._rows.values() if r.state == "failed"]

    async def due(self, now: datetime, limit: int) -> Sequence[OutboxItem]:
        rows = [r for r in self.pending() if r.next_at is None or r.next_at <= now]
        rows.sort(key=lambda r: (r.next_at or datetime.min.replace(tzinfo=UTC), r.id))
        return [OutboxItem(r.id, r.url, r.body, r.attempts, r.authorization) for r in rows[:limit]]

    async def delivered(self, item_id: int, attempts: int) -> None:
        self._update(item_id, attempts=attempts, state="delivered", next_at=None)

    async def retry_later(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None:
        self._update(item_id, attempts=attempts, next_at=next_at, last_error=error)

    async def give_up(self, item_id: int, attempts: int, error: str) -> None:
        self._update(item_id, attempts=attempts, state="failed", next_at=None, last_error=error)

    def _update(self, item_id: int, **changes: Any) -> None:
        self._rows[item_id] = replace(self._rows[item_id], **changes)
