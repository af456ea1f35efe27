"""What an ingest is asked to do (``IngestOptions``) and what it did (``IngestSummary``).

Both are frozen records: the CLI builds the options from flags, the engine returns the summary.
Validation happens here, once, so a bad flag fails before anything is listed or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from batchflow.config import Limits
from batchflow.errors import UsageError
from batchflow.protocol import validate_batch_id
from batchflow.protocol.staging import NotificationCategory
from batchflow.signing import DEFAULT_TTL_SECONDS, validate_ttl

__all__ = [
    "MAX_CONCURRENCY",
    "IngestMode",
    "IngestOptions",
    "IngestSummary",
    "SkipRecord",
    "ingest_mode",
]

_LIMITS = Limits()
MAX_CONCURRENCY = 64

IngestMode = Literal["references", "signed-references", "local-images", "local-videos"]
"""How shards travel: user URLs, presigned cloud URLs, tars of local images, local videos."""


def ingest_mode(scheme: str, *, videos: bool) -> IngestMode:
    """The mode for a source ``scheme`` (``file``, ``references``, ``s3``, ``gs``, ``az``)."""
    if scheme == "file":
        return "local-videos" if videos else "local-images"
    if scheme == "references":
        return "references"
    return "signed-references"


def _bounded(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """One ingest's parameters (validated on construction).

    ``shard_size`` is references per request (cloud and references sources); ``tar_size`` is
    local files per shard (images per tar, or videos acknowledged together). ``allow_empty``
    accepts a listing that matches nothing (an empty summary) instead of failing.
    """

    batch_id: str
    videos: bool = False
    shard_size: int = _LIMITS.shard_size
    tar_size: int = _LIMITS.tar_shard_size
    concurrency: int = 4
    url_ttl: int = DEFAULT_TTL_SECONDS
    notifications_url: str | None = None
    categories: tuple[NotificationCategory, ...] = ()
    dry_run: bool = False
    fail_fast: bool = False
    restart: bool = False
    display_name: str | None = None
    allow_empty: bool = False

    def __post_init__(self) -> None:
        validate_batch_id(self.batch_id)
        _bounded("--shard-size", self.shard_size, 1, _LIMITS.max_references_per_request)
        _bounded("--tar-size", self.tar_size, 1, _LIMITS.max_tar_members)
        _bounded("--concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        validate_ttl(self.url_ttl)
        url = self.notifications_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise UsageError(f"--notifications-url must be an http(s) URL, got {url!r}")
        for category in self.categories:
            if category not in ("ingest-status", "files-status"):
                raise UsageError(
                    f"unknown notification category {category!r}: use ingest-status or files-status"
                )

    def shard_size_for(self, mode: IngestMode) -> int:
        """Items per shard in ``mode``."""
        return self.tar_size if mode in ("local-images", "local-videos") else self.shard_size

    def plan(self, mode: IngestMode, source: str) -> dict[str, Any]:
        """The journal's plan fingerprint: what must match for a re-run to resume."""
        return {
            "version": 1,
            "batch_id": self.batch_id,
            "source": source,
            "mode": mode,
            "videos": self.videos,
            "shard_size": self.shard_size_for(mode),
        }


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """One item left out (``kind`` e.g. ``file-size-limit-exceeded``) or one failed shard."""

    item: str
    kind: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "type": self.kind, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class IngestSummary:
    """The outcome of one ingest run.

    ``skipped`` items were never sent (with the first few ``skipped_examples`` and counts per
    kind); ``files_failed`` were in shards that failed (``failures`` says why). Shards:
    ``resumed`` were acknowledged by an earlier run and not sent again; ``duplicated`` were
    answered as already known by the server.
    """

    batch_id: str
    source: str
    mode: IngestMode
    dry_run: bool
    listed: int
    matched: int
    skipped: int
    skipped_by_kind: Mapping[str, int]
    skipped_examples: tuple[SkipRecord, ...]
    shards_total: int
    shards_sent: int
    shards_resumed: int
    shards_duplicated: int
    shards_failed: int
    files_sent: int
    files_failed: int
    bytes_sent: int
    elapsed: float
    ingest_ids: tuple[str, ...]
    failures: tuple[SkipRecord, ...] = field(default=())
    journal: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was skipped and no shard failed."""
        return self.skipped == 0 and self.shards_failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batchId": self.batch_id,
            "source": self.source,
            "mode": self.mode,
            "dryRun": self.dry_run,
            "listed": self.listed,
            "matched": self.matched,
            "skipped": self.skipped,
            "skippedByKind": dict(self.skipped_by_kind),
            "skippedExamples": [r.as_dict() for r in self.skipped_examples],
            "shards": {
                "total": self.shards_total,
                "sent": self.shards_sent,
                "resumed": self.shards_resumed,
                "duplicated": self.shards_duplicated,
                "failed": self.shards_failed,
            },
            "filesSent": self.files_sent,
            "filesFailed": self.files_failed,
            "bytesSent": self.bytes_sent,
            "elapsed": round(self.elapsed, 3),
            "ingestIds": list(self.ingest_ids),
            "failures": [r.as_dict() for r in self.failures],
            "journal": self.journal,
        }
