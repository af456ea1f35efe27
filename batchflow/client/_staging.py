"""Data-staging calls (PROTOCOL.md, DS prefix).

Retry safety per call: every GET is retried on transient errors. ``start_video_upload`` and
``start_bulk_image_upload`` only hand out a signed URL, so they are retried too. A references
ingest is retried when it carries an ``ingest_id`` (the server answers a re-send as
``duplicated``); without one, and for ``upload_image``, only when the server surely did not act
(connection never opened, or 429).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.client._core import Empty, never
from batchflow.client._errors import request_not_processed
from batchflow.client._multipart import multipart_upload
from batchflow.client._transfer import TransferCalls
from batchflow.config import Limits
from batchflow.errors import UsageError
from batchflow.pipeline.retry import is_transient
from batchflow.protocol import (
    Batch,
    BatchPart,
    BatchResponse,
    CountResponse,
    FileMetadata,
    IngestResponse,
    ListBatchesResponse,
    ListFilesResponse,
    ListPartsResponse,
    ListShardsResponse,
    Reference,
    ReferencesIngestRequest,
    ShardStatus,
    SignedURLDetails,
    SignedURLResponse,
    validate_batch_id,
    validate_file_name,
)
from batchflow.protocol.staging import NotificationCategory

__all__ = ["StagingCalls"]

_MAX_REFERENCES = Limits().max_references_per_request

RefLike = Reference | Mapping[str, str]


def _references(refs: Sequence[RefLike]) -> list[Reference]:
    return [r if isinstance(r, Reference) else Reference.model_validate(r) for r in refs]


class StagingCalls(TransferCalls):
    """Batches, files, shards, uploads and references ingests."""

    # -- batches ---------------------------------------------------------------------------
    async def list_batches(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> ListBatchesResponse:
        """One page of ``GET /batches``."""
        return await self.call(
            "GET",
            await self.ds("batches"),
            ListBatchesResponse,
            params={"pageSize": page_size, "nextPageToken": page_token},
        )

    @asynccontextmanager
    async def iter_batches(
        self, *, page_size: int | None = None, buffer: int = 64
    ) -> AsyncIterator[MemoryObjectReceiveStream[Batch]]:
        """Every batch, paged by a producer task: ``async with c.iter_batches() as rx:``."""
        async with self.paginate(
            lambda token: self.list_batches(page_size=page_size, page_token=token),
            lambda page: page.batches,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive

    async def get_batch(self, batch_id: str) -> Batch:
        url = await self.ds("batches", validate_batch_id(batch_id))
        return (await self.call("GET", url, BatchResponse)).batch

    async def count(self, batch_id: str, part_name: str | None = None) -> int:
        url = await self.ds("batches", validate_batch_id(batch_id), "count")
        answer = await self.call("GET", url, CountResponse, params={"partName": part_name})
        return answer.count

    async def parts(self, batch_id: str) -> list[BatchPart]:
        url = await self.ds("batches", validate_batch_id(batch_id), "parts")
        return (await self.call("GET", url, ListPartsResponse)).batch_parts

    # -- files and shards ------------------------------------------------------------------
    async def list_files(
        self,
        batch_id: str,
        *,
        part_name: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ListFilesResponse:
        """One page of ``GET /batches/{id}/list``."""
        url = await self.ds("batches", validate_batch_id(batch_id), "list")
        params = {"pageSize": page_size, "nextPageToken": page_token, "partName": part_name}
        return await self.call("GET", url, ListFilesResponse, params=params)

    @asynccontextmanager
    async def iter_files(
        self,
        batch_id: str,
        *,
        part_name: str | None = None,
        page_size: int | None = None,
        buffer: int = 64,
    ) -> AsyncIterator[MemoryObjectReceiveStream[FileMetadata]]:
        """Every file of a batch: ``async with c.iter_files(b) as rx: async for f in rx: ...``."""
        async with self.paginate(
            lambda token: self.list_files(
                batch_id, part_name=part_name, page_size=page_size, page_token=token
            ),
            lambda page: page.files_metadata,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive

    async def list_shards(
        self, batch_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> ListShardsResponse:
        url = await self.ds("batches", validate_batch_id(batch_id), "shards")
        params = {"pageSize": page_size, "nextPageToken": page_token}
        return await self.call("GET", url, ListShardsResponse, params=params)

    @asynccontextmanager
    async def iter_shards(
        self, batch_id: str, *, page_size: int | None = None, buffer: int = 64
    ) -> AsyncIterator[MemoryObjectReceiveStream[ShardStatus]]:
        async with self.paginate(
            lambda token: self.list_shards(batch_id, page_size=page_size, page_token=token),
            lambda page: page.shards,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive

    # -- uploads ---------------------------------------------------------------------------
    async def upload_image(
        self,
        batch_id: str,
        file_name: str,
        data: bytes | AsyncIterable[bytes] | Path,
        *,
        display_name: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """``POST upload/image`` with one multipart part named ``file``.

        ``bytes`` and ``Path`` bodies are re-sent on retry (connection failures and 429 only:
        the protocol does not promise idempotence); an async iterable is sent once.
        """
        url = await self.ds("batches", validate_batch_id(batch_id), "upload", "image")
        body = multipart_upload(validate_file_name(file_name), data, content_type=content_type)
        await self.call(
            "POST",
            url,
            Empty,
            params={"fileName": file_name, "displayName": display_name},
            content=body.content,
            headers=body.headers,
            classify=request_not_processed if body.replayable else never,
        )

    async def start_video_upload(
        self, batch_id: str, file_name: str, *, display_name: str | None = None
    ) -> SignedURLDetails:
        """``POST upload/video``: where to PUT the video (then call ``put_signed``)."""
        url = await self.ds("batches", validate_batch_id(batch_id), "upload", "video")
        params = {"fileName": validate_file_name(file_name), "displayName": display_name}
        answer = await self.call("POST", url, SignedURLResponse, params=params)
        return answer.signed_url_details

    async def upload_video(
        self,
        batch_id: str,
        file_name: str,
        body: bytes | AsyncIterable[bytes] | Path,
        *,
        size: int | None = None,
        display_name: str | None = None,
    ) -> SignedURLDetails:
        """``start_video_upload`` then ``put_signed``; returns where it went."""
        details = await self.start_video_upload(batch_id, file_name, display_name=display_name)
        await self.put_signed(details.upload_url, details.extension_headers, body, size=size)
        return details

    async def start_bulk_image_upload(
        self, batch_id: str, *, display_name: str | None = None
    ) -> SignedURLDetails:
        """``POST bulk-upload/image-files``: where to PUT one ``.tar`` of images."""
        url = await self.ds("batches", validate_batch_id(batch_id), "bulk-upload", "image-files")
        answer = await self.call(
            "POST", url, SignedURLResponse, params={"displayName": display_name}
        )
        return answer.signed_url_details

    # -- references ingests ----------------------------------------------------------------
    async def ingest_image_references(
        self,
        batch_id: str,
        refs: Sequence[RefLike] | None = None,
        *,
        refs_url: str | None = None,
        ingest_id: str | None = None,
        notifications_url: str | None = None,
        categories: Sequence[NotificationCategory] | None = None,
        display_name: str | None = None,
    ) -> IngestResponse:
        """``POST bulk-upload/image-references`` with inline ``refs`` or a ``refs_url``."""
        return await self._ingest(
            "image",
            batch_id,
            refs,
            refs_url,
            ingest_id,
            notifications_url,
            categories,
            display_name,
        )

    async def ingest_video_references(
        self,
        batch_id: str,
        refs: Sequence[RefLike] | None = None,
        *,
        refs_url: str | None = None,
        ingest_id: str | None = None,
        notifications_url: str | None = None,
        categories: Sequence[NotificationCategory] | None = None,
        display_name: str | None = None,
    ) -> IngestResponse:
        """``POST bulk-upload/video-references``."""
        return await self._ingest(
            "video",
            batch_id,
            refs,
            refs_url,
            ingest_id,
            notifications_url,
            categories,
            display_name,
        )

    async def _ingest(  # noqa: PLR0917  # private, mirrors the two public signatures
        self,
        kind: Literal["image", "video"],
        batch_id: str,
        refs: Sequence[RefLike] | None,
        refs_url: str | None,
        ingest_id: str | None,
        notifications_url: str | None,
        categories: Sequence[NotificationCategory] | None,
        display_name: str | None,
    ) -> IngestResponse:
        if (refs is None) == (refs_url is None):
            raise UsageError("give either references or a references URL, not both or neither")
        if refs is not None and len(refs) > _MAX_REFERENCES:
            raise UsageError(
                f"{len(refs)} references in one request; the limit is {_MAX_REFERENCES}"
            )
        items = _references(refs) if refs is not None else None
        request = ReferencesIngestRequest(
            image_references=items if kind == "image" else None,
            image_references_url=refs_url if kind == "image" else None,
            video_references=items if kind == "video" else None,
            video_references_url=refs_url if kind == "video" else None,
            ingest_id=ingest_id,
            notifications_url=notifications_url,
            notification_categories=list(categories) if categories is not None else None,
        )
        url = await self.ds(
            "batches", validate_batch_id(batch_id), "bulk-upload", f"{kind}-references"
        )
        return await self.call(
            "POST",
            url,
            IngestResponse,
            params={"displayName": display_name},
            json=request.wire(),
            classify=is_transient if ingest_id else request_not_processed,
        )
