"""Webhook bodies the server POSTs to ``notificationsURL`` (snake_case, PROTOCOL.md)."""

from __future__ import annotations

from typing import Literal

from batchflow.protocol._base import SnakeWire

__all__ = [
    "FailedFile",
    "FilesStatusNotification",
    "IngestErrorDetails",
    "IngestStatusNotification",
    "JobNotification",
    "StagingNotification",
]


class IngestErrorDetails(SnakeWire):
    """Why an ingest failed."""

    type: str
    reason: str


class IngestStatusNotification(SnakeWire):
    """``ingest-status`` category."""

    type: Literal["ingest-status-notification-v1"] = "ingest-status-notification-v1"
    success: bool
    error_details: IngestErrorDetails | None = None


class FailedFile(SnakeWire):
    """A file that could not be staged, with its failure type."""

    type: str
    file_name: str
    reason: str


class FilesStatusNotification(SnakeWire):
    """``files-status`` category."""

    type: Literal["ingest-files-status-notification-v1"] = "ingest-files-status-notification-v1"
    success: bool
    ingested_files: list[str]
    failed_files: list[FailedFile]
    content_truncated: bool = False


class StagingNotification(SnakeWire):
    """The data-staging envelope."""

    type: Literal["roboflow-data-staging-notification-v1"] = "roboflow-data-staging-notification-v1"
    event_id: str
    ingest_id: str
    batch_id: str
    shard_id: str | None
    notification: IngestStatusNotification | FilesStatusNotification
    delivery_attempt: int = 1

    def wire(self) -> dict[str, object]:
        """Keep ``shard_id: null`` on the wire (the envelope always carries it)."""
        body = super().wire()
        body.setdefault("shard_id", None)
        return body


class JobNotification(SnakeWire):
    """Job-done webhook."""

    type: Literal["roboflow-batch-job-notification-v1"] = "roboflow-batch-job-notification-v1"
    event_id: str
    job_id: str
    job_state: Literal["success", "fail"]
    delivery_attempt: int = 1
