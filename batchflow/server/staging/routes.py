"""Data-staging routes (PROTOCOL.md, DS prefix), all behind the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.datastructures import UploadFile

from batchflow.errors import NotFoundError, UsageError
from batchflow.protocol.ids import validate_batch_id, validate_file_name
from batchflow.protocol.staging import (
    BatchPart,
    BatchResponse,
    CountResponse,
    FileMetadata,
    IngestResponse,
    ListBatchesResponse,
    ListFilesResponse,
    ListPartsResponse,
    ListShardsResponse,
    ReferencesIngestRequest,
    ShardStatus,
    SignedURLResponse,
)
from batchflow.server.context import ServerContext
from batchflow.server.core.auth import require_api_key
from batchflow.server.core.db import as_utc
from batchflow.server.core.paging import decode_token, page_of, page_size
from batchflow.server.staging.batches import (
    count_files,
    list_batches,
    list_files,
    list_parts,
    require_batch,
)
from batchflow.server.staging.ingests import shard_file_counts, shard_page
from batchflow.server.staging.tarsafe import IMAGE_SUFFIXES

__all__ = ["SHARD_STATUS", "router"]


async def check_workspace(workspace: str, request: Request) -> None:
    """404 for any workspace but the server's: another workspace's ids are never visible."""
    if workspace != _ctx(request).settings.workspace:
        raise NotFoundError(f"workspace {workspace!r} not found")


router = APIRouter(
    prefix="/data-staging/v1/external/{workspace}",
    dependencies=[Depends(require_api_key), Depends(check_workspace)],
    tags=["data-staging"],
)

# catalog shard state -> (statusName, statusType) on the wire
SHARD_STATUS = {
    "pending": ("pending", "info"),
    "in-progress": ("in-progress", "info"),
    "completed": ("completed", "success"),
    "failed": ("failed", "error"),
}

PageSize = Annotated[int | None, Query(alias="pageSize")]
PageToken = Annotated[str | None, Query(alias="nextPageToken")]
PartName = Annotated[str | None, Query(alias="partName")]
DisplayName = Annotated[str | None, Query(alias="displayName", max_length=256)]
FileName = Annotated[str, Query(alias="fileName")]


def _ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def _batch_id(batch_id: str) -> str:
    return validate_batch_id(batch_id)


def _dump(model: Any) -> dict[str, Any]:
    body: dict[str, Any] = model.wire()
    return body


@router.get("/batches")
async def get_batches(request: Request, size: PageSize = None, token: PageToken = None) -> Any:
    ctx = _ctx(request)
    limit, after = page_size(size), decode_token(token)
    async with ctx.engine.connect() as conn:
        found = await list_batches(conn, ctx.settings.workspace, after=after, limit=limit + 1)
    rows, next_page = page_of(found, limit, lambda row: row.pk)
    response = ListBatchesResponse(
        batches=[row.to_wire() for row in rows], next_page_token=next_page
    )
    return _dump(response)


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str) -> Any:
    batch = await _ctx(request).staging.get_batch(_batch_id(batch_id))
    return _dump(BatchResponse(batch=batch.to_wire()))


@router.get("/batches/{batch_id}/count")
async def get_count(request: Request, batch_id: str, part: PartName = None) -> Any:
    ctx = _ctx(request)
    async with ctx.engine.connect() as conn:
        batch = await require_batch(conn, ctx.settings.workspace, _batch_id(batch_id))
        count = await count_files(conn, batch.pk, part)
    return _dump(CountResponse(count=count))


@router.get("/batches/{batch_id}/parts")
async def get_parts(request: Request, batch_id: str) -> Any:
    ctx = _ctx(request)
    async with ctx.engine.connect() as conn:
        batch = await require_batch(conn, ctx.settings.workspace, _batch_id(batch_id))
        parts = await list_parts(conn, batch.pk)
    return _dump(
        ListPartsResponse(
            batch_parts=[
                BatchPart(part_name=name, part_type="files", content_type=content_type)
                for name, content_type in parts
            ]
        )
    )


@router.get("/batches/{batch_id}/list")
async def get_files(
    request: Request,
    batch_id: str,
    size: PageSize = None,
    token: PageToken = None,
    part: PartName = None,
) -> Any:
    ctx = _ctx(request)
    limit, after = page_size(size), decode_token(token)
    async with ctx.engine.connect() as conn:
        batch = await require_batch(conn, ctx.settings.workspace, _batch_id(batch_id))
        found = await list_files(conn, batch.pk, part_name=part, after=after, limit=limit + 1)
    rows, next_page = page_of(found, limit, lambda row: row.pk)
    items = [
        FileMetadata.model_validate(
            {
                "downloadURL": ctx.signer.blob_url(row.blob_key),
                "fileName": row.name,
                "partName": row.part_name,
                "shardId": row.shard_id,
                "contentType": row.content_type,
                "size": row.size,
                "sha256": row.sha256,
            }
        )
        for row in rows
    ]
    response = ListFilesResponse(files_metadata=items, next_page_token=next_page)
    return _dump(response)


@router.get("/batches/{batch_id}/shards")
async def get_shards(
    request: Request, batch_id: str, size: PageSize = None, token: PageToken = None
) -> Any:
    ctx = _ctx(request)
    limit, after = page_size(size), decode_token(token)
    async with ctx.engine.connect() as conn:
        batch = await require_batch(conn, ctx.settings.workspace, _batch_id(batch_id))
        found = await shard_page(conn, batch.pk, after=after, limit=limit + 1)
        rows, next_page = page_of(found, limit, lambda row: int(row.id))
        counts = await shard_file_counts(conn, [row.id for row in rows])
    items = []
    for row in rows:
        tally = counts.get(row.id, {})
        name, kind = SHARD_STATUS.get(row.state, (row.state, "info"))
        items.append(
            ShardStatus(
                shard_id=row.shard_id,
                status_name=name,
                status_type=kind,
                event_timestamp=as_utc(row.updated_at),
                shard_objects_count=row.objects_count,
                status_metadata={
                    "ingestId": row.ingest_id,
                    "stagedFiles": tally.get("ok", 0),
                    "failedFiles": tally.get("failed", 0),
                    "pendingFiles": tally.get("pending", 0),
                },
            )
        )
    response = ListShardsResponse(shards=items, next_page_token=next_page)
    return _dump(response)


async def _upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while block := await upload.read(1024 * 1024):
        yield block


@router.post("/batches/{batch_id}/upload/image")
async def upload_image(
    request: Request, batch_id: str, file_name: FileName, display_name: DisplayName = None
) -> Any:
    ctx = _ctx(request)
    _batch_id(batch_id)
    validate_file_name(file_name)
    if not file_name.lower().endswith(tuple(IMAGE_SUFFIXES)):
        raise UsageError(f"{file_name!r} is not an image file name")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UsageError("send the image as multipart/form-data")
    try:
        form_cm = request.form(max_files=2, max_fields=20)
        async with form_cm as form:
            parts = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if len(parts) != 1:
                raise UsageError("send exactly one file part")
            await ctx.staging.create_batch(
                batch_id, "simple-batch", "images", display_name, upload_mode="simple"
            )
            await ctx.staging.add_file(
                batch_id,
                file_name,
                _upload_chunks(parts[0]),
                max_bytes=ctx.settings.limits.max_image_bytes,
            )
    except ValueError as exc:  # multipart parse errors
        raise UsageError(f"malformed multipart body: {exc}") from exc
    return {}


@router.post("/batches/{batch_id}/upload/video")
async def upload_video(
    request: Request, batch_id: str, file_name: FileName, display_name: DisplayName = None
) -> Any:
    response: SignedURLResponse = await _ctx(request).uploads.start(
        _batch_id(batch_id), "video", file_name, display_name
    )
    return _dump(response)


@router.post("/batches/{batch_id}/bulk-upload/image-files")
async def bulk_upload_image_files(
    request: Request, batch_id: str, display_name: DisplayName = None
) -> Any:
    response = await _ctx(request).uploads.start(_batch_id(batch_id), "tar", None, display_name)
    return _dump(response)


@router.post("/batches/{batch_id}/bulk-upload/image-references")
async def bulk_upload_image_references(
    request: Request,
    batch_id: str,
    body: Annotated[ReferencesIngestRequest, Body()],
    display_name: DisplayName = None,
) -> Any:
    response: IngestResponse = await _ctx(request).ingest.submit(
        _batch_id(batch_id), "images", body, display_name
    )
    return _dump(response)


@router.post("/batches/{batch_id}/bulk-upload/video-references")
async def bulk_upload_video_references(
    request: Request,
    batch_id: str,
    body: Annotated[ReferencesIngestRequest, Body()],
    display_name: DisplayName = None,
) -> Any:
    response = await _ctx(request).ingest.submit(_batch_id(batch_id), "videos", body, display_name)
    return _dump(response)
