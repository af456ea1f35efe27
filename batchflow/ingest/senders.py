"""How one shard reaches the Batch API, per ingest mode.

Every sender turns a :class:`~batchflow.pipeline.Shard` of ``ObjectRef`` plus its stable ingest
id into requests, and returns only after the server acknowledged them (the engine then writes
the journal ack):

- :class:`ReferencesSender`: one ``bulk-upload/image-references`` (or video) request with the
  shard's references inline; cloud keys are presigned here, in the shard worker.
- :class:`TarSender`: one tar of local images built while it is PUT (``notification_config.json``
  carries the ingest id, so a re-sent tar is a server-side no-op).
- :class:`VideoSender`: one ``upload/video`` + PUT per local video, several at once.

A local file that cannot be read when it is sent (gone, unreadable, changed size since it was
listed) is a failure of that file alone (``unreadable``), never retried as a network error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from anyio import CapacityLimiter

from batchflow.client import BatchClient
from batchflow.errors import BatchflowError, ConflictError, LocalFileError, NotFoundError
from batchflow.ingest.options import IngestOptions, SkipRecord
from batchflow.ingest.tarstream import FileChangedError, TarEntry, plan_tar
from batchflow.pipeline import Shard, is_transient, retry_call
from batchflow.protocol import Reference
from batchflow.signing import Signer, sign_many
from batchflow.sources import ObjectRef

__all__ = ["ReferencesSender", "ShardResult", "ShardSender", "TarSender", "VideoSender"]


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What the server acknowledged for one shard; ``failures`` are files that did not go up."""

    files: int
    bytes: int
    duplicated: bool = False
    failures: tuple[SkipRecord, ...] = ()


class ShardSender(Protocol):
    """Sends one shard and returns once the server acknowledged it."""

    async def send(self, shard: Shard[ObjectRef], ingest_id: str) -> ShardResult: ...


def _known_bytes(items: tuple[ObjectRef, ...]) -> int:
    return sum(ref.size or 0 for ref in items)


class ReferencesSender:
    """Inline references ingests; presigns cloud keys when a ``signer`` is given."""

    def __init__(
        self,
        client: BatchClient,
        options: IngestOptions,
        *,
        signer: Signer | None = None,
        bucket: str = "",
        limiter: CapacityLimiter | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.signer = signer
        self.bucket = bucket
        self.limiter = limiter

    async def references(self, items: tuple[ObjectRef, ...]) -> list[Reference]:
        """The shard's ``{name, url}`` pairs (signing the keys when needed)."""
        if self.signer is None:
            return [Reference(name=ref.name, url=ref.url or "") for ref in items]
        urls = await sign_many(
            self.signer,
            self.bucket,
            [ref.key for ref in items],
            expires_in=self.options.url_ttl,
            limiter=self.limiter,
        )
        return [Reference(name=ref.name, url=url) for ref, url in zip(items, urls, strict=True)]

    async def _batch_takes_these_references(self) -> bool:
        """Whether the batch exists as a bulk batch of this ingest's content type."""
        try:
            batch = await self.client.get_batch(self.options.batch_id)
        except NotFoundError:
            return False
        want = "videos" if self.options.videos else "images"
        return batch.batch_type == "sharded-batch" and batch.batch_content_type == want

    async def send(self, shard: Shard[ObjectRef], ingest_id: str) -> ShardResult:
        refs = await self.references(shard.items)
        opts = self.options
        call = (
            self.client.ingest_video_references
            if opts.videos
            else self.client.ingest_image_references
        )
        try:
            answer = await call(
                opts.batch_id,
                refs,
                ingest_id=ingest_id,
                notifications_url=opts.notifications_url,
                categories=list(opts.categories) or None,
                display_name=opts.display_name,
            )
        except ConflictError:
            if self.signer is None or not await self._batch_takes_these_references():
                raise
            # The id derives from the objects' keys/etags/sizes, never from the URLs: a 409 for
            # it from an API that digests whole URLs means this very shard was accepted before,
            # signed at another moment. Other 409s (a batch of the other content type, or of
            # simple uploads) were ruled out just above.
            return ShardResult(files=len(refs), bytes=_known_bytes(shard.items), duplicated=True)
        return ShardResult(
            files=len(refs), bytes=_known_bytes(shard.items), duplicated=bool(answer.duplicated)
        )


class TarSender:
    """Local images as one streamed tar per shard (bulk image-files upload)."""

    def __init__(self, client: BatchClient, options: IngestOptions) -> None:
        self.client = client
        self.options = options

    async def send(self, shard: Shard[ObjectRef], ingest_id: str) -> ShardResult:
        entries = [
            TarEntry(name=ref.name, size=ref.size or 0, path=Path(ref.key)) for ref in shard.items
        ]
        failures: list[SkipRecord] = []
        while entries:
            # A tar without some files is other content: it gets an id of its own, so a later
            # run that sends the whole shard (under ``ingest_id``) is not refused as a conflict.
            tar_id = _reduced_id(ingest_id, failures) if failures else ingest_id
            try:
                size = await self._send_tar(entries, tar_id)
            except FileChangedError as exc:
                bad = next((e for e in entries if e.path == exc.path), None)
                if bad is None or self.options.fail_fast:
                    raise
                entries.remove(bad)
                failures.append(SkipRecord(bad.name, "unreadable", exc.message))
                continue
            return ShardResult(files=len(entries), bytes=size, failures=tuple(failures))
        return ShardResult(files=0, bytes=0, failures=tuple(failures))

    async def _send_tar(self, entries: list[TarEntry], tar_id: str) -> int:
        config = {"ingestId": tar_id}
        if self.options.notifications_url:
            config["notificationsURL"] = self.options.notifications_url
        plan = plan_tar(entries, config=config)

        async def attempt() -> None:
            # a fresh upload session per attempt: a half-received PUT is never resumed
            details = await self.client.start_bulk_image_upload(
                self.options.batch_id, display_name=self.options.display_name
            )
            await self.client.put_signed(
                details.upload_url, details.extension_headers, plan.stream(), size=plan.size
            )

        await retry_call(
            attempt,
            policy=self.client.settings.retry,
            clock=self.client.clock,
            classify=is_transient,
        )
        return plan.size


def _reduced_id(ingest_id: str, failures: list[SkipRecord]) -> str:
    """The ingest id of a shard's tar without the ``failures``' files (stable for the same set)."""
    text = "\n".join([ingest_id, *sorted(f.item for f in failures)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class VideoSender:
    """Local videos, one ``upload/video`` each, up to ``files_at_once`` in flight overall."""

    def __init__(self, client: BatchClient, options: IngestOptions, *, files_at_once: int) -> None:
        self.client = client
        self.options = options
        self.limiter = CapacityLimiter(max(files_at_once, 1))
        self._first_taken = False
        self._first_done = anyio.Event()

    async def send(self, shard: Shard[ObjectRef], ingest_id: str) -> ShardResult:
        failures: list[SkipRecord] = []
        sent = 0
        sent_bytes = 0

        async def upload(ref: ObjectRef) -> None:
            if self._first_taken:
                await self._first_done.wait()
            else:  # the very first video goes alone: it creates the batch
                self._first_taken = True
            try:
                await self.client.upload_video(
                    self.options.batch_id,
                    ref.name,
                    Path(ref.key),
                    size=ref.size,
                    display_name=self.options.display_name,
                )
            finally:
                self._first_done.set()

        async def one(ref: ObjectRef) -> None:
            nonlocal sent, sent_bytes
            async with self.limiter:
                try:
                    await upload(ref)
                except BatchflowError as exc:
                    if self.options.fail_fast:
                        raise
                    kind = "unreadable" if isinstance(exc, LocalFileError) else "upload-failed"
                    failures.append(SkipRecord(ref.name, kind, exc.message))
                    return
                sent += 1
                sent_bytes += ref.size or 0

        async with anyio.create_task_group() as tg:
            for ref in shard.items:
                tg.start_soon(one, ref)
        return ShardResult(files=sent, bytes=sent_bytes, failures=tuple(failures))
