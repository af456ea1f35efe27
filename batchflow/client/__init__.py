"""The Batch API client: ``BatchClient`` over httpx, with error mapping and safe retries."""

from __future__ import annotations

from batchflow.client._client import BatchClient
from batchflow.client._core import USER_AGENT
from batchflow.client._errors import (
    error_for_status,
    map_httpx_error,
    parse_retry_after,
    request_not_processed,
    status_of,
)
from batchflow.client._transfer import ByteSink

__all__ = [
    "USER_AGENT",
    "BatchClient",
    "ByteSink",
    "error_for_status",
    "map_httpx_error",
    "parse_retry_after",
    "request_not_processed",
    "status_of",
]
