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

import anyio

from batchflow.errors import PermanentError

__all__ = ["TarEntry", "TarPlan", "FileChangedError", "plan_tar"]

_BLOCK = 512
_CHUNK = 1 << 20
_END = b"\0" * (2 * _BLOCK)


class FileChangedError(PermanentError):
    """A file changed size (or vanished) between listing and sending."""


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
        """Yield the archive bytes; raises :class:`FileChangedError` if a file no longer fits."""
        for entry, header in zip(self.entries, self.headers, strict=True):
            yield header
            if entry.data is not None:
                yield entry.data
            else:
                assert entry.path is not None
                async for chunk in _read_exact(entry.path, entry.size):
                    yield chunk
            pad = _padding(entry.size)
            if pad:
                yield b"\0" * pad
        yield _END


async def _read_exact(path: Path, size: int) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async with await anyio.open_file(path, "rb") as handle:
            while sent < size:
                chunk = await handle.read(min(_CHUNK, size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
            extra = await handle.read(1)
    except OSError as exc:
        raise FileChangedError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if sent != size or extra:
        raise FileChangedError(f"{path}: changed size while it was being sent; run again")


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
