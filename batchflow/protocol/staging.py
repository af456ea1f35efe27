"""Data-staging wire models (PROTOCOL.md, DS prefix). Field names are exact."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from batchflow.protocol._base import Wire

__all__ = [
    "Batch",
    "BatchContentType",
    "BatchPart",
    "BatchType",
    "CountResponse",
    "ErrorBody",
    "FileMetadata",
    "IngestResponse",
    "ListBatchesResponse",
    "ListFilesResponse",
    "ListPartsResponse",
    "ListShardsResponse",
    "NotificationCategory",
    "Reference",
    "ReferencesIngestRequest",
    "ShardStatus",
    "SignedURLDetails",
    "SignedURLResponse",
    "WorkspaceResponse",
]

BatchType = Literal["simple-batch", "sharded-batch", "multipart-batch"]
BatchContentType = Literal["images", "videos", "metadata", "archives", "mixed"]
NotificationCategory = Literal["ingest-status", "files-status"]


class ErrorBody(Wire):
    """Every non-2xx answer: ``{"error": "<human message>"}``."""

    error: str


class WorkspaceResponse(Wire):
    """``GET /`` answer."""

    workspace: str


class Batch(Wire):
    """One staged batch."""

    display_name: str
    batch_id: str
    batch_type: BatchType
    batch_content_type: BatchContentType
    created_date: datetime
    expiry_date: datetime


class ListBatchesResponse(Wire):
    """``GET /batches``."""

    batches: list[Batch]
    next_page_token: str | None = None


class BatchResponse(Wire):
    """``GET /batches/{batchId}``."""

    batch: Batch


class CountResponse(Wire):
    """``GET /batches/{batchId}/count``."""

    count: int


class BatchPart(Wire):
    """One part of a multipart batch."""

    part_name: str
    part_type: str
    content_type: str
    part_description: str | None = None
    nested_content_type: str | None = None


class ListPartsResponse(Wire):
    """``GET /batches/{batchId}/parts``."""

    batch_parts: list[BatchPart]


class FileMetadata(Wire):
    """One staged file as ``list`` shows it."""

    download_url: str = Field(alias="downloadURL")
    file_name: str
    part_name: str | None = None
    shard_id: str | None = None
    content_type: str
    nested_content_type: str | None = None
    # batchflow serve extras (the hosted API omits them; clients treat them as optional)
    size: int | None = None
    sha256: str | None = None


class ListFilesResponse(Wire):
    """``GET /batches/{batchId}/list``."""

    files_metadata: list[FileMetadata]
    next_page_token: str | None = None


class ShardStatus(Wire):
    """One ingest shard's progress."""

    shard_id: str
    status_name: str
    status_type: str
    event_timestamp: datetime
    shard_objects_count: int
    status_metadata: dict[str, Any] | None = None


class ListShardsResponse(Wire):
    """``GET /batches/{batchId}/shards``."""

    shards: list[ShardStatus]
    next_page_token: str | None = None


class SignedURLDetails(Wire):
    """Where to PUT raw bytes, with the headers to send."""

    upload_url: str = Field(alias="uploadURL")
    extension_headers: dict[str, str] = Field(default_factory=dict)


class SignedURLResponse(Wire):
    """Answer of ``upload/video`` and ``bulk-upload/image-files``."""

    signed_url_details: SignedURLDetails = Field(alias="signedURLDetails")


class Reference(Wire):
    """One ``{name, url}`` pair of a references ingest."""

    name: str
    url: str


class ReferencesIngestRequest(Wire):
    """Body of ``bulk-upload/image-references`` and ``bulk-upload/video-references``.

    Exactly one of the inline list (``imageReferences`` or ``videoReferences``) or the URL to a
    JSONL file (``imageReferencesURL`` / ``videoReferencesURL``) is given.
    """

    image_references: list[Reference] | None = None
    image_references_url: str | None = Field(default=None, alias="imageReferencesURL")
    video_references: list[Reference] | None = None
    video_references_url: str | None = Field(default=None, alias="videoReferencesURL")
    ingest_id: str | None = None
    notifications_url: str | None = Field(default=None, alias="notificationsURL")
    notification_categories: list[NotificationCategory] | None = None


class IngestResponse(Wire):
    """Answer of a references ingest."""

    ingest_id: str
    shard_ids: list[str] | None = None
    duplicated: bool | None = None
