"""Every httpx exception and every HTTP status maps to one batchflow error, once."""

from __future__ import annotations

import email.utils
import inspect
import time

import httpx
import pytest

from batchflow.client import error_for_status, map_httpx_error, status_of
from batchflow.client._errors import HTTPX_ERRORS, request_not_processed
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

URL = "http://api.test/data-staging/v1/external/ws/batches/b1?api_key=sekret"

# Reviewed mapping of every exception class httpx exposes. A new httpx class fails
# test_every_httpx_exception_is_mapped until it is added here (and to _errors.py if needed).
EXPECTED: dict[str, type[BatchflowError]] = {
    "HTTPError": PermanentError,
    "RequestError": PermanentError,
    "TransportError": NetworkError,
    "TimeoutException": NetworkError,
    "ConnectTimeout": NetworkError,
    "ReadTimeout": NetworkError,
    "WriteTimeout": NetworkError,
    "PoolTimeout": NetworkError,
    "NetworkError": NetworkError,
    "ConnectError": NetworkError,
    "ReadError": NetworkError,
    "WriteError": NetworkError,
    "CloseError": NetworkError,
    "ProxyError": NetworkError,
    "UnsupportedProtocol": ConfigError,
    "ProtocolError": PermanentError,
    "LocalProtocolError": PermanentError,
    "RemoteProtocolError": NetworkError,
    "DecodingError": PermanentError,
    "TooManyRedirects": PermanentError,
    "HTTPStatusError": TransientError,  # built below with a 500 response
    "InvalidURL": UsageError,
    "CookieConflict": PermanentError,
    "StreamError": PermanentError,
    "StreamConsumed": PermanentError,
    "StreamClosed": PermanentError,
    "ResponseNotRead": PermanentError,
    "RequestNotRead": PermanentError,
}


def _all_httpx_exceptions() -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    todo: list[type[Exception]] = [
        obj
        for name in dir(httpx)
        if not name.startswith("_")
        and inspect.isclass(obj := getattr(httpx, name))
        and issubclass(obj, Exception)
    ]
    todo.extend(HTTPX_ERRORS)
    while todo:
        cls = todo.pop()
        if cls in found or not cls.__module__.startswith("httpx"):
            continue
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def _instance(cls: type[Exception]) -> Exception:
    request = httpx.Request("GET", URL)
    if cls is httpx.HTTPStatusError:
        response = httpx.Response(500, request=request, json={"error": "boom"})
        return cls("server error", request=request, response=response)
    params = inspect.signature(cls.__init__).parameters
    if "request" in params:
        return cls(f"failed talking to {URL}", request=request)  # type: ignore[call-arg]
    if "message" in params:
        return cls(f"failed talking to {URL}")
    return cls()


def test_every_httpx_exception_is_mapped() -> None:
    classes = _all_httpx_exceptions()
    assert {c.__name__ for c in classes} == set(EXPECTED)
    for cls in classes:
        mapped = map_httpx_error(_instance(cls), method="get", url=URL)
        assert type(mapped) is EXPECTED[cls.__name__], cls
        assert "GET /data-staging/v1/external/ws/batches/b1" in str(mapped)
        assert "sekret" not in str(mapped), cls


def test_httpx_catch_tuple_covers_every_class() -> None:
    for cls in _all_httpx_exceptions():
        assert issubclass(cls, HTTPX_ERRORS), cls


def test_oserror_from_a_body_is_a_network_error() -> None:
    mapped = map_httpx_error(ConnectionResetError("reset by peer"), method="PUT", url=URL)
    assert isinstance(mapped, NetworkError)


def _response(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("POST", URL)
    if body is None:
        return httpx.Response(status, request=request, headers=headers)
    return httpx.Response(status, request=request, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, UsageError),
        (422, UsageError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, TooLargeError),
        (429, RateLimitedError),
        (503, RateLimitedError),
        (500, TransientError),
        (502, TransientError),
        (504, TransientError),
        (418, PermanentError),
        (405, PermanentError),
    ],
)
def test_status_mapping(status: int, kind: type[BatchflowError]) -> None:
    error = error_for_status(
        _response(status, {"error": "batch  is\nbroken"}), method="POST", url=URL
    )
    assert type(error) is kind
    text = str(error)
    assert text.startswith(f"POST /data-staging/v1/external/ws/batches/b1: {status}")
    assert "batch is broken" in text
    assert "sekret" not in text
    assert "api_key" not in text
    assert status_of(error) == status
    assert error.transient == (status >= 500 or status == 429)


def test_non_json_error_body_uses_reason_phrase() -> None:
    request = httpx.Request("GET", URL)
    response = httpx.Response(502, request=request, content=b"<html>bad gateway</html>")
    assert "Bad Gateway" in str(error_for_status(response, method="GET", url=URL))


def test_retry_after_seconds_and_http_date() -> None:
    error = error_for_status(
        _response(429, {"error": "slow"}, {"Retry-After": "7"}), method="GET", url=URL
    )
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = error_for_status(_response(503, None, {"Retry-After": future}), method="GET", url=URL)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after is not None
    assert 25.0 <= error.retry_after <= 31.0


def test_request_not_processed() -> None:
    def mapped(exc: Exception) -> BatchflowError:
        error = map_httpx_error(exc, method="POST", url=URL)
        error.__cause__ = exc
        return error

    request = httpx.Request("POST", URL)
    assert request_not_processed(mapped(httpx.ConnectError("refused", request=request)))
    assert request_not_processed(mapped(httpx.ConnectTimeout("slow", request=request)))
    assert not request_not_processed(mapped(httpx.ReadTimeout("slow", request=request)))
    assert not request_not_processed(mapped(httpx.ReadError("reset", request=request)))
    assert request_not_processed(error_for_status(_response(429), method="POST", url=URL))
    assert not request_not_processed(error_for_status(_response(503), method="POST", url=URL))
    assert not request_not_processed(error_for_status(_response(500), method="POST", url=URL))


def test_keys_are_scrubbed_from_vendor_messages() -> None:
    exc = httpx.InvalidURL("bad url http://h/x?api_key=sekret&y=1 and api_key=sekret")
    text = str(map_httpx_error(exc, method="GET", url=URL))
    assert "sekret" not in text
