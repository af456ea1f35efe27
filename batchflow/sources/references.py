"""References: a JSONL of ``{"name": ..., "url": ...}`` lines, from a local file or http(s) URL.

Streamed line by line (a local file in a worker thread a page at a time; a URL with an httpx
stream), so a file of millions of lines needs O(page) memory. Blank lines are ignored; a line
that is not a JSON object with non-empty string ``name`` and http(s) ``url`` (and, if present,
a non-negative integer ``size``) is reported through ``on_skip`` as ``"line N"`` and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import anyio
import anyio.to_thread
import httpx
from anyio.abc import ObjectSendStream

from batchflow.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from batchflow.httperrors import translate_httpx
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

__all__ = ["ReferencesSource", "parse_reference_line"]


def parse_reference_line(line: str) -> ObjectRef | str | None:
    """A ref, or the reason the line is malformed (str), or None for a blank line."""
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return "not a JSON object"
    name, url, size = obj.get("name"), obj.get("url"), obj.get("size")
    if not isinstance(name, str) or not name:
        return "missing or empty 'name'"
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "missing 'url' or not an http(s) URL"
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        return "'size' must be a non-negative integer"
    return ObjectRef(key=name, name=name, size=size, url=url)


@dataclass(slots=True)
class _LineReader:
    """Reads a local file in pages of parsed lines from a worker thread."""

    lines: Iterator[str]
    lineno: int = 0
    done: bool = False

    def next_chunk(self, limit: int) -> list[tuple[int, ObjectRef | str]]:
        out: list[tuple[int, ObjectRef | str]] = []
        for line in self.lines:
            self.lineno += 1
            parsed = parse_reference_line(line)
            if parsed is not None:
                out.append((self.lineno, parsed))
                if len(out) >= limit:
                    return out
        self.done = True
        return out


class ReferencesSource:
    """Already-signed URLs listed in a JSONL file (``location`` is a path or http(s) URL)."""

    scheme = "references"
    bucket = ""

    def __init__(
        self,
        location: str,
        *,
        extensions: frozenset[str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        on_skip: OnSkip | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.location = location
        self.description = location
        self.extensions = extensions
        self.page_size = check_page_size(page_size)
        self.on_skip = on_skip
        self._http_client = http_client
        self._timeout = timeout
        self._counters = Counters()

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    def statistics(self) -> SourceStatistics:
        return self._counters.snapshot()

    @property
    def scope(self) -> Scope:
        return Scope(
            where=self.location, noun="references", within="in", extensions=self.extensions
        )

    async def _take(self, buffer: PageBuffer, lineno: int, parsed: ObjectRef | str) -> None:
        self._counters.listed += 1
        if isinstance(parsed, str):
            self._counters.skip(
                self.on_skip,
                SkippedItem(item=f"line {lineno}", reason=parsed, kind="malformed_line"),
            )
        elif matches_extension(parsed.name, self.extensions):
            await buffer.add(parsed)

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        async with send:
            buffer = PageBuffer(send, self.page_size, self._counters)
            if self.is_url:
                await self._list_url(buffer)
            else:
                await self._list_file(buffer)
            await buffer.flush()

    async def _list_file(self, buffer: PageBuffer) -> None:
        try:
            handle: IO[str] = await anyio.to_thread.run_sync(self._open_file)
        except FileNotFoundError as exc:
            raise NotFoundError(f"references file '{self.location}' not found") from exc
        except OSError as exc:
            raise PermanentError(f"cannot read '{self.location}': {exc.strerror}") from exc
        try:
            reader = _LineReader(lines=iter(handle))
            while not reader.done:
                chunk = await anyio.to_thread.run_sync(reader.next_chunk, self.page_size)
                for lineno, parsed in chunk:
                    await self._take(buffer, lineno, parsed)
        except UnicodeDecodeError as exc:
            raise PermanentError(f"'{self.location}' is not UTF-8 text: {exc}") from exc
        finally:
            handle.close()

    def _open_file(self) -> IO[str]:
        return open(self.location, encoding="utf-8", newline=None)

    async def _list_url(self, buffer: PageBuffer) -> None:
        client = self._http_client or httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=True
        )
        try:
            with translate_httpx(f"reading {self.location}"):
                async with client.stream("GET", self.location) as response:
                    _raise_for_status(response, self.location)
                    lineno = 0
                    async for line in response.aiter_lines():
                        lineno += 1
                        parsed = parse_reference_line(line)
                        if parsed is not None:
                            await self._take(buffer, lineno, parsed)
        finally:
            if self._http_client is None:
                await client.aclose()


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 300:
        return
    where = f"references URL {url} answered {status}"
    if status == 404:
        raise NotFoundError(where)
    if status in (401, 403):
        raise AuthError(where)
    if status == 429:
        raise RateLimitedError(where)
    if status >= 500:
        raise TransientError(where)
    raise PermanentError(where)
