"""Signed PUT uploads (``upload/video``, ``bulk-upload/image-files``) and tar extraction.

A PUT streams its body into the blob store. A video becomes a file of its simple batch at
once; a tar is queued (upload state ``received``) and :meth:`UploadService.run` extracts it in
the background through :mod:`~batchflow.server.staging.tarsafe`. All rows of one extraction
commit in one transaction, so a server killed mid-extraction extracts the tar again after a
restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import anyio.abc
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from batchflow.errors import BatchflowError, ConflictError, NotFoundError, TransientError
from batchflow.protocol.ids import validate_batch_id, validate_file_name
from batchflow.protocol.staging import SignedURLResponse
from batchflow.server.core.blobs import put_stream
from batchflow.server.core.db import utcnow
from batchflow.server.core.wakeup import Wakeup
from batchflow.server.staging.references import MAX_VIDEO_BYTES
from batchflow.server.staging.schema import batches, uploads
from batchflow.server.staging.service import StagingService
from batchflow.server.staging.tarextract import TarExtraction

__all__ = ["MAX_TAR_BYTES", "UploadService"]

log = structlog.get_logger(__name__)

MAX_TAR_BYTES = 11 * 1024 * 1024 * 1024
UPLOAD_TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class _Upload:
    pk: int
    upload_id: str
    batch_pk: int
    batch_id: str
    kind: str
    file_name: str | None
    state: str
    size: int | None
    sha256: str | None
    ingest_pk: int | None


def tar_key(batch_pk: int, upload_id: str) -> str:
    return f"b{batch_pk}/upload-{upload_id}.tar"


class UploadService:
    """Creates upload sessions, receives their bodies, extracts tars in the background."""

    def __init__(
        self,
        staging: StagingService,
        *,
        authorization: str | None,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.staging = staging
        self.authorization = authorization
        self.on_outbox = on_outbox
        self.wakeup = Wakeup()

    async def start(
        self, batch_id: str, kind: str, file_name: str | None, display_name: str | None
    ) -> SignedURLResponse:
        """Create an upload session (``kind`` video or tar) and its signed PUT URL."""
        validate_batch_id(batch_id)
        if file_name is not None:
            validate_file_name(file_name)
        video = kind == "video"
        upload_id = secrets.token_urlsafe(24)
        now = utcnow()
        batch = await self.staging.create_batch(
            batch_id,
            "simple-batch" if video else "sharded-batch",
            "videos" if video else "images",
            display_name,
            upload_mode="simple" if video else "bulk",
        )
        async with self.staging.engine.begin() as conn:
            await conn.execute(
                uploads.insert().values(
                    upload_id=upload_id,
                    batch_pk=batch.pk,
                    kind=kind,
                    file_name=file_name,
                    state="open",
                    created_at=now,
                    expires_at=now + UPLOAD_TTL,
                )
            )
        url = self.staging.signer.upload_url(upload_id, ttl=UPLOAD_TTL.total_seconds())
        return SignedURLResponse.model_validate(
            {"signedURLDetails": {"uploadURL": url, "extensionHeaders": {}}}
        )

    async def _get(self, upload_id: str) -> _Upload:
        async with self.staging.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(uploads, batches.c.batch_id)
                    .join(batches, batches.c.id == uploads.c.batch_pk)
                    .where(uploads.c.upload_id == upload_id, batches.c.expires_at > utcnow())
                )
            ).first()
        if row is None:
            raise NotFoundError("unknown or expired upload")
        return _Upload(
            pk=row.id,
            upload_id=row.upload_id,
            batch_pk=row.batch_pk,
            batch_id=row.batch_id,
            kind=row.kind,
            file_name=row.file_name,
            state=row.state,
            size=row.size,
            sha256=row.sha256,
            ingest_pk=row.ingest_pk,
        )

    async def _set(self, pk: int, **values: Any) -> None:
        async with self.staging.engine.begin() as conn:
            await conn.execute(update(uploads).where(uploads.c.id == pk).values(**values))

    async def receive(self, upload_id: str, chunks: AsyncIterable[bytes]) -> None:
        """Store the PUT body of an upload session (once; a failed PUT may be retried)."""
        upload = await self._get(upload_id)
        async with self.staging.engine.begin() as conn:
            claimed = await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload.pk, uploads.c.state == "open")
                .values(state="receiving")
            )
        if claimed.rowcount != 1:
            await self._receive_again(upload_id, chunks)
            return
        try:
            if upload.kind == "video":
                assert upload.file_name is not None
                row = await self.staging.add_file(
                    upload.batch_id, upload.file_name, chunks, max_bytes=MAX_VIDEO_BYTES
                )
                await self._set(upload.pk, state="done", size=row.size, sha256=row.sha256)
                return
            key = tar_key(upload.batch_pk, upload.upload_id)
            info = await put_stream(self.staging.blobs, key, chunks, max_bytes=MAX_TAR_BYTES)
            await self._set(upload.pk, state="received", size=info.size, sha256=info.sha256)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._set(upload.pk, state="open")
            raise
        self.wakeup.wake()

    async def _receive_again(self, upload_id: str, chunks: AsyncIterable[bytes]) -> None:
        """A PUT to an upload already stored: a no-op when it carries the same bytes (a client
        re-sending because the first answer was lost), else 409. Nothing is stored."""
        upload = await self._get(upload_id)  # the claim lost to another request: look again
        if upload.size is None or upload.sha256 is None:
            raise TransientError(
                "this upload is being received by another request; try again", retry_after=1
            )
        size, sha256 = await _digest(chunks, stop_after=upload.size)
        if (size, sha256) != (upload.size, upload.sha256):
            raise ConflictError("this upload was already received, with other content")

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Extract received tars one at a time, forever; resumes interrupted ones at start."""
        async with self.staging.engine.begin() as conn:
            # nobody is receiving any more after a restart: let clients PUT again
            await conn.execute(
                update(uploads).where(uploads.c.state == "receiving").values(state="open")
            )
        task_status.started()
        while True:
            try:
                queued = await self._queued()
            except SQLAlchemyError as exc:  # catalog unreachable: try again later
                log.warning("tar.poll_failed", error=str(exc).splitlines()[0])
                queued = []
            for upload_id in queued:
                try:
                    await self._extract(await self._get(upload_id))
                except (BatchflowError, SQLAlchemyError, OSError) as exc:
                    log.warning("tar.extract_error", upload=upload_id, error=str(exc))
                except Exception as exc:  # a bad tar must not stop the server
                    log.exception("tar.extract_crashed", upload=upload_id)
                    await self._give_up(upload_id, f"extraction failed: {type(exc).__name__}")
            await self.wakeup.wait(2.0)

    async def _give_up(self, upload_id: str, reason: str) -> None:
        with contextlib.suppress(SQLAlchemyError):
            async with self.staging.engine.begin() as conn:
                await conn.execute(
                    update(uploads)
                    .where(uploads.c.upload_id == upload_id)
                    .values(state="failed", error=reason)
                )

    async def _queued(self) -> list[str]:
        async with self.staging.engine.connect() as conn:
            rows = await conn.execute(
                select(uploads.c.upload_id)
                .where(uploads.c.kind == "tar", uploads.c.state.in_(("received", "processing")))
                .order_by(uploads.c.id)
            )
            return [row[0] for row in rows]

    async def _extract(self, upload: _Upload) -> None:
        job = TarExtraction(
            self.staging,
            upload_pk=upload.pk,
            upload_id=upload.upload_id,
            batch_pk=upload.batch_pk,
            digest=upload.sha256 or "",
            ingest_pk=upload.ingest_pk,
            tar_key=tar_key(upload.batch_pk, upload.upload_id),
            authorization=self.authorization,
        )
        await job.run()
        await self.staging.blobs.delete(tar_key(upload.batch_pk, upload.upload_id))
        self.on_outbox()


_DIGEST_BLOCK = 1024 * 1024


async def _digest(chunks: AsyncIterable[bytes], *, stop_after: int) -> tuple[int, str | None]:
    """Size and sha256 of a body, hashed in ~1 MiB blocks off the event loop; gives up (digest
    ``None``) as soon as it is longer than ``stop_after`` bytes."""
    digest = hashlib.sha256()
    size = 0
    pending = bytearray()
    async for chunk in chunks:
        size += len(chunk)
        if size > stop_after:
            return size, None
        pending += chunk
        if len(pending) >= _DIGEST_BLOCK:
            await anyio.to_thread.run_sync(digest.update, bytes(pending))
            pending.clear()
    digest.update(pending)
    return size, digest.hexdigest()
