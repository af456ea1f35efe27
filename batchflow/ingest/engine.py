"""The ingest engine: listing -> filter -> shards -> (skip acknowledged) -> send -> journal ack.

::

    source.list_pages --pages--> filter + chunk --shards--> N shard workers --> journal.aack

Every arrow is a small bounded stream, so memory is O(shard size x shards in flight) whatever
the size of the listing. Shards are cut deterministically in listing order; each gets a stable
ingest id from (batch, source, index, digest of names and stable identities). A shard is
acknowledged in the fsync'd journal only after the server acknowledged it, so a re-run skips it.
A shard that fails for good is recorded (its files counted as failed) and the run goes on,
unless ``fail_fast``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchflow.config import Limits
from batchflow.errors import BatchflowError, UsageError
from batchflow.ingest.options import IngestMode, IngestOptions, IngestSummary, SkipRecord
from batchflow.ingest.senders import ShardResult, ShardSender
from batchflow.ingest.skips import SkipLog
from batchflow.pipeline import (
    SYSTEM_CLOCK,
    Clock,
    Identity,
    Journal,
    Shard,
    ShardBuilder,
    StageCounters,
    collapse_errors,
    run_workers,
)
from batchflow.protocol import validate_file_name
from batchflow.sources import ObjectRef, Source

__all__ = ["IngestEngine", "IngestProgress", "Listing", "canonical_source", "identity_for"]

_MAX_IMAGE_BYTES = Limits().max_image_bytes
_ShardJob = tuple[Shard[ObjectRef], str]
Listing = tuple[Sequence[ObjectRef], MemoryObjectReceiveStream[Sequence[ObjectRef]]]
"""A started listing: its first page (already received) and the stream of the pages after it."""


def canonical_source(source: Source) -> str:
    """The source as it identifies an ingest: local paths made absolute, URLs as given."""
    desc = source.description
    if source.scheme in ("file", "references") and "://" not in desc:
        return os.path.abspath(desc)
    if desc.startswith("file://"):
        return "file://" + os.path.abspath(desc[len("file://") :])
    return desc


def identity_for(mode: IngestMode, bucket: str) -> Callable[[ObjectRef], Identity]:
    """What a shard's digest covers per item: never a presigned URL (it changes every run)."""
    if mode == "references":
        return lambda ref: (ref.name, ref.url or "", ref.size)
    if mode == "signed-references":
        return lambda ref: (ref.name, f"{bucket}\x00{ref.key}\x00{ref.etag or ''}", ref.size)
    return lambda ref: (ref.name, ref.key, ref.size)


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """A snapshot for progress output; ``shards_total`` is None until the listing ended."""

    elapsed: float
    listed: int
    matched: int
    skipped: int
    shards_total: int | None
    shards_done: int
    shards_resumed: int
    shards_failed: int
    files_sent: int
    files_failed: int
    bytes_sent: int
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed": round(self.elapsed, 3),
            "listed": self.listed,
            "matched": self.matched,
            "skipped": self.skipped,
            "shardsTotal": self.shards_total,
            "shardsDone": self.shards_done,
            "shardsResumed": self.shards_resumed,
            "shardsFailed": self.shards_failed,
            "filesSent": self.files_sent,
            "filesFailed": self.files_failed,
            "bytesSent": self.bytes_sent,
            "done": self.done,
        }


class IngestEngine:
    """One ingest run. ``sender`` is None only for a dry run; ``journal`` None disables resume."""

    def __init__(
        self,
        source: Source,
        options: IngestOptions,
        mode: IngestMode,
        *,
        sender: ShardSender | None,
        skips: SkipLog,
        journal: Journal | None = None,
        on_progress: Callable[[IngestProgress], None] | None = None,
        progress_interval: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if sender is None and not options.dry_run:
            raise ValueError("a sender is needed unless this is a dry run")
        self.source = source
        self.options = options
        self.mode = mode
        self.sender = sender
        self.skips = skips
        self.journal = journal
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.clock = clock
        self.source_id = canonical_source(source)
        self.counters = StageCounters("send", options.concurrency)
        self._started = 0.0
        self._shards_total: int | None = None
        self._cut = 0
        self._resumed = 0
        self._sent = 0
        self._duplicated = 0
        self._failed = 0
        self._files_sent = 0
        self._files_failed = 0
        self._bytes = 0
        self._ids: list[str] = []
        self._failures: list[SkipRecord] = []
        self._first_taken = False
        self._first_done = anyio.Event()

    # -- running ---------------------------------------------------------------------------
    async def run(self, listing: Listing | None = None) -> IngestSummary:
        """List, shard and send everything; return the summary (errors propagate).

        ``listing`` is a listing the caller already started (its first page, peeked, and the
        stream of the rest, fed by ``source.list_pages`` in the caller's task group); without
        it the engine starts the listing itself.
        """
        self._started = self.clock.now()
        jobs_send, jobs_recv = anyio.create_memory_object_stream[_ShardJob](
            self.options.concurrency
        )
        on_error = None if self.options.fail_fast else self._shard_failed
        async with collapse_errors(), anyio.create_task_group() as outer:
            if self.on_progress is not None:
                outer.start_soon(self._tick)
            async with anyio.create_task_group() as tg:
                if listing is None:
                    pages_send, pages_recv = anyio.create_memory_object_stream[Sequence[ObjectRef]](
                        2
                    )
                    tg.start_soon(self.source.list_pages, pages_send)
                    listing = ((), pages_recv)
                tg.start_soon(self._chunk, listing, jobs_send)
                tg.start_soon(
                    lambda: run_workers(
                        self.options.concurrency,
                        jobs_recv,
                        None,
                        self._send,
                        self.counters,
                        clock=self.clock,
                        on_error=on_error,
                    )
                )
            outer.cancel_scope.cancel()
        if self.on_progress is not None:
            self.on_progress(self.progress(done=True))
        return self.summary()

    async def _tick(self) -> None:
        assert self.on_progress is not None
        while True:
            await self.clock.sleep(self.progress_interval)
            self.on_progress(self.progress())

    def _accept(self, ref: ObjectRef, names: set[str]) -> bool:
        """Validate one listed item; skipped ones are recorded (never silently dropped)."""
        try:
            validate_file_name(ref.name)
        except UsageError as exc:
            self.skips.add(SkipRecord(ref.name, "invalid-file-name", exc.message))
            return False
        if not self.options.videos and ref.size is not None and ref.size > _MAX_IMAGE_BYTES:
            reason = f"{ref.size} bytes is over the {_MAX_IMAGE_BYTES}-byte image limit"
            self.skips.add(SkipRecord(ref.name, "file-size-limit-exceeded", reason))
            return False
        if ref.name in names:
            self.skips.add(
                SkipRecord(ref.name, "duplicate-file-name", "the name appears twice in a shard")
            )
            return False
        names.add(ref.name)
        return True

    async def _chunk(self, listing: Listing, send: MemoryObjectSendStream[_ShardJob]) -> None:
        first, receive = listing
        size = self.options.shard_size_for(self.mode)
        builder: ShardBuilder[ObjectRef] = ShardBuilder(
            size, identity_for(self.mode, self.source.bucket)
        )
        names: set[str] = set()  # of the shard being built: duplicates in references files

        async def take(page: Sequence[ObjectRef]) -> None:
            for ref in page:
                if not self._accept(ref, names):
                    continue
                shard = builder.add(ref)
                if shard is not None:
                    names.clear()
                    await self._dispatch(shard, send)

        with receive, send:
            await take(first)
            async for page in receive:
                await take(page)
            last = builder.flush()
            if last is not None:
                await self._dispatch(last, send)
            self._shards_total = self._cut

    async def _dispatch(
        self, shard: Shard[ObjectRef], send: MemoryObjectSendStream[_ShardJob]
    ) -> None:
        self._cut += 1
        ingest_id = shard.key(self.options.batch_id, self.source_id).ingest_id
        self._ids.append(ingest_id)
        if self.journal is not None and self.journal.is_acked(ingest_id):
            self._resumed += 1
            self.skips.on_event(
                "shard",
                {"index": shard.index, "ingestId": ingest_id, "status": "resumed",
                 "files": len(shard.items)},
            )  # fmt: skip
            return
        await send.send((shard, ingest_id))

    async def _send(self, job: _ShardJob) -> None:
        shard, ingest_id = job
        if self.sender is None:  # dry run: planned, not sent
            self.skips.on_event(
                "shard",
                {"index": shard.index, "ingestId": ingest_id, "status": "planned",
                 "files": len(shard.items)},
            )  # fmt: skip
            return
        if self._first_taken:
            await self._first_done.wait()
            result = await self.sender.send(shard, ingest_id)
        else:
            # The first shard goes alone: it creates the batch (servers may refuse concurrent
            # creations) and surfaces key or permission problems before the rest is sent.
            self._first_taken = True
            try:
                result = await self.sender.send(shard, ingest_id)
            finally:
                self._first_done.set()
        self._record(shard, ingest_id, result)
        if result.failures:
            return
        if self.journal is not None:
            await self.journal.aack(ingest_id, index=shard.index, files=result.files)
        status = "duplicated" if result.duplicated else "sent"
        self.skips.on_event(
            "shard",
            {"index": shard.index, "ingestId": ingest_id, "status": status,
             "files": result.files},
        )  # fmt: skip

    def _record(self, shard: Shard[ObjectRef], ingest_id: str, result: ShardResult) -> None:
        self._files_sent += result.files
        self._bytes += result.bytes
        if result.failures:
            self._failed += 1
            self._files_failed += len(result.failures)
            self._failures.extend(result.failures[: max(20 - len(self._failures), 0)])
            for failure in result.failures:
                self.skips.on_event("failed", failure.as_dict())
            return
        self._sent += 1
        if result.duplicated:
            self._duplicated += 1

    async def _shard_failed(self, job: _ShardJob, exc: Exception) -> None:
        if not isinstance(exc, BatchflowError):
            raise exc
        shard, ingest_id = job
        self._failed += 1
        self._files_failed += len(shard.items)
        record = SkipRecord(f"shard {shard.index} ({ingest_id})", "shard-failed", exc.message)
        if len(self._failures) < 20:
            self._failures.append(record)
        self.skips.on_event(
            "shard",
            {"index": shard.index, "ingestId": ingest_id, "status": "failed",
             "files": len(shard.items), "error": exc.message,
             "errorType": type(exc).__name__},
        )  # fmt: skip

    # -- reporting -------------------------------------------------------------------------
    def progress(self, *, done: bool = False) -> IngestProgress:
        stats = self.source.statistics()
        return IngestProgress(
            elapsed=self.clock.now() - self._started,
            listed=stats.listed,
            matched=stats.matched,
            skipped=self.skips.count,
            shards_total=self._shards_total,
            shards_done=self._sent + self._resumed + self._failed,
            shards_resumed=self._resumed,
            shards_failed=self._failed,
            files_sent=self._files_sent,
            files_failed=self._files_failed,
            bytes_sent=self._bytes,
            done=done,
        )

    def summary(self) -> IngestSummary:
        stats = self.source.statistics()
        by_kind, examples = self.skips.snapshot()
        return IngestSummary(
            batch_id=self.options.batch_id,
            source=self.source_id,
            mode=self.mode,
            dry_run=self.options.dry_run,
            listed=stats.listed,
            matched=stats.matched,
            skipped=self.skips.count,
            skipped_by_kind=by_kind,
            skipped_examples=examples,
            shards_total=self._cut,
            shards_sent=self._sent,
            shards_resumed=self._resumed,
            shards_duplicated=self._duplicated,
            shards_failed=self._failed,
            files_sent=self._files_sent,
            files_failed=self._files_failed,
            bytes_sent=self._bytes,
            elapsed=self.clock.now() - self._started,
            ingest_ids=tuple(self._ids),
            failures=tuple(self._failures),
            journal=str(self.journal.path) if self.journal is not None else None,
        )
