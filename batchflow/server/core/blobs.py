"""Blob storage for staged files and the HMAC-signed URLs that reach it.

:class:`BlobStore` is the narrow boundary; :class:`LocalBlobStore` keeps blobs under
``DATA_DIR/blobs``. Writes go to a temp file, are fsync'd and renamed, so a reader never sees
half a blob; reads are streamed by the HTTP layer, never loaded whole.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote

import anyio

from batchflow.errors import TooLargeError, UsageError

__all__ = ["BlobInfo", "BlobStore", "LocalBlobStore", "UrlSigner"]

_CHUNK = 1024 * 1024
_WRITE_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What was written: byte count and SHA-256 hex digest."""

    size: int
    sha256: str


@runtime_checkable
class BlobStore(Protocol):
    """Where staged bytes live. Keys are ``/``-separated, made by the server, never by users."""

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo: ...

    async def put_file(self, key: str, source: Path, *, info: BlobInfo | None = None) -> BlobInfo:
        """Move ``source`` (a temp file on the same disk) into the store.

        ``info`` is the size and digest when the caller computed them while writing ``source``.
        """
        ...

    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (the local job runner reads it directly)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_block(handle: BinaryIO, digest: hashlib._Hash, block: bytes) -> None:
    digest.update(block)
    handle.write(block)


def _sha256_file(path: Path) -> BlobInfo:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return BlobInfo(size=size, sha256=digest.hexdigest())


class LocalBlobStore:
    """Blobs as files under ``root``; temp files under ``root/.tmp`` (same file system)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in {"", ".", ".."} for p in parts) or key.startswith("."):
            raise UsageError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def temp_path(self) -> Path:
        """A fresh temp file name on the store's file system (for fetches and uploads)."""
        return self.tmp / secrets.token_hex(16)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
        # Small network chunks are gathered into ~1 MiB blocks: one worker-thread hop per
        # block (write + hash there), not one per chunk.
        tmp = self.temp_path()
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        try:
            handle = await anyio.to_thread.run_sync(tmp.open, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLargeError(f"body is larger than {max_bytes} bytes")
                    pending += chunk
                    if len(pending) >= _WRITE_BLOCK:
                        block = bytes(pending)
                        pending.clear()
                        await anyio.to_thread.run_sync(_write_block, handle, digest, block)
                if pending:
                    await anyio.to_thread.run_sync(_write_block, handle, digest, bytes(pending))
            finally:
                await anyio.to_thread.run_sync(handle.close)
            await self._install(tmp, key)  # fsyncs the file and its folder
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(size=size, sha256=digest.hexdigest())

    async def put_file(self, key: str, source: Path, *, info: BlobInfo | None = None) -> BlobInfo:
        if info is None:
            info = await anyio.to_thread.run_sync(_sha256_file, source)
        await self._install(source, key)
        return info

    async def _install(self, tmp: Path, key: str) -> None:
        dest = self.local_path(key)

        def install() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)

        await anyio.to_thread.run_sync(install)

    async def exists(self, key: str) -> bool:
        return await anyio.Path(self.local_path(key)).is_file()

    async def delete(self, key: str) -> None:
        await anyio.Path(self.local_path(key)).unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        target = self.local_path(prefix.rstrip("/"))
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(target, ignore_errors=True))


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
