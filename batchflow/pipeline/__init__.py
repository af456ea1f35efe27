"""The ingest engine: bounded stages, retries with backoff, the resume journal, shard plans.

Wiring an ingest (sketch)::

    journal = Journal.open(journal_path(batch, source.description), plan=params)
    sign = Stage("sign", sign_shard, workers=limits.sign_workers)
    upload = Stage("upload", upload_shard, workers=limits.concurrency, on_error=record)
    await Pipeline(Stage("shard", ...), sign, upload, buffer=4).run(source.list_pages, sink)

or join ``chunk_pages(receive, send, size=..., identify=...)`` by hand between the source and
the stages; skip shards whose ``shard.key(batch, source).ingest_id`` is ``journal.is_acked``.
"""

from __future__ import annotations

from batchflow.pipeline._groups import collapse_errors, peek
from batchflow.pipeline._state import journal_path, state_dir
from batchflow.pipeline.journal import Journal, JournalMismatch
from batchflow.pipeline.retry import (
    SYSTEM_CLOCK,
    Clock,
    RetryEvent,
    SyncClock,
    SystemClock,
    backoff_delay,
    is_transient,
    next_delay,
    retry_call,
    retry_call_sync,
)
from batchflow.pipeline.shard_plan import (
    ContentDigest,
    Identity,
    Shard,
    ShardBuilder,
    ShardKey,
    chunk_pages,
    derive_ingest_id,
    iter_shards,
)
from batchflow.pipeline.stages import (
    Pipeline,
    ProgressEvent,
    Stage,
    StageCounters,
    StageStats,
    run_workers,
)

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "ContentDigest",
    "Identity",
    "Journal",
    "JournalMismatch",
    "Pipeline",
    "ProgressEvent",
    "RetryEvent",
    "Shard",
    "ShardBuilder",
    "ShardKey",
    "Stage",
    "StageCounters",
    "StageStats",
    "SyncClock",
    "SystemClock",
    "backoff_delay",
    "chunk_pages",
    "collapse_errors",
    "derive_ingest_id",
    "is_transient",
    "iter_shards",
    "journal_path",
    "peek",
    "next_delay",
    "retry_call",
    "retry_call_sync",
    "run_workers",
    "state_dir",
]
