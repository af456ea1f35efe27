"""Signed blob downloads (``GET /blobs/...``, Range supported) and signed upload PUTs.

These routes take no API key: the HMAC signature in the URL is the credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchflow.errors import NotFoundError, UsageError
from batchflow.server.context import ServerContext
from batchflow.server.core.errors import SignatureError

__all__ = ["parse_range", "router"]

_OCTETS = "application/octet-stream"

router = APIRouter(tags=["blobs"])

Expires = Annotated[str | None, Query()]
Sig = Annotated[str | None, Query()]


def _ctx(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def _verify(request: Request, method: str, expires: str | None, sig: str | None) -> None:
    path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    if not _ctx(request).signer.verify(method, path, expires, sig):
        raise SignatureError("invalid or expired signature")


@router.get("/blobs/{key:path}", include_in_schema=False)
async def get_blob(request: Request, key: str, expires: Expires = None, sig: Sig = None) -> Any:
    _verify(request, "GET", expires, sig)
    blobs = _ctx(request).blobs
    try:
        size = await blobs.stat(key)
    except UsageError as exc:
        raise NotFoundError("no such blob") from exc
    if size is None:
        raise NotFoundError("no such blob")
    headers = {"accept-ranges": "bytes"}
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except _Unsatisfiable:
        headers["content-range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers)
    if wanted is None:
        headers["content-length"] = str(size)
        return StreamingResponse(blobs.open_read(key), media_type=_OCTETS, headers=headers)
    start, end = wanted
    headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    headers["content-length"] = str(end - start)
    body = blobs.open_read(key, start=start, end=end)
    return StreamingResponse(body, status_code=206, media_type=_OCTETS, headers=headers)


class _Unsatisfiable(Exception):
    """The range lies past the end of the blob (416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range, or None to send the
    whole blob (no header, several ranges, or garbage, which RFC 9110 lets a server ignore).
    Raises ``_Unsatisfiable`` for a range past the end."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last N bytes
        length = int(last)
        if not length or not size:
            raise _Unsatisfiable
        return max(0, size - length), size
    start = int(first)
    if last and not last.isdigit():
        return None
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        raise _Unsatisfiable
    return start, end


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.put("/uploads/{upload_id}", include_in_schema=False)
async def put_upload(
    request: Request, upload_id: str, expires: Expires = None, sig: Sig = None
) -> Any:
    _verify(request, "PUT", expires, sig)
    await _ctx(request).uploads.receive(upload_id, _body(request))
    return {}
