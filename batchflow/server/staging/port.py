"""Adapters from the job engine's ports (:mod:`batchflow.server.jobs.ports`) to this server.

:class:`CatalogStagingPort` reads input batches and writes output batches through
:class:`StagingService`; :class:`OutboxNotifier` turns a finished job into a webhook outbox row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from batchflow.errors import NotFoundError
from batchflow.protocol.webhooks import JobNotification
from batchflow.server.core.blobs import BlobInfo
from batchflow.server.core.outbox import enqueue_webhook
from batchflow.server.jobs.ports import OutputBlob, StagedItem
from batchflow.server.staging.service import StagingService

__all__ = ["CatalogStagingPort", "OutboxNotifier"]


class CatalogStagingPort:
    """``StagingPort`` over the staging catalog of the server's (single) workspace."""

    def __init__(self, staging: StagingService) -> None:
        self.staging = staging
        self.blob_store = staging.blobs.locator

    def _check(self, workspace: str) -> None:
        if workspace != self.staging.workspace:
            raise NotFoundError(f"workspace {workspace!r} not found")

    async def batch_exists(self, workspace: str, batch_id: str) -> bool:
        self._check(workspace)
        try:
            await self.staging.get_batch(batch_id)
        except NotFoundError:
            return False
        return True

    async def list_items(
        self, workspace: str, batch_id: str, part_name: str | None
    ) -> Sequence[StagedItem]:
        """Staged files in catalog order (stable: ids only grow)."""
        self._check(workspace)
        return [
            StagedItem(
                name=row.name,
                key=row.blob_key,
                content_type=row.content_type,
                size=row.size,
            )
            async for row in self.staging.iter_files(batch_id, part_name=part_name)
        ]

    async def create_output_batch(
        self, workspace: str, batch_id: str, *, content_type: str, display_name: str
    ) -> None:
        self._check(workspace)
        await self.staging.create_batch(batch_id, "multipart-batch", content_type, display_name)

    async def output_prefix(self, workspace: str, batch_id: str) -> str:
        self._check(workspace)
        batch = await self.staging.get_batch(batch_id)
        return f"b{batch.pk}/o"  # under the batch's own prefix: its expiry removes them

    async def add_output_blob(self, workspace: str, batch_id: str, blob: OutputBlob) -> None:
        self._check(workspace)
        batch = await self.staging.get_batch(batch_id)
        info = BlobInfo(size=blob.size, sha256=blob.sha256)
        await self.staging.add_blob(
            batch, blob.name, blob.key, info,
            content_type=blob.content_type, part_name=blob.part_name or None, replace=True,
        )  # fmt: skip


class OutboxNotifier:
    """``Notifier``: the job-done webhook goes through the outbox (retries, at-least-once)."""

    def __init__(
        self, staging: StagingService, authorization: str | None, wake: Callable[[], None]
    ) -> None:
        self.staging = staging
        self.authorization = authorization
        self.wake = wake

    async def job_finished(self, job_id: str, url: str, success: bool) -> None:
        body = JobNotification(
            event_id=uuid.uuid4().hex, job_id=job_id, job_state="success" if success else "fail"
        ).wire()
        body.pop("delivery_attempt", None)
        async with self.staging.engine.begin() as conn:
            await enqueue_webhook(conn, url=url, body=body, authorization=self.authorization)
        self.wake()
