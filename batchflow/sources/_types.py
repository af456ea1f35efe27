"""Records and the Source protocol shared by every listing backend.

A source is a producer: ``list_pages(send)`` runs as a task, sends tuples of matching
``ObjectRef`` into a bounded stream in a deterministic order and closes it when done, so memory
stays O(page) whatever the size of the listing. Things a source passes over without failing the
run (an unreadable folder, a malformed JSONL line) are reported once each through the
``on_skip`` callback every source accepts, as a ``SkippedItem``; if no callback is given they are
logged. Fatal problems (unknown bucket, refused credentials) raise ``batchflow.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import structlog
from anyio.abc import ObjectSendStream

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ObjectRef",
    "OnSkip",
    "Scope",
    "SkipKind",
    "SkippedItem",
    "Source",
    "SourceStatistics",
    "matches_extension",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One listed object.

    ``key`` is the full key in the store (for local files: the absolute path); ``name`` is the
    key relative to the listed folder with '/' separators: the unique name it is staged under.
    ``url`` is only set by the references source (an already signed/public URL).
    """

    key: str
    name: str
    size: int | None
    etag: str | None = None
    url: str | None = None


SkipKind = Literal["unreadable_dir", "broken_symlink", "malformed_line", "not_a_file"]


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """Something a source passed over: ``item`` is a path or ``"line N"``."""

    item: str
    reason: str
    kind: SkipKind


OnSkip = Callable[[SkippedItem], None]


@dataclass(frozen=True, slots=True)
class SourceStatistics:
    """A snapshot of a listing: objects seen from the store, matches sent, pages, skips."""

    listed: int = 0
    matched: int = 0
    pages: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Scope:
    """What a listing covers, for messages: ``noun`` are listed ``within`` ``where``, then
    filtered by ``pattern`` (a glob relative to ``where``) and ``extensions``."""

    where: str
    noun: str = "objects"
    within: str = "under"
    pattern: str | None = None
    extensions: frozenset[str] | None = None

    def nothing_matched(self, stats: SourceStatistics) -> str:
        """One line saying that nothing matched and what was listed (``stats`` of the run)."""
        if stats.listed == 0:
            text = f"0 {self.noun} {self.within} {self.where}"
        else:
            text = f"0 of {stats.listed:,} {self.noun} {self.within} {self.where} {self._test()}"
        if stats.skipped:
            text += f" ({stats.skipped:,} skipped)"
        return text

    def _test(self) -> str:
        ends = None
        if self.extensions is not None:
            exts = sorted(self.extensions) or ["an allowed extension (none is allowed)"]
            ends = "end in " + (f"{', '.join(exts[:-1])} or {exts[-1]}" if exts[1:] else exts[0])
        if self.pattern is not None:
            return f"match '{self.pattern}'" + (f" and {ends}" if ends else "")
        if ends is not None:
            return ends
        return "are valid" if self.noun == "references" else "are files"


@runtime_checkable
class Source(Protocol):
    """A streaming listing of one location (folder, bucket prefix, glob, references file)."""

    @property
    def scheme(self) -> str:
        """``file``, ``s3``, ``gs``, ``az`` or ``references``."""
        ...

    @property
    def bucket(self) -> str:
        """Bucket or container; ``""`` for local folders and references."""
        ...

    @property
    def description(self) -> str:
        """What is listed, as the user would write it (e.g. ``s3://b/photos/**.jpg``)."""
        ...

    @property
    def scope(self) -> Scope:
        """Where it lists and how it filters, for the message of a listing that matched nothing."""
        ...

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        """Send non-empty pages (tuples) of matching refs in order, then close ``send``."""
        ...

    def statistics(self) -> SourceStatistics:
        """Counters so far (safe to call while listing)."""
        ...


def matches_extension(name: str, extensions: frozenset[str] | None) -> bool:
    """Case-insensitive suffix test; ``None`` accepts everything."""
    if extensions is None:
        return True
    dot = name.rfind(".")
    if dot < 0 or "/" in name[dot:]:
        return False
    return name[dot:].lower() in extensions


def normalize_extensions(extensions: frozenset[str] | set[str] | None) -> frozenset[str] | None:
    """Lowercase and dot-prefix user-given extensions (``"JPG"`` -> ``".jpg"``)."""
    if extensions is None:
        return None
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def default_on_skip(item: SkippedItem) -> None:
    """Log a skipped item when the caller gave no callback."""
    structlog.get_logger("batchflow.sources").warning(
        "source.skipped", item=item.item, reason=item.reason, kind=item.kind
    )
