"""ASGI middleware: refuse JSON bodies over a limit before anything reads them into memory.

Streamed uploads (``PUT /uploads/...``, multipart images) are exempt: they go to disk with their
own byte caps.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchflow.errors import TooLargeError
from batchflow.server.core.errors import status_for

__all__ = ["MAX_JSON_BODY", "JsonBodyLimit"]

MAX_JSON_BODY = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


class JsonBodyLimit:
    """413 ``{"error"}`` when a JSON request declares or streams more than ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._applies(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    @staticmethod
    def _applies(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return scope.get("method") == "POST" and path.endswith("-references")

    async def _refuse(self, send: Send) -> None:
        error = TooLargeError(f"request body over {self.limit} bytes")
        body = json.dumps({"error": error.message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status_for(error),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
