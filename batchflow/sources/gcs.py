"""Google Cloud Storage listing with gcloud-aio-storage (``objects.list`` + pageToken loop).

``STORAGE_EMULATOR_HOST`` (e.g. fake-gcs-server) switches to the emulator without a token.
Otherwise credentials come from gcloud-aio-auth's Token: a service-account key in
``GOOGLE_APPLICATION_CREDENTIALS``, gcloud user credentials, or the metadata server. aiohttp and
token errors are translated once here into ``batchflow.errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from anyio.abc import ObjectSendStream
from gcloud.aio.auth import Token
from gcloud.aio.auth.token import Type as TokenType
from gcloud.aio.storage import Storage

from batchflow.errors import (
    AuthError,
    BatchflowError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from batchflow.sources._base import Counters, PageBuffer, check_page_size
from batchflow.sources._types import DEFAULT_PAGE_SIZE, ObjectRef, Scope, SourceStatistics
from batchflow.sources.glob import Selection

__all__ = ["GcsSource", "translate_gcs_error"]

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_FIELDS = "nextPageToken,items(name,size,etag)"


def translate_gcs_error(exc: BaseException, bucket: str) -> BatchflowError:
    """The batchflow error for an aiohttp failure while listing ``bucket``."""
    if isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        if status == 404:
            return NotFoundError(f"bucket '{bucket}' not found")
        if status in (401, 403):
            return AuthError(f"access to bucket '{bucket}' refused ({status}): {exc.message}")
        if status == 429:
            return RateLimitedError(f"GCS throttled listing '{bucket}'")
        if status >= 500:
            return TransientError(f"GCS error listing '{bucket}' ({status})")
        return PermanentError(f"GCS error listing '{bucket}' ({status}): {exc.message}")
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return NetworkError(f"cannot reach GCS for bucket '{bucket}': {exc!r}")
    return PermanentError(f"GCS error listing '{bucket}': {exc!r}")


class GcsSource:
    """Objects in ``gs://bucket/path`` where ``path`` may end in a glob."""

    scheme = "gs"

    def __init__(
        self,
        bucket: str,
        selection: Selection,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        api_root: str | None = None,
        env: Mapping[str, str] | None = None,
        request_timeout: int = 60,
        description: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.selection = selection
        self.page_size = check_page_size(page_size)
        self.description = description or f"gs://{bucket}/{selection.list_prefix}"
        env = os.environ if env is None else env
        emulator = env.get("STORAGE_EMULATOR_HOST")
        if api_root is None and emulator:
            api_root = emulator if emulator.startswith("http") else f"http://{emulator}"
        self.api_root = api_root
        self._timeout = request_timeout
        self._counters = Counters()

    def statistics(self) -> SourceStatistics:
        return self._counters.snapshot()

    @property
    def scope(self) -> Scope:
        return self.selection.scope(f"gs://{self.bucket}/")

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        async with send:
            buffer = PageBuffer(send, self.page_size, self._counters)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                token = None if self.api_root else await self._token(session)
                # gcloud-aio types its session as its own alias of aiohttp.ClientSession.
                storage = Storage(
                    session=session,  # type: ignore[arg-type]
                    api_root=self.api_root,
                    token=token,
                )
                page_token: str | None = None
                while True:
                    data = await self._list(storage, page_token)
                    await self._take_page(data, buffer)
                    page_token = data.get("nextPageToken") or None
                    if page_token is None:
                        break
            await buffer.flush()

    async def _token(self, session: aiohttp.ClientSession) -> Token:
        try:
            token = Token(scopes=[READ_ONLY_SCOPE], session=session)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError) as exc:
            where = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or "gcloud credentials"
            raise ConfigError(f"cannot load Google Cloud credentials from {where}: {exc}") from exc
        try:
            await token.get()
        except Exception as exc:  # gcloud-aio-auth raises bare Exception/ValueError
            if getattr(token, "token_type", None) == TokenType.GCE_METADATA:
                raise ConfigError(
                    "no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS "
                    "or run `gcloud auth application-default login`"
                ) from exc
            raise AuthError(f"could not get a Google Cloud token: {exc}") from exc
        return token

    async def _list(self, storage: Storage, page_token: str | None) -> dict[str, Any]:
        params = {
            "prefix": self.selection.list_prefix,
            "maxResults": str(self.page_size),
            "fields": _FIELDS,
        }
        if page_token:
            params["pageToken"] = page_token
        try:
            data = await storage.list_objects(self.bucket, params=params, timeout=self._timeout)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate_gcs_error(exc, self.bucket) from exc
        if not isinstance(data, dict):
            raise PermanentError(f"GCS returned a malformed listing for '{self.bucket}'")
        return data

    async def _take_page(self, data: Mapping[str, Any], buffer: PageBuffer) -> None:
        for item in data.get("items", ()):
            self._counters.listed += 1
            key = item.get("name", "")
            name = self.selection.name_of(key)
            if name is None:
                continue
            size = item.get("size")
            await buffer.add(
                ObjectRef(
                    key=key,
                    name=name,
                    size=int(size) if size is not None else None,
                    etag=item.get("etag"),
                )
            )
