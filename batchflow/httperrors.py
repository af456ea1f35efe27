"""HTTP at the boundary, shared by the client and the server: httpx errors and ``Retry-After``.

This is the one place httpx exceptions become errors of the batchflow tree (a test fails if an
``except httpx.`` appears anywhere else): :func:`map_httpx_error` picks the class from
:data:`_HTTPX_MAP`, and :func:`translate_httpx` wraps a block so nothing of httpx escapes it.
Messages are ``"<where>: <what happened>: <httpx's text>"`` with query strings (signed URLs,
``api_key``) scrubbed. ``parse_retry_after`` is the one reader of ``Retry-After``; the retry
engine (``batchflow.pipeline.retry``) honours the seconds it returns, capped by the policy.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from batchflow.errors import (
    BatchflowError,
    ConfigError,
    NetworkError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UsageError,
)

__all__ = [
    "HTTPX_ERRORS",
    "connect_failed",
    "content_if_read",
    "map_httpx_error",
    "parse_retry_after",
    "parse_url",
    "scrub",
    "translate_httpx",
]

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
    (httpx.ConnectError, NetworkError, "connection failed"),
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

_KEY_PARAM = re.compile(r"(api_key=)[^&\s'\"]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """Drop query strings (``?api_key=...``, signatures) that httpx puts into some messages."""
    text = _KEY_PARAM.sub(r"\1***", text)
    return " ".join(
        word.split("?", 1)[0] + "?..."
        if "?" in word and ("://" in word or word.startswith("/"))
        else word
        for word in text.split()
    )


def map_httpx_error(exc: Exception, where: str) -> BatchflowError:
    """The batchflow error for an httpx exception; ``where`` says what was being done."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        message = f"{where}: HTTP {status}"
        if status == 429:
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
            return RateLimitedError(message, retry_after=retry_after)
        return TransientError(message) if status >= 500 else PermanentError(message)
    for vendor, ours, label in _HTTPX_MAP:
        if isinstance(exc, vendor):
            return ours(f"{where}: {label}: {scrub(str(exc) or type(exc).__name__)}")
    return PermanentError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")


@contextlib.contextmanager
def translate_httpx(
    where: str, refine: Callable[[BatchflowError], BatchflowError] | None = None
) -> Iterator[None]:
    """Run a block whose httpx exceptions leave it as batchflow errors (``raise ... from``).

    ``refine`` lets a caller narrow the translated error to its own class (the fetcher's
    ``DownloadFailedError``); it sees the error with its ``__cause__`` chain already set.
    """
    try:
        yield
    except HTTPX_ERRORS as exc:
        error = map_httpx_error(exc, where)
        error.__cause__ = exc
        final = refine(error) if refine is not None else error
        raise final from (exc if final is error else error)


def connect_failed(error: BaseException) -> bool:
    """True when ``error`` was translated from a connection that never opened (so another
    address of the same host may be tried, and nothing was sent)."""
    return isinstance(error, NetworkError) and isinstance(error.__cause__, httpx.ConnectError)


def content_if_read(response: httpx.Response) -> bytes | None:
    """The body of ``response``, or None when it is a streamed answer nobody read."""
    try:
        return response.content
    except httpx.ResponseNotRead:
        return None


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """``httpx.URL(url)``; a :class:`UsageError` ``"invalid URL: ..."`` when it is not one."""
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UsageError(f"invalid URL: {scrub(str(exc))}") from exc


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date (relative to ``now``,
    default the current UTC time); never negative; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
