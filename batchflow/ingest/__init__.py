"""Ingest plans: sources + signing + pipeline + client, resumable through a journal.

``await ingest(uri, IngestOptions(batch_id=...), settings=...)`` stages a local folder (images as
streamed tars, videos one by one), a bucket (presigned references) or a references JSONL, in
deterministic shards with stable ingest ids, and returns an :class:`IngestSummary`.
``await sign(uri, out, url_ttl=...)`` writes a references JSONL for a bucket.
"""

from __future__ import annotations

from batchflow.ingest.engine import IngestEngine, IngestProgress, canonical_source, identity_for
from batchflow.ingest.options import (
    IngestMode,
    IngestOptions,
    IngestSummary,
    SkipRecord,
    ingest_mode,
)
from batchflow.ingest.run import ingest, open_ingest_source, sign
from batchflow.ingest.senders import (
    ReferencesSender,
    ShardResult,
    ShardSender,
    TarSender,
    VideoSender,
)
from batchflow.ingest.skips import EventSink, SkipLog

__all__ = [
    "EventSink",
    "IngestEngine",
    "IngestMode",
    "IngestOptions",
    "IngestProgress",
    "IngestSummary",
    "ReferencesSender",
    "ShardResult",
    "ShardSender",
    "SkipLog",
    "SkipRecord",
    "TarSender",
    "VideoSender",
    "canonical_source",
    "identity_for",
    "ingest",
    "ingest_mode",
    "open_ingest_source",
    "sign",
]
