"""httpx exceptions and HTTP statuses -> the batchflow error tree, in one place.

Messages name the method and the URL path (never the query string, where the hosted API wants
the key) and the server's ``{"error": ...}`` text. Status errors are chained from an
``httpx.HTTPStatusError`` so callers can still see the exact status (see :func:`status_of`).
"""

from __future__ import annotations

import json
import re

import httpx

from batchflow.errors import (
    AuthError,
    BatchflowError,
    ConfigError,
    ConflictError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TooLargeError,
    TransientError,
    UsageError,
)
from batchflow.httperrors import parse_retry_after

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

HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)
"""Every exception family httpx raises on purpose (not all derive from ``HTTPError``)."""

# Most specific first: the first isinstance match decides.
_HTTPX_MAP: tuple[tuple[type[Exception], type[BatchflowError], str], ...] = (
    (httpx.TimeoutException, NetworkError, "timed out"),
    (httpx.NetworkError, NetworkError, "network error"),
    # "Server disconnected without sending a response": a keep-alive race, worth a retry.
    (httpx.RemoteProtocolError, NetworkError, "connection dropped"),
    (httpx.ProxyError, NetworkError, "proxy error"),
    (httpx.UnsupportedProtocol, ConfigError, "unsupported URL scheme"),
    (httpx.LocalProtocolError, PermanentError, "invalid request"),
    (httpx.ProtocolError, PermanentError, "protocol error"),
    (httpx.TransportError, NetworkError, "transport error"),
    (httpx.DecodingError, PermanentError, "could not decode the answer"),
    (httpx.TooManyRedirects, PermanentError, "too many redirects"),
    (httpx.RequestError, PermanentError, "request failed"),
    (httpx.InvalidURL, UsageError, "invalid URL"),
    (httpx.CookieConflict, PermanentError, "cookie conflict"),
    (httpx.StreamError, PermanentError, "stream misuse"),
    (httpx.HTTPError, PermanentError, "HTTP error"),
)

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
    for vendor, ours, label in _HTTPX_MAP:
        if isinstance(exc, vendor):
            detail = str(exc) or type(exc).__name__
            return ours(f"{where(method, url)}: {label}: {_scrub(detail)}")
    if isinstance(exc, OSError):
        return NetworkError(f"{where(method, url)}: I/O error: {exc}")
    return PermanentError(f"{where(method, url)}: {type(exc).__name__}: {exc}")


_KEY_PARAM = re.compile(r"(api_key=)[^&\s'\"]+", re.IGNORECASE)


def _scrub(text: str) -> str:
    """Drop query strings (``?api_key=...``) that httpx puts into some messages."""
    text = _KEY_PARAM.sub(r"\1***", text)
    return " ".join(
        word.split("?", 1)[0] + "?..."
        if "?" in word and ("://" in word or word.startswith("/"))
        else word
        for word in text.split()
    )


def _server_message(response: httpx.Response) -> str:
    try:
        body = json.loads(response.content)
    except (ValueError, httpx.ResponseNotRead):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text: str = body["error"]
    else:
        text = response.reason_phrase or ""
    return _scrub(text)[:_MAX_ERROR_TEXT]


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
