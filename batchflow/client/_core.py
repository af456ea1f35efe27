"""The client's core: one shared httpx.AsyncClient, auth, URLs, retries, decoding, pagination.

Endpoint methods live in ``_staging.py`` and ``_jobs.py``; they all go through
:meth:`ClientCore.call`, so timeouts, auth, error mapping and retries are decided once.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
import pydantic
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchflow import __version__
from batchflow.client._errors import (
    HTTPX_ERRORS,
    error_for_status,
    map_httpx_error,
    where,
)
from batchflow.config import ClientSettings, Limits
from batchflow.errors import PermanentError
from batchflow.pipeline import SYSTEM_CLOCK, Clock, RetryEvent, collapse_errors, retry_call
from batchflow.pipeline.retry import is_transient
from batchflow.protocol import WorkspaceResponse
from batchflow.protocol._base import Wire

__all__ = ["USER_AGENT", "Body", "Classifier", "ClientCore", "Empty", "decode", "never", "seg"]

USER_AGENT = f"batchflow/{__version__} httpx/{httpx.__version__}"
DS_PREFIX = "data-staging/v1/external"
BP_PREFIX = "batch-processing/v1/external"

M = TypeVar("M", bound=pydantic.BaseModel)
P = TypeVar("P")
T = TypeVar("T")

Classifier = Callable[[BaseException], bool]
Body = bytes | Callable[[], Any] | None
"""Request content: bytes, or a factory returning fresh content (bytes or an async iterable)."""

log = structlog.get_logger(__name__)


def never(_: BaseException) -> bool:
    """Classifier for calls that must not be retried."""
    return False


class Empty(Wire):
    """The ``{}`` answer of create/abort/restart/upload."""


def seg(value: str) -> str:
    """One URL path segment, percent-encoded."""
    return quote(value, safe="")


class ClientCore:
    """Settings, the shared ``httpx.AsyncClient`` and the request/decode/retry machinery."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        concurrency: int = Limits().concurrency,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        workspace: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = settings.api_url.rstrip("/")
        self.concurrency = max(concurrency, 1)
        self.clock = clock
        self.rng = rng
        self._transport = transport
        self._workspace = workspace
        self._workspace_lock = anyio.Lock()
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> ClientCore:
        t = self.settings.timeouts
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(
                max_connections=self.concurrency + 4,
                max_keepalive_connections=self.concurrency + 4,
            ),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use the client as `async with BatchClient(...) as client:`")
        return self._http

    # -- addressing ------------------------------------------------------------------------
    def _auth(self, url: str, *, signed: bool = False) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, params) carrying the key, only for URLs of our own API.

        A ``signed`` URL (upload/download URLs the API handed out) never gets an extra query
        parameter, which would break its signature; it gets the header when we use one.
        """
        key = self.settings.api_key
        if not key or not (url.startswith(self.base_url + "/") or url == self.base_url):
            return {}, {}
        if self.settings.key_in_header:
            return {"Authorization": f"Bearer {key}"}, {}
        if signed:
            return {}, {}
        return {}, {"api_key": key}

    async def workspace(self) -> str:
        """The workspace slug from ``GET /`` (asked once, then cached)."""
        if self._workspace is None:
            async with self._workspace_lock:
                if self._workspace is None:
                    answer = await self.call("GET", self.base_url + "/", WorkspaceResponse)
                    self._workspace = answer.workspace
        return self._workspace

    async def ds(self, *segments: str) -> str:
        """A data-staging URL: ``{BASE}/data-staging/v1/external/{ws}/<segments>``."""
        ws = await self.workspace()
        return "/".join([self.base_url, DS_PREFIX, seg(ws), *map(seg, segments)])

    async def bp(self, *segments: str) -> str:
        """A batch-processing URL: ``{BASE}/batch-processing/v1/external/{ws}/<segments>``."""
        ws = await self.workspace()
        return "/".join([self.base_url, BP_PREFIX, seg(ws), *map(seg, segments)])

    # -- requests --------------------------------------------------------------------------
    def _on_retry(self, method: str, url: str) -> Callable[[RetryEvent], None]:
        def report(event: RetryEvent) -> None:
            log.warning(
                "retrying",
                call=where(method, url),
                attempt=event.attempt,
                delay=round(event.delay, 3),
                error=str(event.error),
            )

        return report

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        json: Any = None,
        content: Body = None,
        headers: Mapping[str, str] | None = None,
        classify: Classifier = is_transient,
        signed: bool = False,
    ) -> httpx.Response:
        """Send one request (retried per ``classify``); return the read, 2xx response."""
        auth_headers, auth_params = self._auth(url, signed=signed)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        query.update(auth_params)
        all_headers = {**(headers or {}), **auth_headers}

        async def attempt() -> httpx.Response:
            body = content() if callable(content) else content
            try:
                response = await self.http.request(
                    method,
                    url,
                    params=query or None,
                    json=json,
                    content=body,
                    headers=all_headers,
                )
            except HTTPX_ERRORS as exc:
                raise map_httpx_error(exc, method=method, url=url) from exc
            except OSError as exc:  # reading a file body
                raise map_httpx_error(exc, method=method, url=url) from exc
            if response.is_success:
                return response
            raise error_for_status(response, method=method, url=url)

        return await retry_call(
            attempt,
            policy=self.settings.retry,
            clock=self.clock,
            classify=classify,
            on_retry=self._on_retry(method, url),
            rng=self.rng,
        )

    async def call(
        self,
        method: str,
        url: str,
        model: type[M],
        *,
        params: Mapping[str, str | int | None] | None = None,
        json: Any = None,
        content: Body = None,
        headers: Mapping[str, str] | None = None,
        classify: Classifier = is_transient,
    ) -> M:
        """:meth:`send`, then decode the JSON answer into ``model``."""
        response = await self.send(
            method,
            url,
            params=params,
            json=json,
            content=content,
            headers=headers,
            classify=classify,
        )
        return decode(response, model, method=method, url=url)

    # -- pagination ------------------------------------------------------------------------
    @asynccontextmanager
    async def paginate(
        self,
        fetch: Callable[[str | None], Awaitable[P]],
        items: Callable[[P], Sequence[T]],
        token: Callable[[P], str | None],
        *,
        buffer: int = 64,
        limit: int | None = None,
    ) -> AsyncIterator[MemoryObjectReceiveStream[T]]:
        """Yield a receive stream of items fed by a producer task that walks the pages.

        Leaving the block early stops the producer; a page that fails raises here.
        """
        send, receive = anyio.create_memory_object_stream[T](buffer)
        async with collapse_errors(), anyio.create_task_group() as tg:
            tg.start_soon(_produce_pages, fetch, items, token, send, limit)
            with receive:
                yield receive
            tg.cancel_scope.cancel()


async def _produce_pages(
    fetch: Callable[[str | None], Awaitable[P]],
    items: Callable[[P], Sequence[T]],
    token: Callable[[P], str | None],
    send: MemoryObjectSendStream[T],
    limit: int | None,
) -> None:
    sent = 0
    seen: set[str] = set()
    with send:
        page_token: str | None = None
        while True:
            page = await fetch(page_token)
            for item in items(page):
                if limit is not None and sent >= limit:
                    return
                try:
                    await send.send(item)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the consumer left early
                sent += 1
            page_token = token(page)
            if not page_token:
                return
            if page_token in seen:
                raise PermanentError(f"pagination loop: the server repeated token {page_token!r}")
            seen.add(page_token)


def decode(response: httpx.Response, model: type[M], *, method: str, url: str) -> M:
    """Parse and validate a JSON answer; anything else is a :class:`PermanentError`."""
    place = where(method, url)
    content = response.content
    if not content.strip() and model is Empty:
        return model.model_validate({})
    try:
        data = response.json()
    except ValueError as exc:
        snippet = content[:80].decode("utf-8", "replace")
        raise PermanentError(
            f"unexpected answer from {place}: not JSON "
            f"({response.headers.get('content-type', 'no content type')}): {snippet!r}"
        ) from exc
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise PermanentError(f"unexpected answer from {place}: {problems}") from exc
