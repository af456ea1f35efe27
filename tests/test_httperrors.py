"""The one httpx translation and ``Retry-After`` reader that client and server share."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import batchflow
import batchflow.client
import batchflow.server.core.netguard
import batchflow.server.core.webhooks
import batchflow.server.workflows.remote
from batchflow.errors import (
    BatchflowError,
    ConfigError,
    NetworkError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UsageError,
)
from batchflow.httperrors import (
    HTTPX_ERRORS,
    connect_failed,
    map_httpx_error,
    parse_retry_after,
    translate_httpx,
)

PACKAGE = Path(batchflow.__file__).parent
TRANSLATION = PACKAGE / "httperrors.py"
URL = "http://api.test/data-staging/v1/external/ws/batches/b1?api_key=sekret"

# Reviewed mapping of every exception class httpx exposes. A new httpx class fails
# test_every_httpx_exception_is_mapped until it is added here (and to httperrors.py if needed).
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


def all_httpx_exceptions() -> set[type[Exception]]:
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


def instance(cls: type[Exception], status: int = 500) -> Exception:
    request = httpx.Request("GET", URL)
    if cls is httpx.HTTPStatusError:
        response = httpx.Response(status, request=request, json={"error": "boom"})
        return cls("server error", request=request, response=response)
    params = inspect.signature(cls.__init__).parameters
    if "request" in params:
        return cls(f"failed talking to {URL}", request=request)  # type: ignore[call-arg]
    if "message" in params:
        return cls(f"failed talking to {URL}")
    return cls()


def test_every_httpx_exception_is_mapped() -> None:
    classes = all_httpx_exceptions()
    assert {c.__name__ for c in classes} == set(EXPECTED)
    for cls in classes:
        mapped = map_httpx_error(instance(cls), "GET /batches/b1")
        assert type(mapped) is EXPECTED[cls.__name__], cls
        assert mapped.message.startswith("GET /batches/b1: "), cls
        assert "sekret" not in str(mapped), cls


def test_the_catch_tuple_covers_every_class() -> None:
    for cls in all_httpx_exceptions():
        assert issubclass(cls, HTTPX_ERRORS), cls


@pytest.mark.parametrize(
    ("status", "kind"), [(429, RateLimitedError), (502, TransientError), (404, PermanentError)]
)
def test_status_errors_by_status(status: int, kind: type[BatchflowError]) -> None:
    assert type(map_httpx_error(instance(httpx.HTTPStatusError, status), "GET /x")) is kind


@pytest.mark.parametrize("cls", sorted(all_httpx_exceptions(), key=lambda c: c.__name__))
def test_nothing_of_httpx_leaves_a_translated_block(cls: type[Exception]) -> None:
    vendor = instance(cls)
    with pytest.raises(BatchflowError) as caught, translate_httpx("GET /x"):
        raise vendor
    assert caught.value.__cause__ is vendor
    assert connect_failed(caught.value) == isinstance(vendor, httpx.ConnectError)


def test_refine_narrows_and_chains() -> None:
    vendor = httpx.ReadError("reset")
    narrow = translate_httpx("GET /x", refine=lambda e: PermanentError(e.message))
    with pytest.raises(PermanentError) as caught, narrow:
        raise vendor
    assert isinstance(caught.value.__cause__, NetworkError)
    assert caught.value.__cause__.__cause__ is vendor


def _httpx_handlers(path: Path) -> list[str]:
    """``except`` clauses of ``path`` that name an httpx class (alone or in a tuple)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = {
                sub.value.id
                for sub in ast.walk(node.type)
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
            }
            if "httpx" in names:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_httpx_exceptions_are_caught_only_in_the_translation_module() -> None:
    offenders = [
        site
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != TRANSLATION
        for site in _httpx_handlers(path)
    ]
    assert offenders == [], "translate through batchflow.httperrors instead"
    assert _httpx_handlers(TRANSLATION)  # the check itself sees an httpx handler


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0.5 ", 0.5),
        ("-4", 0.0),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 12:00:10 GMT", 10.0),
        ("Thu, 01 Jan 2026 12:00:10 -0000", 10.0),  # a date without a zone is UTC
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_the_date_form_is_relative_to_the_current_time_by_default() -> None:
    in_a_minute = datetime.now(UTC).replace(microsecond=0).timestamp() + 60
    header = datetime.fromtimestamp(in_a_minute, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 0.0 < seconds <= 60.0


def test_no_other_copy_is_left() -> None:
    assert batchflow.client.parse_retry_after is parse_retry_after
    for module in (
        batchflow.server.core.netguard,
        batchflow.server.core.webhooks,
        batchflow.server.workflows.remote,
    ):
        assert getattr(module, "parse_retry_after", parse_retry_after) is parse_retry_after
