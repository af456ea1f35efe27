"""HTTP statuses of the Batch API -> the batchflow error tree; httpx exceptions through the one
translation (``batchflow.httperrors``), with messages naming the method and path.

Messages name the method and the URL path (never the query string, where the hosted API wants
the key) and the server's ``{"error": ...}`` text. Status errors are chained from an
``httpx.HTTPStatusError`` so callers can still see the exact status (see :func:`status_of`).
"""

from __future__ import annotations

import json

import httpx

from batchflow.errors import (
    AuthError,
    BatchflowError,
    ConflictError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TooLargeError,
    TransientError,
    UsageError,
)
from batchflow.httperrors import HTTPX_ERRORS, content_if_read, parse_retry_after, scrub
from batchflow.httperrors import map_httpx_error as httpx_error

__all__ = [
    "HTTPX_ERRORS",
    "error_for_status",
    "map_httpx_error",
    "parse_retry_after",
    "request_not_processed",
    "status_of",
    "where",
]

_MAX_ERROR_TEXT = 500

_STATUS_MAP: dict[int, type[BatchflowError]] = {
    400: UsageError,
    422: UsageError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    429: RateLimitedError,
    503: RateLimitedError,
}


def where(method: str, url: httpx.URL | str) -> str:
    """``"GET /path"``: what a message may show of a request (no host, no query)."""
    path = url.path if isinstance(url, httpx.URL) else httpx.URL(url).path
    return f"{method.upper()} {path or '/'}"


def map_httpx_error(exc: Exception, *, method: str, url: httpx.URL | str) -> BatchflowError:
    """The batchflow error for an httpx exception (or an ``OSError`` from a streamed body)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return error_for_status(exc.response, method=method, url=url)
    if isinstance(exc, HTTPX_ERRORS):
        return httpx_error(exc, where(method, url))
    if isinstance(exc, OSError):
        return NetworkError(f"{where(method, url)}: I/O error: {exc}")
    return PermanentError(f"{where(method, url)}: {type(exc).__name__}: {exc}")


def _server_message(response: httpx.Response) -> str:
    content = content_if_read(response)
    try:
        body = json.loads(content) if content is not None else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text: str = body["error"]
    else:
        text = response.reason_phrase or ""
    return scrub(text)[:_MAX_ERROR_TEXT]


def error_for_status(
    response: httpx.Response, *, method: str, url: httpx.URL | str
) -> BatchflowError:
    """The batchflow error for a non-2xx answer, chained from an ``httpx.HTTPStatusError``."""
    status = response.status_code
    message = f"{where(method, url)}: {status}"
    text = _server_message(response)
    if text:
        message += f" {text}"
    kind = _STATUS_MAP.get(status)
    error: BatchflowError
    if kind is RateLimitedError:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = RateLimitedError(message, retry_after=retry_after)
    elif kind is not None:
        error = kind(message)
    elif status >= 500:
        error = TransientError(message, retry_after=None)
    else:
        error = PermanentError(message)
    request = response.request if _has_request(response) else httpx.Request(method, url)
    error.__cause__ = httpx.HTTPStatusError(message, request=request, response=response)
    return error


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018  # raises RuntimeError when unset
    except RuntimeError:
        return False
    return True


def status_of(error: BaseException) -> int | None:
    """The HTTP status behind a batchflow error, if it came from an answer."""
    cause = error.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code
    return None


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def request_not_processed(error: BaseException) -> bool:
    """True when the server surely did not act on the request: safe to retry any method.

    That is a connection that never opened, or a 429 (refused before processing).
    """
    if not isinstance(error, TransientError):
        return False
    return isinstance(error.__cause__, _NOT_SENT) or status_of(error) == 429
