"""Signed blob downloads (``GET /blobs/...``, Range supported) and signed upload PUTs.

These routes take no API key: the HMAC signature in the URL is the credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from batchflow.errors import NotFoundError, UsageError
from batchflow.server.context import ServerContext
from batchflow.server.core.errors import SignatureError

__all__ = ["router"]

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
    ctx = _ctx(request)
    try:
        path = ctx.blobs.local_path(key)
    except UsageError as exc:
        raise NotFoundError("no such blob") from exc
    if not path.is_file():
        raise NotFoundError("no such blob")
    return FileResponse(path, media_type="application/octet-stream")


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
