"""Blob store access from a worker thread (tar extraction runs ``tarfile`` in one).

The store is async; these helpers hop back to the event loop with :mod:`anyio.from_thread`
once per block (about 1 MiB), never per small read.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import IO

import anyio.from_thread

from batchflow.server.core.blobs import BlobInfo, BlobStore

__all__ = ["BlobReadStream", "write_blob_from_thread"]

_BLOCK = 1 << 20


class BlobReadStream(io.RawIOBase):
    """A read-only, forward-only raw file over one blob, for use in a worker thread."""

    def __init__(self, store: BlobStore, key: str) -> None:
        self._chunks: AsyncIterator[bytes] = store.open_read(key)
        self._buffer = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buffer) and not self._done:
            self._buffer = anyio.from_thread.run(self._next)
            self._pos = 0
            self._done = not self._buffer
        count = min(len(target), len(self._buffer) - self._pos)
        target[:count] = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return count

    def close(self) -> None:
        if not self.closed and not self._done:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                anyio.from_thread.run(aclose)
            self._done = True
        super().close()


def write_blob_from_thread(store: BlobStore, key: str, source: IO[bytes]) -> BlobInfo:
    """Copy ``source`` into the blob ``key`` (committed whole, or not at all)."""
    writer = store.open_write(key)
    anyio.from_thread.run(writer.__aenter__)
    try:
        while block := source.read(_BLOCK):
            anyio.from_thread.run(writer.write, block)
    except BaseException as exc:
        anyio.from_thread.run(writer.__aexit__, type(exc), exc, exc.__traceback__)
        raise
    anyio.from_thread.run(writer.__aexit__, None, None, None)
    return writer.info
