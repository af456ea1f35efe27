"""Shared plumbing for sources: counters and the page buffer a producer sends through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anyio.abc import ObjectSendStream

from batchflow.errors import UsageError
from batchflow.sources._types import (
    DEFAULT_PAGE_SIZE,
    ObjectRef,
    OnSkip,
    SkippedItem,
    SourceStatistics,
    default_on_skip,
)

__all__ = ["Counters", "PageBuffer", "check_page_size"]


def check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= DEFAULT_PAGE_SIZE:
        raise UsageError(f"page size must be between 1 and {DEFAULT_PAGE_SIZE}, got {page_size}")
    return page_size


@dataclass(slots=True)
class Counters:
    """Mutable counters owned by one source; ``snapshot()`` is what callers see."""

    listed: int = 0
    matched: int = 0
    pages: int = 0
    skipped: int = 0

    def snapshot(self) -> SourceStatistics:
        return SourceStatistics(
            listed=self.listed, matched=self.matched, pages=self.pages, skipped=self.skipped
        )

    def skip(self, on_skip: OnSkip | None, item: SkippedItem) -> None:
        self.skipped += 1
        (on_skip or default_on_skip)(item)


class PageBuffer:
    """Collects refs and sends them as tuples of at most ``page_size``; never sends empty pages."""

    __slots__ = ("_counters", "_page", "_page_size", "_send")

    def __init__(
        self,
        send: ObjectSendStream[Sequence[ObjectRef]],
        page_size: int,
        counters: Counters,
    ) -> None:
        self._send = send
        self._page_size = page_size
        self._counters = counters
        self._page: list[ObjectRef] = []

    async def add(self, ref: ObjectRef) -> None:
        self._page.append(ref)
        self._counters.matched += 1
        if len(self._page) >= self._page_size:
            await self.flush()

    async def flush(self) -> None:
        if self._page:
            page, self._page = tuple(self._page), []
            self._counters.pages += 1
            await self._send.send(page)
