"""Blob storage for staged files, and the HMAC-signed URLs that reach it.

:class:`BlobStore` is the only way the server reaches stored bytes: writers commit atomically
(a reader never sees half a blob), readers stream (never a whole blob in memory), and nothing
outside this module knows where blobs live. :class:`LocalBlobStore` keeps them under
``DATA_DIR/blobs``: a writer fills a temp file on the same disk, fsyncs and renames it.

Work that runs in another process (job tasks) opens the store from its :attr:`locator` with
:func:`open_task_store`, a small synchronous view: read a blob as a local file, put a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

import anyio

from batchflow.errors import NotFoundError, TooLargeError, UsageError

__all__ = [
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "TaskBlobStore",
    "UrlSigner",
    "open_task_store",
    "put_stream",
]

_CHUNK = 1024 * 1024
_WRITE_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What was written: byte count and SHA-256 hex digest."""

    size: int
    sha256: str


class BlobWriter(Protocol):
    """One blob being written: ``async with store.open_write(key) as w: await w.write(b)``.

    A clean exit commits the blob atomically under its key (replacing an older one); an
    exception discards it. :attr:`info` is valid after the commit.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write(self, data: bytes) -> None: ...

    @property
    def info(self) -> BlobInfo: ...


@runtime_checkable
class BlobStore(Protocol):
    """Where staged bytes live. Keys are ``/``-separated, made by the server, never by users."""

    locator: str
    """A URL another process opens the same store with (:func:`open_task_store`)."""

    def open_write(self, key: str, *, max_bytes: int | None = None) -> BlobWriter:
        """A writer for ``key``; over ``max_bytes`` its ``write`` raises TooLargeError."""
        ...

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes ``start`` up to (not including) ``end`` of the blob; NotFoundError if absent."""
        ...

    async def stat(self, key: str) -> int | None:
        """The blob's size, or None when there is no blob under ``key``."""
        ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose key starts with ``prefix + "/"``."""
        ...

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Keys under ``prefix + "/"``, in no particular order."""
        ...


async def put_stream(
    store: BlobStore, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
) -> BlobInfo:
    """Write ``chunks`` under ``key`` through any store; the committed blob's info."""
    writer = store.open_write(key, max_bytes=max_bytes)
    async with writer:
        async for chunk in chunks:
            await writer.write(chunk)
    return writer.info


def _check_key(key: str) -> list[str]:
    parts = key.split("/")
    if not key or any(p in {"", ".", ".."} for p in parts) or key.startswith("."):
        raise UsageError(f"invalid blob key {key!r}")
    return parts


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, dest: Path) -> None:
    """fsync ``tmp``, rename it to ``dest``, fsync the folder: the blob is there or not."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


class _LocalWriter:
    """Small network chunks are gathered into ~1 MiB blocks: one worker-thread hop per block
    (write + hash there), not one per chunk."""

    def __init__(self, dest: Path, tmp: Path, max_bytes: int | None) -> None:
        self._dest = dest
        self._tmp = tmp
        self._max = max_bytes
        self._digest = hashlib.sha256()
        self._size = 0
        self._pending = bytearray()
        self._handle: BinaryIO | None = None
        self._info: BlobInfo | None = None

    async def __aenter__(self) -> Self:
        self._handle = await anyio.to_thread.run_sync(self._tmp.open, "wb")
        return self

    def _write_block(self, block: bytes) -> None:
        assert self._handle is not None
        self._digest.update(block)
        self._handle.write(block)

    async def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._max is not None and self._size > self._max:
            raise TooLargeError(f"body is larger than {self._max} bytes")
        self._pending += data
        if len(self._pending) >= _WRITE_BLOCK:
            block = bytes(self._pending)
            self._pending.clear()
            await anyio.to_thread.run_sync(self._write_block, block)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        try:
            if kind is None and self._pending:
                await anyio.to_thread.run_sync(self._write_block, bytes(self._pending))
            await anyio.to_thread.run_sync(self._handle.close)
            if kind is None:
                await anyio.to_thread.run_sync(_install, self._tmp, self._dest)
                self._info = BlobInfo(size=self._size, sha256=self._digest.hexdigest())
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.Path(self._tmp).unlink(missing_ok=True)

    @property
    def info(self) -> BlobInfo:
        if self._info is None:
            raise RuntimeError("the blob is not committed")
        return self._info


class LocalBlobStore:
    """Blobs as files under ``root``; temp files under ``root/.tmp`` (same file system)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.locator = root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key))

    def open_write(self, key: str, *, max_bytes: int | None = None) -> BlobWriter:
        return _LocalWriter(self._path(key), self.tmp / secrets.token_hex(16), max_bytes)

    async def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            handle = await anyio.open_file(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"no blob {key!r}") from exc
        async with handle:
            if start:
                await handle.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                block = await handle.read(_CHUNK if left is None else min(_CHUNK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    async def stat(self, key: str) -> int | None:
        try:
            info = await anyio.Path(self._path(key)).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None if stat.S_ISDIR(info.st_mode) else info.st_size

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix.rstrip("/"))
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(target, ignore_errors=True))

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        top = self._path(prefix.rstrip("/"))
        base = prefix.rstrip("/")
        walker = os.walk(top)  # one folder per thread hop: never the whole tree in memory
        while (step := await anyio.to_thread.run_sync(next, walker, None)) is not None:
            folder, _dirs, names = step
            rel = Path(folder).relative_to(top).as_posix()
            for name in names:
                yield f"{base}/{name}" if rel == "." else f"{base}/{rel}/{name}"

    async def clear_temp(self) -> None:
        """Remove temp files a killed process left behind (call before serving)."""

        def clear() -> None:
            for child in self.tmp.iterdir():
                with contextlib.suppress(OSError):
                    child.unlink()

        await anyio.to_thread.run_sync(clear)


class TaskBlobStore(Protocol):
    """The synchronous view of a store that job tasks use in their worker process."""

    def local_file(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """The blob as a file on this machine for the duration of the block."""
        ...

    def put_file(self, key: str, source: Path) -> BlobInfo:
        """Store the file ``source`` under ``key`` (it may be moved away)."""
        ...


class _LocalTaskStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        yield self.root.joinpath(*_check_key(key))

    def put_file(self, key: str, source: Path) -> BlobInfo:
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
                size += len(block)
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / secrets.token_hex(16)
        shutil.move(source, tmp)  # a rename on the same disk
        _install(tmp, self.root.joinpath(*_check_key(key)))
        return BlobInfo(size=size, sha256=digest.hexdigest())


def open_task_store(locator: str) -> TaskBlobStore:
    """The store behind ``locator`` (a :attr:`BlobStore.locator`), for a worker process."""
    parts = urlsplit(locator)
    if parts.scheme == "file":
        return _LocalTaskStore(Path(unquote(parts.path)))
    raise UsageError(f"unsupported blob store {locator!r}")


class UrlSigner:
    """HMAC-SHA256 signatures over (method, path, expiry) for blob and upload URLs."""

    def __init__(self, secret: bytes, public_url: str, *, default_ttl: float = 24 * 3600) -> None:
        self._secret = secret
        self.public_url = public_url.rstrip("/")
        self.default_ttl = default_ttl

    def _sig(self, method: str, path: str, expires: int) -> str:
        message = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, path: str, *, ttl: float | None = None) -> str:
        """An absolute URL for ``path`` (already URL-quoted) valid for ``ttl`` seconds."""
        expires = int(time.time() + (self.default_ttl if ttl is None else ttl))
        sig = self._sig(method, path, expires)
        return f"{self.public_url}{path}?expires={expires}&sig={sig}"

    def blob_url(self, key: str, *, ttl: float | None = None) -> str:
        return self.sign("GET", "/blobs/" + quote(key), ttl=ttl)

    def upload_url(self, upload_id: str, *, ttl: float | None = None) -> str:
        return self.sign("PUT", "/uploads/" + quote(upload_id), ttl=ttl)

    def verify(self, method: str, path: str, expires: str | None, sig: str | None) -> bool:
        """True when ``sig`` is ours for (method, path, expires) and has not expired."""
        if not expires or not sig or not expires.isdigit():
            return False
        if int(expires) < time.time():
            return False
        expected = self._sig(method, path, int(expires))
        return hmac.compare_digest(expected, sig)
