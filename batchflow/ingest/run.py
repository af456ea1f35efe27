"""The library entry points behind ``batchflow ingest`` and ``batchflow sign``.

``ingest(uri, options, settings=...)`` opens the source, the signer, the journal and the client,
checks what can be checked before anything is listed (batch id, credentials, API reachable),
then runs the :class:`~batchflow.ingest.engine.IngestEngine`. ``sign(uri, out, ...)`` streams
``{"name", "url"}`` lines for a cloud source, the replacement for hand-written signing scripts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
from anyio import CapacityLimiter

from batchflow.client import BatchClient
from batchflow.config import ClientSettings, RetryPolicy
from batchflow.errors import (
    NetworkError,
    NotFoundError,
    NothingMatched,
    PermanentError,
    RetriesExhausted,
    UsageError,
)
from batchflow.ingest.engine import IngestEngine, IngestProgress, Listing, canonical_source
from batchflow.ingest.options import IngestMode, IngestOptions, IngestSummary, ingest_mode
from batchflow.ingest.senders import ReferencesSender, ShardSender, TarSender, VideoSender
from batchflow.ingest.skips import EventSink, SkipLog
from batchflow.pipeline import Journal, collapse_errors, journal_path, peek, state_dir
from batchflow.signing import Signer, sign_many, signer_from_environment, validate_ttl
from batchflow.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ObjectRef, Source, open_source

__all__ = ["PREFLIGHT_RETRY", "TextSink", "ingest", "open_ingest_source", "sign"]

PREFLIGHT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=1.0, deadline=10.0)
"""The reachability check fails within seconds: nothing has been listed or sent yet."""
_CLOUD = ("s3", "gs", "az")


def open_ingest_source(uri: str, *, videos: bool, skips: SkipLog | None = None) -> Source:
    """The source for ``uri``: images or videos by extension; references files unfiltered."""
    probe = open_source(uri)  # cheap: nothing is listed; tells us the scheme
    exts = (
        None if probe.scheme == "references" else (VIDEO_EXTENSIONS if videos else IMAGE_EXTENSIONS)
    )
    return open_source(uri, extensions=exts, on_skip=skips.source_skip if skips else None)


def _warn_signer(signer: Signer, ttl: int, on_warning: Callable[[str], None] | None) -> None:
    for message in dict.fromkeys(signer.warnings(ttl)):
        if on_warning is not None:
            on_warning(message)


def _check_state_base(base: Path) -> None:
    """Refuse a state folder that can never hold a journal (nothing is created here)."""
    for folder in (base, *base.parents):
        if folder.exists():
            if not folder.is_dir():
                raise PermanentError(
                    f"state folder {base} cannot be used: {folder} is a file "
                    "(set BATCHFLOW_STATE_DIR to a folder)"
                )
            return


def _open_journal(
    options: IngestOptions, mode: IngestMode, source_id: str, base: Path | None
) -> Journal | None:
    # images and videos of one folder are two ingests; a changed shard size is a mismatch
    key = f"{source_id}#videos" if options.videos else source_id
    path = journal_path(options.batch_id, key, base=base or state_dir())
    if options.dry_run:
        return Journal.open(path) if path.exists() and not options.restart else None
    return Journal.open(path, plan=options.plan(mode, source_id), restart=options.restart)


async def _workspace(settings: ClientSettings) -> str:
    """Resolve the workspace with a short retry budget: an unreachable API fails fast."""
    try:
        async with BatchClient(replace(settings, retry=PREFLIGHT_RETRY)) as probe:
            return await probe.workspace()
    except (NetworkError, RetriesExhausted) as exc:
        if isinstance(exc, RetriesExhausted) and not isinstance(exc.__cause__, NetworkError):
            raise  # the API answered (5xx, 429): its own message says more
        raise NetworkError(f"cannot reach the Batch API at {settings.api_url} ({exc})") from exc


async def _check_resumable(
    client: BatchClient, batch_id: str, journal: Journal, api_url: str
) -> None:
    """A journal with acknowledged shards is only worth trusting if the batch still exists.

    Otherwise (the batch expired, the local service's data was wiped, another API is in use)
    a resumed run would skip every shard and stage nothing.
    """
    try:
        await client.get_batch(batch_id)
    except NotFoundError as exc:
        raise UsageError(
            f"the journal {journal.path} says {len(journal.acked)} shard(s) were sent, but batch "
            f"{batch_id!r} does not exist at {api_url}; run again with --restart"
        ) from exc


def _sender(
    mode: IngestMode,
    client: BatchClient,
    options: IngestOptions,
    source: Source,
    signer: Signer | None,
) -> ShardSender:
    if mode == "local-images":
        return TarSender(client, options)
    if mode == "local-videos":
        return VideoSender(client, options, files_at_once=options.concurrency)
    return ReferencesSender(
        client, options, signer=signer, bucket=source.bucket, limiter=CapacityLimiter(2)
    )


async def ingest(
    uri: str,
    options: IngestOptions,
    *,
    settings: ClientSettings | None,
    signer: Signer | None = None,
    on_event: EventSink | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[IngestProgress], None] | None = None,
    progress_interval: float = 1.0,
    state_base: Path | None = None,
) -> IngestSummary:
    """Stage ``uri`` into ``options.batch_id``; ``settings`` may be None only for a dry run.

    A listing that matches nothing raises :class:`NothingMatched` (unless
    ``options.allow_empty``: then an empty summary) before any batch or journal is created.
    """
    skips = SkipLog(fail_fast=options.fail_fast, on_event=on_event)
    source = open_ingest_source(uri, videos=options.videos, skips=skips)
    mode = ingest_mode(source.scheme, videos=options.videos)
    if mode == "signed-references" and signer is None and not options.dry_run:
        signer = signer_from_environment(source.scheme)
    if signer is not None:
        _warn_signer(signer, options.url_ttl, on_warning)
    if settings is None and not options.dry_run:
        raise UsageError("no Batch API settings: give --api-url or set API_BASE_URL")
    _check_state_base(state_base or state_dir())  # a local mistake is said before the network
    workspace = None if options.dry_run else await _workspace(_need(settings))

    def engine(sender: ShardSender | None, journal: Journal | None) -> IngestEngine:
        return IngestEngine(
            source, options, mode, sender=sender, skips=skips, journal=journal,
            on_progress=on_progress, progress_interval=progress_interval,
        )  # fmt: skip

    async def stage(listing: Listing) -> IngestSummary:
        journal = _open_journal(options, mode, canonical_source(source), state_base)
        try:
            if options.dry_run:
                return await engine(None, journal).run(listing)
            api = _need(settings)
            async with BatchClient(
                api, concurrency=options.concurrency * 2, workspace=workspace
            ) as client:
                if journal is not None and journal.acked:
                    await _check_resumable(client, options.batch_id, journal, api.api_url)
                sender = _sender(mode, client, options, source, signer)
                return await engine(sender, journal).run(listing)
        finally:
            if journal is not None:
                journal.close()

    started = time.monotonic()
    send, receive = anyio.create_memory_object_stream[Sequence[ObjectRef]](2)
    async with collapse_errors(), anyio.create_task_group() as tg:
        tg.start_soon(source.list_pages, send)
        with receive:
            # Peek before the journal or the batch exist: an empty listing creates neither.
            first = await peek(receive)
            if first is not None:
                return await stage((first, receive))
    # The listing ended without a match (a listing error would have been raised above).
    if not options.allow_empty:
        raise _nothing_matched(source)
    return _empty_summary(source, options, mode, skips, time.monotonic() - started)


def _need(settings: ClientSettings | None) -> ClientSettings:
    if settings is None:  # pragma: no cover - ingest() checks this first
        raise UsageError("no Batch API settings: give --api-url or set API_BASE_URL")
    return settings


def _nothing_matched(source: Source) -> NothingMatched:
    found = source.scope.nothing_matched(source.statistics())
    return NothingMatched(f"{found} (use --allow-empty to accept an empty listing)")


def _empty_summary(
    source: Source, options: IngestOptions, mode: IngestMode, skips: SkipLog, elapsed: float
) -> IngestSummary:
    """The summary of an accepted empty listing: nothing sent, no journal."""
    stats = source.statistics()
    by_kind, examples = skips.snapshot()
    return IngestSummary(
        batch_id=options.batch_id, source=canonical_source(source), mode=mode,
        dry_run=options.dry_run, listed=stats.listed, matched=0, skipped=skips.count,
        skipped_by_kind=by_kind, skipped_examples=examples, shards_total=0, shards_sent=0,
        shards_resumed=0, shards_duplicated=0, shards_failed=0, files_sent=0, files_failed=0,
        bytes_sent=0, elapsed=elapsed, ingest_ids=(),
    )  # fmt: skip


class TextSink(Protocol):
    """Where ``sign`` writes its lines (a text file)."""

    def write(self, text: str, /) -> object: ...


async def sign(
    uri: str,
    out: TextSink,
    *,
    url_ttl: int,
    videos: bool = False,
    allow_empty: bool = False,
    signer: Signer | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_skip: Callable[[Mapping[str, Any]], None] | None = None,
) -> int:
    """Write one ``{"name", "url"}`` JSON line per object of the cloud source ``uri``.

    Returns the number of lines written. Names are keys relative to the listed folder. A
    listing that matches nothing raises :class:`NothingMatched` unless ``allow_empty``.
    """
    validate_ttl(url_ttl)
    skips = SkipLog(on_event=(lambda _k, fields: on_skip(fields)) if on_skip else None)
    source = open_ingest_source(uri, videos=videos, skips=skips)
    if source.scheme not in _CLOUD:
        raise UsageError(f"'{uri}': sign takes a bucket location (s3://, gs:// or az://)")
    signer = signer or signer_from_environment(source.scheme)
    _warn_signer(signer, url_ttl, on_warning)
    limiter = CapacityLimiter(2)
    written = 0

    async def write(page: Sequence[ObjectRef]) -> None:
        nonlocal written
        urls = await sign_many(
            signer, source.bucket, [r.key for r in page], expires_in=url_ttl, limiter=limiter
        )
        text = "".join(
            json.dumps({"name": r.name, "url": u}, ensure_ascii=False) + "\n"
            for r, u in zip(page, urls, strict=True)
        )
        await anyio.to_thread.run_sync(out.write, text)
        written += len(page)

    send, receive = anyio.create_memory_object_stream[Sequence[ObjectRef]](2)
    async with collapse_errors(), anyio.create_task_group() as tg:
        tg.start_soon(source.list_pages, send)
        with receive:
            first = await peek(receive)
            if first is not None:
                await write(first)
                async for page in receive:
                    await write(page)
    if written == 0 and not allow_empty:
        raise _nothing_matched(source)
    return written
