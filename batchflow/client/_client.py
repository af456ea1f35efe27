"""``BatchClient``: every call of the Batch API over one shared ``httpx.AsyncClient``."""

from __future__ import annotations

from types import TracebackType

from batchflow.client._jobs import JobCalls
from batchflow.client._staging import StagingCalls

__all__ = ["BatchClient"]


class BatchClient(StagingCalls, JobCalls):
    """The Batch API client (PROTOCOL.md), data staging and batch processing.

    ``async with BatchClient(ClientSettings.from_env()) as client:`` opens one connection
    pool sized for ``concurrency``; every call has the settings' timeouts, maps errors into
    :mod:`batchflow.errors` and retries per the settings' ``RetryPolicy`` where it is safe
    (documented per call). Only a base URL and a key are needed; ``transport`` is for tests.
    """

    async def __aenter__(self) -> BatchClient:
        await super().__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
