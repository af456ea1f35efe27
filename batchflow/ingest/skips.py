"""The record of items an ingest leaves out: counts per kind, the first few examples, events.

Nothing is dropped silently: every skip is counted, reported as an event, and (with
``fail_fast``) stops the run with :class:`~batchflow.errors.PartialFailure`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from batchflow.errors import PartialFailure
from batchflow.ingest.options import SkipRecord
from batchflow.sources import SkippedItem

__all__ = ["EventSink", "SkipLog"]

EventSink = Callable[[str, Mapping[str, Any]], None]
"""Receives ``(kind, fields)`` events: ``skipped``, ``shard``, ``warning``..."""

_SOURCE_KINDS = {
    "malformed_line": "malformed-line",
    "unreadable_dir": "unreadable",
    "broken_symlink": "unreadable",
    "not_a_file": "not-a-file",
}


def _ignore(kind: str, fields: Mapping[str, Any]) -> None:
    return None


class SkipLog:
    """Collects skipped items; pass :meth:`source_skip` as a source's ``on_skip``."""

    def __init__(
        self, *, fail_fast: bool = False, on_event: EventSink | None = None, examples: int = 20
    ) -> None:
        self.fail_fast = fail_fast
        self.on_event = on_event or _ignore
        self.max_examples = examples
        self.count = 0
        self.by_kind: Counter[str] = Counter()
        self.examples: list[SkipRecord] = []

    def add(self, record: SkipRecord) -> None:
        """Count ``record``, report it, and stop the run if asked to fail fast."""
        self.count += 1
        self.by_kind[record.kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(record)
        self.on_event("skipped", record.as_dict())
        if self.fail_fast:
            raise PartialFailure(f"{record.item}: {record.reason} ({record.kind}; --fail-fast)")

    def source_skip(self, item: SkippedItem) -> None:
        """The ``on_skip`` callback for :func:`batchflow.sources.open_source`."""
        self.add(SkipRecord(item.item, _SOURCE_KINDS.get(item.kind, item.kind), item.reason))

    def snapshot(self) -> tuple[dict[str, int], tuple[SkipRecord, ...]]:
        return dict(self.by_kind), tuple(self.examples)
