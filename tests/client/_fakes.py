"""A scripted Batch API behind httpx.MockTransport, for narrow protocol edge cases."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx

from batchflow.client import BatchClient
from batchflow.config import ClientSettings, RetryPolicy
from batchflow.testing import FakeClock

BASE = "http://api.test"
DS = "/data-staging/v1/external/ws"
BP = "/batch-processing/v1/external/ws"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response] | Exception


class Api:
    """Routes ``(method, path)`` to scripted replies, used in order (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []
        self.on("GET", "/", httpx.Response(200, json={"workspace": "ws"}))

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        replies = self.routes.get((request.method, request.url.path))
        if replies is None:
            return httpx.Response(404, json={"error": f"no route {request.url.path}"})
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply


def make(
    api: Api,
    *,
    key: str | None = "sekret",
    key_in_header: bool = False,
    retry: RetryPolicy | None = None,
    clock: FakeClock | None = None,
    **kwargs: Any,
) -> BatchClient:
    settings = ClientSettings(
        api_url=BASE,
        api_key=key,
        key_in_header=key_in_header,
        retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
    )
    return BatchClient(
        settings,
        transport=httpx.MockTransport(api),
        clock=clock or FakeClock(),
        rng=random.Random(0),
        **kwargs,
    )
