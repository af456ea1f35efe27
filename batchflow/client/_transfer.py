"""Raw byte transfers: PUT to signed URLs and resumable downloads.

Signed URLs usually point at a storage service, so the API key is attached only when the URL is
under our own API base (batchflow serve), never to third parties, and then only as a header: an
extra query parameter would break the URL's signature.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Mapping
from pathlib import Path
from typing import Protocol

import httpx

from batchflow.client._core import ClientCore, never
from batchflow.client._errors import HTTPX_ERRORS, error_for_status, map_httpx_error
from batchflow.client._multipart import raw_body
from batchflow.errors import PermanentError
from batchflow.pipeline.retry import is_transient, retry_call

__all__ = ["ByteSink", "TransferCalls"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ByteSink(Protocol):
    """Where downloaded bytes go (``anyio.AsyncFile`` fits)."""

    async def write(self, data: bytes, /) -> object: ...


class TransferCalls(ClientCore):
    """``put_signed`` and ``download``."""

    async def put_signed(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | AsyncIterable[bytes] | Path,
        *,
        size: int | None = None,
    ) -> None:
        """Streamed ``PUT`` of ``body`` to a signed URL with the given extension headers.

        Idempotent (the object is simply overwritten), so ``bytes``/``Path`` bodies are retried
        on transient errors; an async iterable can be sent only once.
        """
        content = raw_body(body, size)
        await self.send(
            "PUT",
            url,
            content=content.content,
            headers={**content.headers, **(headers or {})},
            classify=is_transient if content.replayable else never,
            signed=True,
        )

    async def download(self, url: str, dest: ByteSink, *, start: int = 0) -> int:
        """``GET url`` into ``dest`` from byte ``start`` on; returns the bytes written.

        Resumes with ``Range`` after a transient failure (and when the caller passes the size
        of a partial file as ``start``). A server that ignores ``Range`` (200) is handled by
        skipping the bytes we already have; 416 at a non-zero offset means nothing is left.
        """
        if start < 0:
            raise ValueError("start must be >= 0")
        written = 0
        auth_headers, auth_params = self._auth(url, signed=True)

        async def attempt() -> None:
            nonlocal written
            offset = start + written
            headers = {**auth_headers, "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                async with self.http.stream(
                    "GET", url, headers=headers, params=auth_params or None
                ) as response:
                    if response.status_code == 416 and offset:
                        return
                    if not response.is_success:
                        await response.aread()
                        raise error_for_status(response, method="GET", url=url)
                    skip = _bytes_to_skip(response, offset, url)
                    async for chunk in response.aiter_bytes():
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk = chunk[dropped:]  # noqa: PLW2901
                            skip -= dropped
                            if not chunk:
                                continue
                        await dest.write(chunk)
                        written += len(chunk)
            except HTTPX_ERRORS as exc:
                raise map_httpx_error(exc, method="GET", url=url) from exc

        await retry_call(
            attempt,
            policy=self.settings.retry,
            clock=self.clock,
            on_retry=self._on_retry("GET", url),
            rng=self.rng,
        )
        return written


def _bytes_to_skip(response: httpx.Response, offset: int, url: str) -> int:
    if not offset:
        return 0
    if response.status_code != 206:
        return offset  # Range ignored: the full body comes again
    found = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if found is None or int(found.group(1)) != offset:
        raise PermanentError(
            f"unexpected answer from GET {httpx.URL(url).path}: asked for bytes from {offset}, "
            f"got Content-Range {response.headers.get('content-range')!r}"
        )
    return 0
