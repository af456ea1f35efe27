"""Azure Blob listing with ``azure.storage.blob.aio`` (``list_blobs(...).by_page()``).

``az://container/path``; the account comes from the environment, in this order:
``AZURE_STORAGE_CONNECTION_STRING``; or ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY`` or
``AZURE_STORAGE_SAS_TOKEN`` (endpoint ``AZURE_STORAGE_BLOB_ENDPOINT`` /
``AZURE_STORAGE_ACCOUNT_URL``, default ``https://ACCOUNT.blob.core.windows.net``). azure.core
errors are translated once here into ``batchflow.errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from anyio.abc import ObjectSendStream
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import ContainerClient

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

__all__ = ["AzureSource", "container_client_from_env", "translate_azure_error"]


def container_client_from_env(
    container: str, env: Mapping[str, str] | None = None
) -> ContainerClient:
    """A ContainerClient for ``container`` using the AZURE_STORAGE_* variables."""
    env = os.environ if env is None else env
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        try:
            return ContainerClient.from_connection_string(conn, container)
        except ValueError as exc:
            raise ConfigError(f"invalid AZURE_STORAGE_CONNECTION_STRING: {exc}") from exc
    account = env.get("AZURE_STORAGE_ACCOUNT")
    url = env.get("AZURE_STORAGE_BLOB_ENDPOINT") or env.get("AZURE_STORAGE_ACCOUNT_URL")
    if not account and not url:
        raise ConfigError(
            "no Azure storage account: set AZURE_STORAGE_CONNECTION_STRING or "
            "AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"
        )
    url = url or f"https://{account}.blob.core.windows.net"
    key, sas = env.get("AZURE_STORAGE_KEY"), env.get("AZURE_STORAGE_SAS_TOKEN")
    credential: Any
    if key:
        if not account:
            raise ConfigError("AZURE_STORAGE_KEY needs AZURE_STORAGE_ACCOUNT")
        credential = AzureNamedKeyCredential(account, key)
    elif sas:
        credential = AzureSasCredential(sas.lstrip("?"))
    else:
        raise ConfigError(
            "no Azure credentials: set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN "
            "(or AZURE_STORAGE_CONNECTION_STRING)"
        )
    try:
        return ContainerClient(url, container, credential=credential)
    except ValueError as exc:
        raise ConfigError(f"invalid Azure storage endpoint '{url}': {exc}") from exc


def translate_azure_error(exc: AzureError, container: str) -> BatchflowError:
    """The batchflow error for an azure.core failure while listing ``container``."""
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"container '{container}' not found")
    if isinstance(exc, ClientAuthenticationError):
        return AuthError(f"access to container '{container}' refused: {exc.message}")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return NetworkError(f"cannot reach Azure for container '{container}': {exc.message}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status in (401, 403):
            return AuthError(f"access to container '{container}' refused ({status})")
        if status == 404:
            return NotFoundError(f"container '{container}' not found")
        if status in (429, 503):
            return RateLimitedError(f"Azure throttled listing '{container}'")
        if status >= 500:
            return TransientError(f"Azure error listing '{container}' ({status})")
        return PermanentError(f"Azure error listing '{container}' ({status}): {exc.message}")
    return PermanentError(f"Azure error listing '{container}': {exc}")


class AzureSource:
    """Blobs in ``az://container/path`` where ``path`` may end in a glob."""

    scheme = "az"

    def __init__(
        self,
        container: str,
        selection: Selection,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        env: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        self.bucket = container
        self.selection = selection
        self.page_size = check_page_size(page_size)
        self.description = description or f"az://{container}/{selection.list_prefix}"
        self._env = env
        self._counters = Counters()

    def statistics(self) -> SourceStatistics:
        return self._counters.snapshot()

    @property
    def scope(self) -> Scope:
        return self.selection.scope(f"az://{self.bucket}/")

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        async with send:
            buffer = PageBuffer(send, self.page_size, self._counters)
            client = container_client_from_env(self.bucket, self._env)
            try:
                async with client:
                    blobs = client.list_blobs(
                        name_starts_with=self.selection.list_prefix or None,
                        results_per_page=self.page_size,
                    )
                    async for page in blobs.by_page():
                        async for blob in page:
                            await self._take(blob, buffer)
            except AzureError as exc:
                raise translate_azure_error(exc, self.bucket) from exc
            await buffer.flush()

    async def _take(self, blob: Any, buffer: PageBuffer) -> None:
        self._counters.listed += 1
        key: str = blob.name
        name = self.selection.name_of(key)
        if name is None:
            return
        etag = blob.etag
        await buffer.add(
            ObjectRef(
                key=key,
                name=name,
                size=blob.size,
                etag=etag.strip('"') if isinstance(etag, str) else None,
            )
        )
