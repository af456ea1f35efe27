"""Local folder listing: a depth-first ``os.scandir`` walk kept as a stack of iterators.

Only one directory's entries are held at a time (sorted, so the order is deterministic and
equals the byte order of the relative names, like a bucket listing). The blocking walk runs in
a worker thread one page at a time, so cancellation takes effect between pages. Symlinked
folders are not followed unless asked (then loops are cut by (device, inode)); unreadable
folders and broken symlinks are reported through ``on_skip``, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from anyio.abc import ObjectSendStream

from batchflow.errors import NotFoundError, UsageError
from batchflow.sources._base import Counters, PageBuffer, check_page_size
from batchflow.sources._types import (
    DEFAULT_PAGE_SIZE,
    ObjectRef,
    OnSkip,
    Scope,
    SkippedItem,
    SourceStatistics,
    matches_extension,
)
from batchflow.sources.glob import GlobMatcher

__all__ = ["LocalSource"]


@dataclass(slots=True)
class _Frame:
    """One open directory on the walk stack: its sorted entries and its name prefix."""

    entries: Iterator[tuple[str, os.DirEntry[str]]]
    prefix: str
    depth: int


@dataclass(slots=True)
class _Walker:
    """Resumable walk: ``next_page()`` returns up to ``limit`` refs, [] when done."""

    root: str
    matcher: GlobMatcher | None
    extensions: frozenset[str] | None
    follow_symlinks: bool
    counters: Counters
    on_skip: OnSkip | None
    stack: list[_Frame] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    started: bool = False

    def _open(self, path: str, prefix: str, depth: int) -> None:
        try:
            with os.scandir(path) as it:
                entries = [(self._sort_key(e), e) for e in it]
        except OSError as exc:
            self.counters.skip(
                self.on_skip,
                SkippedItem(item=path, reason=exc.strerror or str(exc), kind="unreadable_dir"),
            )
            return
        entries.sort(key=lambda pair: pair[0])
        self.stack.append(_Frame(entries=iter(entries), prefix=prefix, depth=depth))

    def _is_dir(self, entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir(follow_symlinks=self.follow_symlinks)
        except OSError:
            return False

    def _sort_key(self, entry: os.DirEntry[str]) -> str:
        # A folder sorts as "name/" so the walk yields names in plain string order.
        return entry.name + "/" if self._is_dir(entry) else entry.name

    def _descend(self, entry: os.DirEntry[str], name: str, depth: int) -> None:
        max_depth = self.matcher.max_depth if self.matcher is not None else None
        if max_depth is not None and depth + 1 > max_depth:
            return
        if self.follow_symlinks:
            try:
                st = entry.stat()
            except OSError as exc:
                reason = exc.strerror or str(exc)
                self.counters.skip(
                    self.on_skip, SkippedItem(item=entry.path, reason=reason, kind="unreadable_dir")
                )
                return
            ident = (st.st_dev, st.st_ino)
            if ident in self.seen:
                return
            self.seen.add(ident)
        self._open(entry.path, name + "/", depth + 1)

    def _is_dir_link(self, entry: os.DirEntry[str]) -> bool:
        """A symlink to a folder that we do not follow: expected, skipped without a report."""
        if self.follow_symlinks:
            return False
        try:
            return entry.is_symlink() and entry.is_dir(follow_symlinks=True)
        except OSError:
            return False

    def _file_ref(self, entry: os.DirEntry[str], name: str) -> ObjectRef | None:
        self.counters.listed += 1
        try:
            size = entry.stat().st_size if entry.is_file() else None
        except OSError:
            size = None
        if size is None:
            broken = entry.is_symlink()
            self.counters.skip(
                self.on_skip,
                SkippedItem(
                    item=entry.path,
                    reason="broken symlink" if broken else "not a regular file",
                    kind="broken_symlink" if broken else "not_a_file",
                ),
            )
            return None
        if self.matcher is not None and not self.matcher.matches(name):
            return None
        if not matches_extension(name, self.extensions):
            return None
        return ObjectRef(key=entry.path, name=name, size=size)

    def next_page(self, limit: int) -> list[ObjectRef]:
        """Walk on until ``limit`` refs are found or the walk ends ([] only at the end)."""
        if not self.started:
            self.started = True
            if self.follow_symlinks:
                st = os.stat(self.root)
                self.seen.add((st.st_dev, st.st_ino))
            self._open(self.root, "", 0)
        page: list[ObjectRef] = []
        while self.stack and len(page) < limit:
            frame = self.stack[-1]
            item = next(frame.entries, None)
            if item is None:
                self.stack.pop()
                continue
            _, entry = item
            name = frame.prefix + entry.name
            if self._is_dir(entry):
                self._descend(entry, name, frame.depth)
            elif not self._is_dir_link(entry):
                ref = self._file_ref(entry, name)
                if ref is not None:
                    page.append(ref)
        return page


class LocalSource:
    """Files under ``root`` (a folder), optionally filtered by a glob relative to it."""

    scheme = "file"
    bucket = ""

    def __init__(
        self,
        root: str,
        *,
        matcher: GlobMatcher | None = None,
        extensions: frozenset[str] | None = None,
        follow_symlinks: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
        on_skip: OnSkip | None = None,
        description: str | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.matcher = matcher
        self.extensions = extensions
        self.follow_symlinks = follow_symlinks
        self.page_size = check_page_size(page_size)
        self.on_skip = on_skip
        self.description = description or self.root
        self._counters = Counters()

    def statistics(self) -> SourceStatistics:
        return self._counters.snapshot()

    @property
    def scope(self) -> Scope:
        where = self.root if self.root.endswith(os.sep) else self.root + os.sep
        pattern = self.matcher.pattern if self.matcher is not None else None
        return Scope(where=where, noun="files", pattern=pattern, extensions=self.extensions)

    def check(self) -> None:
        """Raise NotFoundError/UsageError early if the root is missing or not a folder."""
        if not os.path.exists(self.root):
            raise NotFoundError(f"folder '{self.root}' not found")
        if not os.path.isdir(self.root):
            raise UsageError(f"'{self.root}' is not a folder")

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        async with send:
            self.check()
            walker = _Walker(
                root=self.root,
                matcher=self.matcher,
                extensions=self.extensions,
                follow_symlinks=self.follow_symlinks,
                counters=self._counters,
                on_skip=self.on_skip,
            )
            buffer = PageBuffer(send, self.page_size, self._counters)
            while True:
                refs = await anyio.to_thread.run_sync(walker.next_page, self.page_size)
                if not refs:
                    break
                for ref in refs:
                    await buffer.add(ref)
            await buffer.flush()
