"""References ingests: accept a request into the catalog, then fetch it in the background.

``submit`` validates and records the whole request in one transaction (queued file rows per
shard of :attr:`ServerSettings.shard_size` references) and answers at once; :class:`IngestWorker`
fetches queued rows through :mod:`batchflow.server.core.netguard` with bounded concurrency. Queued
rows live in the catalog, so a restarted server resumes where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import httpx
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from batchflow.config import RetryPolicy
from batchflow.errors import BatchflowError, ConflictError, UsageError
from batchflow.protocol.ids import validate_batch_id
from batchflow.protocol.staging import IngestResponse, ReferencesIngestRequest
from batchflow.server.core.blobs import BlobWriter
from batchflow.server.core.netguard import (
    DownloadFailedError,
    DownloadTooLargeError,
    FileSink,
    UnsafeUrlError,
    UrlPolicy,
    fetch_to,
)
from batchflow.server.core.wakeup import Wakeup
from batchflow.server.staging.batches import get_or_create_batch
from batchflow.server.staging.ingests import (
    DEFAULT_CATEGORIES,
    FileOutcome,
    IngestSpec,
    PendingFile,
    create_reference_ingest,
    find_ingest,
    finish_shard_if_done,
    pending_files,
    record_file,
)
from batchflow.server.staging.schema import files, shards
from batchflow.server.staging.service import StagingService, guess_content_type

__all__ = ["MAX_REFERENCES_FILE_BYTES", "MAX_VIDEO_BYTES", "IngestWorker", "references_digest"]

log = structlog.get_logger(__name__)

MAX_REFERENCES_FILE_BYTES = 256 * 1024 * 1024
MAX_VIDEO_BYTES = 4 * 1024 * 1024 * 1024
_INGEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PAGE = 256
_RECORD_GROUP = 256
_FETCH_RETRY = RetryPolicy(
    max_attempts=3, base_delay=0.2, max_delay=2.0, deadline=120.0, max_retry_after=5.0
)


def references_digest(kind: str, references: list[tuple[str, str]]) -> str:
    """A stable digest of an ingest's content (what makes a re-sent ingest a duplicate).

    The query string and fragment are left out: a client that re-sends a shard after a crash
    signs its URLs again, and only the signature and expiry in the query change.
    """
    digest = hashlib.sha256(kind.encode())
    for name, url in references:
        stable = url.split("#", 1)[0].split("?", 1)[0]
        digest.update(b"\n" + json.dumps([name, stable]).encode())
    return digest.hexdigest()


class IngestWorker:
    """Accepts references ingests and runs the background fetcher."""

    def __init__(
        self,
        staging: StagingService,
        client: httpx.AsyncClient,
        *,
        url_policy: UrlPolicy,
        authorization: str | None,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.staging = staging
        self.settings = staging.settings
        self.client = client
        self.url_policy = url_policy
        self.authorization = authorization
        self.on_outbox = on_outbox
        self.wakeup = Wakeup()
        self._in_flight: set[int] = set()
        self._finished: set[int] = set()

    # ---------------------------------------------------------------- accept
    async def submit(
        self,
        batch_id: str,
        content_type: str,
        request: ReferencesIngestRequest,
        display_name: str | None,
    ) -> IngestResponse:
        """Record a references ingest (or recognise a re-sent one) and queue its fetches."""
        validate_batch_id(batch_id)
        kind = "image-references" if content_type == "images" else "video-references"
        references = await self._references(kind, request)
        limit = self.settings.limits.max_references_per_request
        if not references:
            raise UsageError("the request holds no references")
        if len(references) > limit:
            raise UsageError(f"too many references: at most {limit} per request")
        digest = references_digest(kind, references)
        ingest_id = request.ingest_id or f"ingest-{digest[:32]}"
        if not _INGEST_ID.fullmatch(ingest_id):
            raise UsageError("invalid ingestId: use 1-128 characters from A-Z a-z 0-9 _ . : -")
        url = request.notifications_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise UsageError("notificationsURL must be an http(s) URL")
        spec = IngestSpec(
            ingest_id=ingest_id,
            digest=digest,
            kind=kind,
            notifications_url=url,
            categories=tuple(request.notification_categories or DEFAULT_CATEGORIES),
        )
        for attempt in range(2):
            try:
                shard_ids, duplicated = await self._record(
                    batch_id, content_type, spec, references, display_name
                )
                break
            except IntegrityError as exc:  # a concurrent twin won the unique key: look again
                if attempt:
                    raise ConflictError(f"ingest {ingest_id!r} is being recorded") from exc
        self.wakeup.wake()
        self.on_outbox()
        body: dict[str, object] = {"ingestId": ingest_id}
        if content_type == "images":
            body["shardIds"] = shard_ids
        if duplicated:
            body["duplicated"] = True
        return IngestResponse.model_validate(body)

    async def _record(
        self,
        batch_id: str,
        content_type: str,
        spec: IngestSpec,
        references: list[tuple[str, str]],
        display_name: str | None,
    ) -> tuple[list[str], bool]:
        async with self.staging.engine.begin() as conn:
            batch = await get_or_create_batch(
                conn,
                workspace=self.staging.workspace,
                batch_id=batch_id,
                batch_type="sharded-batch",
                content_type=content_type,
                upload_mode="bulk",
                display_name=display_name,
                ttl=self.settings.batch_ttl,
            )
            existing = await find_ingest(conn, batch.pk, spec.ingest_id)
            if existing is not None:
                if existing.digest != spec.digest:
                    raise ConflictError(
                        f"ingestId {spec.ingest_id!r} was already used with other content"
                    )
                rows = await conn.execute(
                    select(shards.c.shard_id)
                    .where(shards.c.ingest_pk == existing.id)
                    .order_by(shards.c.id)
                )
                return [row[0] for row in rows], True
            shard_ids = await create_reference_ingest(
                conn,
                batch_pk=batch.pk,
                spec=spec,
                references=references,
                shard_size=self.settings.shard_size,
                authorization=self.authorization,
            )
            return shard_ids, False

    async def _references(
        self, kind: str, request: ReferencesIngestRequest
    ) -> list[tuple[str, str]]:
        images = kind == "image-references"
        inline = request.image_references if images else request.video_references
        url = request.image_references_url if images else request.video_references_url
        other = (
            (request.video_references, request.video_references_url)
            if images
            else (request.image_references, request.image_references_url)
        )
        field = "imageReferences" if images else "videoReferences"
        if any(value is not None for value in other):
            raise UsageError(f"this route takes {field} or {field[:-1]}sURL only")
        if (inline is None) == (url is None):
            raise UsageError(f"give exactly one of {field} and {field}URL")
        if inline is not None:
            return [(ref.name, ref.url) for ref in inline]
        assert url is not None
        return await self._read_references_file(url)

    async def _read_references_file(self, url: str) -> list[tuple[str, str]]:
        scratch = self.settings.tmp_dir
        await anyio.Path(scratch).mkdir(parents=True, exist_ok=True)
        dest = scratch / f"references-{secrets.token_hex(16)}.jsonl"
        limit = self.settings.limits.max_references_per_request
        try:
            try:
                await fetch_to(
                    self.client,
                    url,
                    lambda: FileSink(dest),
                    policy=self.url_policy,
                    max_bytes=MAX_REFERENCES_FILE_BYTES,
                    retry=_FETCH_RETRY,
                )
            except UnsafeUrlError as exc:
                raise UsageError(f"references URL refused (unsafe-url-detected): {exc}") from exc
            except BatchflowError as exc:
                raise UsageError(f"could not read the references file: {exc.message}") from exc
            return await anyio.to_thread.run_sync(_parse_jsonl, dest, limit)
        finally:
            dest.unlink(missing_ok=True)

    # ---------------------------------------------------------------- fetch
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fetch queued references forever (bounded concurrency); resumes queued rows at start.

        Fetchers hand their outcomes to one recorder that commits them in groups (one
        transaction per group, each shard completed once per group): a commit per file capped
        staging at a few dozen files a second.
        """
        concurrency = self.settings.fetch_concurrency
        send, receive = anyio.create_memory_object_stream[PendingFile](concurrency)
        done_send, done_receive = anyio.create_memory_object_stream[
            tuple[PendingFile, FileOutcome]
        ](concurrency * 4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._recorder, done_receive)
            for _ in range(concurrency):
                tg.start_soon(self._consume, receive.clone(), done_send.clone())
            receive.close()
            done_send.close()
            task_status.started()
            async with send:
                while True:
                    try:
                        await self._produce(send)
                    except SQLAlchemyError as exc:  # catalog unreachable: try again later
                        log.warning("ingest.poll_failed", error=str(exc).splitlines()[0])
                    await self.wakeup.wait(1.0)

    async def _produce(self, send: anyio.abc.ObjectSendStream[PendingFile]) -> None:
        after = 0
        while True:
            self._finished.clear()  # rows finished after this point are skipped below
            async with self.staging.engine.connect() as conn:
                page = await pending_files(conn, limit=_PAGE, after=after)
            for item in page:
                if item.pk in self._in_flight or item.pk in self._finished:
                    continue
                self._in_flight.add(item.pk)
                await send.send(item)
            if len(page) < _PAGE:
                return
            after = page[-1].pk

    def _release(self, item: PendingFile) -> None:
        self._in_flight.discard(item.pk)
        self._finished.add(item.pk)

    async def _consume(
        self,
        receive: anyio.abc.ObjectReceiveStream[PendingFile],
        done: anyio.abc.ObjectSendStream[tuple[PendingFile, FileOutcome]],
    ) -> None:
        async with receive, done:
            async for item in receive:
                try:
                    outcome = await self._fetch(item)
                except (BatchflowError, OSError) as exc:
                    # disk trouble: the row stays queued for the next pass
                    log.warning("ingest.file_error", file=item.name, error=str(exc))
                    self._release(item)
                    continue
                except Exception:  # one bad file must not stop the server
                    log.exception("ingest.file_crashed", file=item.name)
                    self._release(item)
                    continue
                await done.send((item, outcome))

    async def _recorder(
        self, receive: MemoryObjectReceiveStream[tuple[PendingFile, FileOutcome]]
    ) -> None:
        async with receive:
            async for first in receive:
                group = [first]
                while len(group) < _RECORD_GROUP:
                    try:
                        group.append(receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                try:
                    await self._record_group(group)
                finally:
                    for item, _ in group:
                        self._release(item)

    async def _record_group(self, group: list[tuple[PendingFile, FileOutcome]]) -> None:
        """Commit ``group`` at once; if that fails, file by file, so one bad row stays alone."""
        try:
            await self._record_outcomes(group)
            return
        except SQLAlchemyError as exc:  # rows stay queued; fetches repeat (same keys)
            log.warning("ingest.record_failed", files=len(group), error=str(exc).splitlines()[0])
        except Exception:  # the recorder must never stop the server's background work
            log.exception("ingest.record_crashed", files=len(group))
        if len(group) == 1:
            return
        for one in group:
            try:
                await self._record_outcomes([one])
            except Exception:  # noqa: BLE001 - logged; the row stays queued for the next pass
                log.warning("ingest.record_failed", file=one[0].name)

    async def _record_outcomes(self, group: list[tuple[PendingFile, FileOutcome]]) -> None:
        gone: list[str] = []
        async with self.staging.engine.begin() as conn:
            touched: set[int] = set()
            for item, outcome in group:
                shard = await record_file(
                    conn, item.pk, outcome, authorization=self.authorization, finish_shard=False
                )
                if shard:
                    touched.add(shard)
                elif shard is None and outcome.blob_key:
                    exists = await conn.scalar(select(files.c.id).where(files.c.id == item.pk))
                    if exists is None:  # the batch was swept meanwhile
                        gone.append(outcome.blob_key)
            for shard_pk in sorted(touched):
                await finish_shard_if_done(conn, shard_pk, authorization=self.authorization)
        for key in gone:
            await self.staging.blobs.delete(key)
        self.on_outbox()

    async def _fetch(self, item: PendingFile) -> FileOutcome:
        images = item.kind == "image-references"
        max_bytes = self.settings.limits.max_image_bytes if images else MAX_VIDEO_BYTES
        # one key per queued row: a fetch repeated after a crash overwrites, never leaks
        key = f"b{item.batch_pk}/r{item.pk}"
        writers: list[BlobWriter] = []

        def open_sink() -> BlobWriter:  # a fresh writer per attempt
            writers.append(self.staging.blobs.open_write(key))
            return writers[-1]

        try:
            result = await fetch_to(
                self.client,
                item.url,
                open_sink,
                policy=self.url_policy,
                max_bytes=max_bytes,
                retry=_FETCH_RETRY,
            )
        except DownloadTooLargeError as exc:
            return FileOutcome(failure_type="file-size-limit-exceeded", failure_reason=exc.message)
        except UnsafeUrlError as exc:
            return FileOutcome(failure_type="unsafe-url-detected", failure_reason=exc.message)
        except (DownloadFailedError, BatchflowError, OSError) as exc:
            return FileOutcome(failure_type="download-failed", failure_reason=str(exc))
        info = writers[-1].info  # hashed while fetched
        return FileOutcome(
            blob_key=key,
            size=info.size,
            sha256=info.sha256,
            content_type=guess_content_type(item.name, _media_type(result.content_type)),
        )


def _media_type(header: str | None) -> str | None:
    """The origin's Content-Type without parameters, bounded to the catalog column (128)."""
    value = (header or "").split(";", 1)[0].strip()
    return value[:128] or None


def _parse_jsonl(path: Path, limit: int) -> list[tuple[str, str]]:
    """``{"name", "url"}`` per line; blank lines skipped; refuses more than ``limit``."""
    references: list[tuple[str, str]] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
                name, url = item["name"], item["url"]
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"references file line {number}: expected {{name, url}}") from exc
            if not isinstance(name, str) or not isinstance(url, str):
                raise UsageError(f"references file line {number}: name and url must be strings")
            references.append((name, url))
            if len(references) > limit:
                raise UsageError(f"too many references: at most {limit} per request")
    return references
