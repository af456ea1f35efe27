"""Every httpx exception and every HTTP status maps to one batchflow error, once."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from batchflow.client import error_for_status, map_httpx_error, status_of
from batchflow.client._errors import request_not_processed
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
from tests.test_httperrors import EXPECTED, all_httpx_exceptions, instance

URL = "http://api.test/data-staging/v1/external/ws/batches/b1?api_key=sekret"


def test_every_httpx_exception_is_mapped_with_method_and_path() -> None:
    for cls in all_httpx_exceptions():
        mapped = map_httpx_error(instance(cls), method="get", url=URL)
        assert type(mapped) is EXPECTED[cls.__name__], cls
        assert "GET /data-staging/v1/external/ws/batches/b1" in str(mapped)
        assert "sekret" not in str(mapped), cls


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
