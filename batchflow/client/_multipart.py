"""Request bodies that stream: one-part multipart uploads and raw PUT bodies.

httpx's own multipart encoder cannot take an async iterable, and we want files read in chunks
(never whole in memory) with a known ``Content-Length`` whenever the size is known.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from batchflow.errors import LocalFileError

__all__ = ["CHUNK", "StreamBody", "multipart_upload", "raw_body"]

CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class StreamBody:
    """Content for :meth:`ClientCore.send`: ``content`` is bytes or a fresh-body factory."""

    content: bytes | Callable[[], AsyncIterable[bytes]]
    headers: dict[str, str]
    replayable: bool


def _unreadable(path: Path, exc: OSError) -> LocalFileError:
    return LocalFileError(f"{path}: cannot read ({exc.strerror or exc})", path=path)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _unreadable(path, exc) from exc


async def _file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    """The file's bytes; a read error or a size other than ``size`` (the ``Content-Length``
    already promised) is a :class:`LocalFileError`: permanent, never a network error."""
    sent = 0
    try:
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(min(CHUNK, size - sent + 1)):
                sent += len(chunk)
                if sent > size:
                    break
                yield chunk
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if sent != size:
        raise LocalFileError(f"{path}: changed size while it was being sent; run again", path=path)


async def _framed(
    prefix: bytes, body: Callable[[], AsyncIterable[bytes]], suffix: bytes
) -> AsyncIterator[bytes]:
    yield prefix
    async for chunk in body():
        yield chunk
    yield suffix


def _quote(name: str) -> str:
    """A filename for Content-Disposition (httpx's rule: percent-encode quote, CR and LF)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def raw_body(data: bytes | AsyncIterable[bytes] | Path, size: int | None = None) -> StreamBody:
    """A PUT body; ``Content-Length`` is set when the size is known (signed URLs want it)."""
    if isinstance(data, bytes):
        return StreamBody(data, {"Content-Length": str(len(data))}, replayable=True)
    if isinstance(data, Path):
        length = _size_of(data) if size is None else size
        path = data
        return StreamBody(
            lambda: _file_chunks(path, length), {"Content-Length": str(length)}, replayable=True
        )
    once = data
    headers = {"Content-Length": str(size)} if size is not None else {}
    return StreamBody(lambda: once, headers, replayable=False)


def multipart_upload(
    file_name: str,
    data: bytes | AsyncIterable[bytes] | Path,
    *,
    content_type: str | None = None,
    field: str = "file",
) -> StreamBody:
    """A ``multipart/form-data`` body with one file part named ``field``."""
    boundary = secrets.token_hex(16)
    kind = content_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    base = file_name.rsplit("/", 1)[-1]
    prefix = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{_quote(base)}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if isinstance(data, bytes):
        headers["Content-Length"] = str(len(prefix) + len(data) + len(suffix))
        return StreamBody(prefix + data + suffix, headers, replayable=True)
    if isinstance(data, Path):
        path = data
        size = _size_of(path)
        headers["Content-Length"] = str(len(prefix) + size + len(suffix))
        return StreamBody(
            lambda: _framed(prefix, lambda: _file_chunks(path, size), suffix),
            headers,
            replayable=True,
        )
    once = data
    return StreamBody(lambda: _framed(prefix, lambda: once, suffix), headers, replayable=False)
