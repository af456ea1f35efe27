"""The internal staging API: batches and files, for the HTTP routes and for the job engine.

The job engine creates its output batches with :meth:`StagingService.create_batch` and adds
files with :meth:`StagingService.add_file`; it reads input batches with
:meth:`StagingService.iter_files` (each :class:`FileRow` has a ``blob_key`` in the
:class:`~batchflow.server.core.blobs.BlobStore`).
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from batchflow.errors import ConflictError
from batchflow.protocol.ids import validate_batch_id, validate_file_name
from batchflow.server.core.blobs import BlobInfo, BlobStore, UrlSigner, put_stream
from batchflow.server.core.db import utcnow
from batchflow.server.core.settings import ServerSettings
from batchflow.server.staging.batches import (
    BatchRow,
    FileRow,
    get_or_create_batch,
    list_files,
    require_batch,
)
from batchflow.server.staging.schema import files

__all__ = ["StagingService", "guess_content_type", "new_blob_key"]

_CHUNK = 1024 * 1024


def guess_content_type(name: str, fallback: str | None = None) -> str:
    """Content type from the file name, else ``fallback``, else octet-stream."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or fallback or "application/octet-stream"


def new_blob_key(batch_pk: int) -> str:
    """A fresh blob key; every blob of a batch is under ``b<pk>/`` so expiry removes it whole."""
    return f"b{batch_pk}/{secrets.token_hex(16)}"


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        while block := await handle.read(_CHUNK):
            yield block


class StagingService:
    """Batches and staged files of the server's workspace."""

    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        signer: UrlSigner,
        settings: ServerSettings,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.signer = signer
        self.settings = settings
        self.workspace = settings.workspace

    async def create_batch(
        self,
        batch_id: str,
        batch_type: str = "multipart-batch",
        content_type: str = "mixed",
        display_name: str | None = None,
        *,
        upload_mode: str = "output",
    ) -> BatchRow:
        """Get or create a batch (409 when it exists with another upload mode/content type)."""
        validate_batch_id(batch_id)
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    return await get_or_create_batch(
                        conn,
                        workspace=self.workspace,
                        batch_id=batch_id,
                        batch_type=batch_type,
                        content_type=content_type,
                        upload_mode=upload_mode,
                        display_name=display_name,
                        ttl=self.settings.batch_ttl,
                    )
            except IntegrityError as exc:  # a concurrent request created it first: read it
                if attempt == 2:
                    raise ConflictError(f"batch {batch_id!r} is being created, retry") from exc
        raise AssertionError("unreachable")

    async def get_batch(self, batch_id: str) -> BatchRow:
        """The batch or :class:`NotFoundError`."""
        async with self.engine.connect() as conn:
            return await require_batch(conn, self.workspace, batch_id)

    async def add_file(
        self,
        batch_id: str,
        name: str,
        source: Path | AsyncIterable[bytes],
        content_type: str | None = None,
        part_name: str | None = None,
        *,
        max_bytes: int | None = None,
        replace: bool = False,
    ) -> FileRow:
        """Stage one file (streamed, never whole in memory) into an existing batch.

        ``source`` is a local file (streamed into the store) or an async byte stream. Adding the
        same name again with the same bytes is a no-op answering the existing row; other bytes
        raise :class:`ConflictError`, or with ``replace=True`` take the old file's place (a
        re-run task never duplicates).
        """
        validate_file_name(name)
        batch = await self.get_batch(batch_id)
        key = new_blob_key(batch.pk)
        chunks = _file_chunks(source) if isinstance(source, Path) else source
        info = await put_stream(self.blobs, key, chunks, max_bytes=max_bytes)
        return await self.add_blob(
            batch, name, key, info, content_type=content_type, part_name=part_name, replace=replace
        )

    async def add_blob(
        self,
        batch: BatchRow,
        name: str,
        key: str,
        info: BlobInfo,
        *,
        content_type: str | None = None,
        part_name: str | None = None,
        replace: bool = False,
    ) -> FileRow:
        """Record the stored blob ``key`` as the file ``name`` of ``batch`` (see add_file)."""
        validate_file_name(name)
        row = FileRow(
            pk=0,
            batch_pk=batch.pk,
            name=name,
            part_name=part_name or None,
            shard_id=None,
            size=info.size,
            sha256=info.sha256,
            content_type=content_type or guess_content_type(name),
            blob_key=key,
        )
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    files.insert().values(
                        batch_pk=batch.pk,
                        name=name,
                        part_name=part_name or "",
                        status="ok",
                        size=row.size,
                        sha256=row.sha256,
                        content_type=row.content_type,
                        blob_key=key,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError as exc:
            existing = await self._live_file(batch.pk, name, part_name or "")
            if existing is not None and existing.sha256 == info.sha256:
                if existing.blob_key != key:
                    await self.blobs.delete(key)
                return existing
            if existing is not None and replace:
                return await self._replace(existing, row)
            if existing is None or existing.blob_key != key:
                await self.blobs.delete(key)
            raise ConflictError(
                f"file {name!r} is already in batch {batch.batch_id!r} with other content"
            ) from exc
        assert result.inserted_primary_key is not None
        return FileRow(
            pk=int(result.inserted_primary_key[0]),
            batch_pk=row.batch_pk,
            name=row.name,
            part_name=row.part_name,
            shard_id=None,
            size=row.size,
            sha256=row.sha256,
            content_type=row.content_type,
            blob_key=row.blob_key,
        )

    async def _replace(self, existing: FileRow, new: FileRow) -> FileRow:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(files)
                .where(files.c.id == existing.pk)
                .values(
                    blob_key=new.blob_key,
                    size=new.size,
                    sha256=new.sha256,
                    content_type=new.content_type,
                )
            )
        if existing.blob_key != new.blob_key:
            await self.blobs.delete(existing.blob_key)
        return FileRow(
            pk=existing.pk,
            batch_pk=existing.batch_pk,
            name=existing.name,
            part_name=existing.part_name,
            shard_id=existing.shard_id,
            size=new.size,
            sha256=new.sha256,
            content_type=new.content_type,
            blob_key=new.blob_key,
        )

    async def _live_file(self, batch_pk: int, name: str, part_name: str) -> FileRow | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(files).where(
                        files.c.batch_pk == batch_pk,
                        files.c.part_name == part_name,
                        files.c.name == name,
                        files.c.status != "failed",
                    )
                )
            ).first()
        if row is None or row.status != "ok":
            return None
        return FileRow(
            pk=row.id,
            batch_pk=row.batch_pk,
            name=row.name,
            part_name=row.part_name or None,
            shard_id=None,
            size=row.size or 0,
            sha256=row.sha256 or "",
            content_type=row.content_type or "application/octet-stream",
            blob_key=row.blob_key,
        )

    async def files_page(
        self, batch_id: str, *, part_name: str | None = None, after: int = 0, limit: int = 500
    ) -> list[FileRow]:
        """One page of staged files in id order (``after`` = last ``FileRow.pk`` seen)."""
        async with self.engine.connect() as conn:
            batch = await require_batch(conn, self.workspace, batch_id)
            return await list_files(conn, batch.pk, part_name=part_name, after=after, limit=limit)

    async def iter_files(
        self, batch_id: str, *, part_name: str | None = None, page_size: int = 500
    ) -> AsyncIterator[FileRow]:
        """Every staged file of the batch, paged; no connection is held between pages."""
        after = 0
        while True:
            page = await self.files_page(
                batch_id, part_name=part_name, after=after, limit=page_size
            )
            for row in page:
                yield row
            if len(page) < page_size:
                return
            after = page[-1].pk

    def download_url(self, file: FileRow) -> str:
        """A signed GET URL for ``file`` (valid for the configured signed-URL TTL)."""
        return self.signer.blob_url(file.blob_key)
