"""A tar archive built while it is sent: exact size known up front, never held in memory.

Headers are made with :mod:`tarfile` (PAX format, so long and unicode names survive); file bodies
are read in chunks in a worker thread while the previous chunk is on the wire. The size is exact,
so the PUT carries a ``Content-Length`` (signed cloud upload URLs refuse chunked bodies).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio

from batchflow.errors import LocalFileError

__all__ = ["TarEntry", "TarPlan", "FileChangedError", "plan_tar"]

_BLOCK = 512
_BLOCK_TARGET = 1 << 20
_END = b"\0" * (2 * _BLOCK)


class FileChangedError(LocalFileError):
    """A file changed size (or vanished) between listing and sending; ``path`` names it."""


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One member: where its bytes come from (a path, or inline bytes) and its name in the tar."""

    name: str
    size: int
    path: Path | None = None
    data: bytes | None = None


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # deterministic bytes for the same content
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> int:
    return -size % _BLOCK


@dataclass(frozen=True, slots=True)
class TarPlan:
    """A tar whose bytes are produced on demand by :meth:`stream` (callable again for a retry)."""

    entries: tuple[TarEntry, ...]
    headers: tuple[bytes, ...]
    size: int

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the archive bytes; raises :class:`FileChangedError` if a file no longer fits.

        Blocks of about 1 MiB are assembled in a worker thread (headers, many small files,
        padding together), so a tar of 256 thumbnails is a handful of thread hops and writes,
        not thousands.
        """
        reader = _BlockReader(self)
        try:
            while block := await anyio.to_thread.run_sync(reader.next_block):
                yield block
        finally:
            reader.close()


def _changed(entry: TarEntry) -> FileChangedError:
    return FileChangedError(
        f"{entry.path}: changed size while it was being sent; run again", path=entry.path
    )


class _BlockReader:
    """Produces the tar's bytes block by block; runs in a worker thread, one call at a time."""

    def __init__(self, plan: TarPlan) -> None:
        self.plan = plan
        self.index = 0
        self.handle: BinaryIO | None = None
        self.left = 0  # bytes still to read from ``handle``
        self.ended = False

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def next_block(self) -> bytes:
        out = bytearray()
        while len(out) < _BLOCK_TARGET:
            if self.handle is not None:
                self._read_file(out)
                continue
            if self.index >= len(self.plan.entries):
                if not self.ended:
                    out += _END
                    self.ended = True
                break
            entry = self.plan.entries[self.index]
            out += self.plan.headers[self.index]
            if entry.data is not None:
                out += entry.data
                out += b"\0" * _padding(entry.size)
                self.index += 1
            else:
                self._open(entry)
        return bytes(out)

    def _open(self, entry: TarEntry) -> None:
        assert entry.path is not None
        try:
            self.handle = entry.path.open("rb")
        except OSError as exc:
            raise _unreadable(entry, exc) from exc
        self.left = entry.size

    def _read_file(self, out: bytearray) -> None:
        entry = self.plan.entries[self.index]
        assert self.handle is not None
        try:
            if self.left:
                chunk = self.handle.read(min(self.left, _BLOCK_TARGET - len(out)))
                if not chunk:
                    raise _changed(entry)
                self.left -= len(chunk)
                out += chunk
            if self.left == 0:
                if self.handle.read(1):
                    raise _changed(entry)
                self.close()
                out += b"\0" * _padding(entry.size)
                self.index += 1
        except OSError as exc:
            raise _unreadable(entry, exc) from exc


def _unreadable(entry: TarEntry, exc: OSError) -> FileChangedError:
    return FileChangedError(f"{entry.path}: cannot read ({exc.strerror or exc})", path=entry.path)


def plan_tar(entries: Sequence[TarEntry], *, config: dict[str, str] | None = None) -> TarPlan:
    """Plan a tar of ``entries``; ``notification_config.json`` goes first when ``config`` is set."""
    members = list(entries)
    if config is not None:
        body = json.dumps(config, separators=(",", ":")).encode()
        members.insert(0, TarEntry(name="notification_config.json", size=len(body), data=body))
    headers = tuple(_header(entry.name, entry.size) for entry in members)
    size = sum(len(h) + e.size + _padding(e.size) for h, e in zip(headers, members, strict=True))
    return TarPlan(entries=tuple(members), headers=headers, size=size + len(_END))


def read_plan_bytes(plan: TarPlan) -> bytes:
    """The whole archive in memory (tests and tiny archives only)."""
    out = io.BytesIO()

    async def collect() -> None:
        async for chunk in plan.stream():
            out.write(chunk)

    anyio.run(collect)
    return out.getvalue()
