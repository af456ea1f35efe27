"""References JSONL from a local file and over real HTTP (a tiny http.server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from batchflow.errors import AuthError, BatchflowError, NotFoundError, UsageError
from batchflow.sources import IMAGE_EXTENSIONS, ReferencesSource, SkippedItem, open_source
from batchflow.sources.references import parse_reference_line
from tests.sources._helpers import collect, list_names
from tests.test_httperrors import EXPECTED, all_httpx_exceptions, instance

pytestmark = pytest.mark.anyio

GOOD = [
    {"name": f"img/{i:03d}.jpg", "url": f"https://cdn.example/{i}.jpg?sig=x"} for i in range(25)
]
LINES = [
    json.dumps(GOOD[0]),
    "",  # line 2: blank, ignored
    "{not json",  # line 3
    json.dumps({"name": "no-url.jpg"}),  # line 4
    *[json.dumps(g) for g in GOOD[1:10]],  # lines 5-13
    "   ",  # line 14: blank
    json.dumps(["a", "list"]),  # line 15
    json.dumps({"name": "", "url": "https://x/y"}),  # line 16
    json.dumps({"name": "ftp.jpg", "url": "ftp://x/y"}),  # line 17
    json.dumps({"name": "s.jpg", "url": "https://x/s", "size": -1}),  # line 18
    *[json.dumps(g) for g in GOOD[10:]],  # lines 19-33
    json.dumps({"name": "video.mp4", "url": "https://x/v.mp4", "size": 12}),  # line 34
]
BODY = "\n".join(LINES) + "\n"
BAD_LINES = ["line 3", "line 4", "line 15", "line 16", "line 17", "line 18"]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "refs.jsonl"
    path.write_text(BODY, encoding="utf-8")
    return path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/refs.jsonl"):
            data = BODY.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.startswith("/secret.jsonl"):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _check(refs_names: list[str], skipped: list[SkippedItem]) -> None:
    assert refs_names == [g["name"] for g in GOOD] + ["video.mp4"]
    assert [s.item for s in skipped] == BAD_LINES
    assert {s.kind for s in skipped} == {"malformed_line"}
    reasons = {s.item: s.reason for s in skipped}
    assert reasons["line 3"].startswith("invalid JSON")
    assert "url" in reasons["line 4"]
    assert "size" in reasons["line 18"]


async def test_local_jsonl(jsonl: Path) -> None:
    skipped: list[SkippedItem] = []
    source = open_source(str(jsonl), on_skip=skipped.append, page_size=4)
    assert isinstance(source, ReferencesSource)
    assert source.scheme == "references"
    pages = await collect(source)
    refs = [r for p in pages for r in p]
    _check([r.name for r in refs], skipped)
    assert all(len(p) <= 4 for p in pages)
    assert refs[0].url == GOOD[0]["url"]
    assert refs[0].key == refs[0].name
    assert refs[-1].size == 12
    assert source.statistics().skipped == len(BAD_LINES)


async def test_http_jsonl(http_base: str) -> None:
    skipped: list[SkippedItem] = []
    source = open_source(f"{http_base}/refs.jsonl?token=abc", on_skip=skipped.append)
    refs = [r for p in await collect(source) for r in p]
    _check([r.name for r in refs], skipped)


async def test_http_errors(http_base: str) -> None:
    with pytest.raises(NotFoundError):
        await collect(open_source(f"{http_base}/missing.jsonl"))
    with pytest.raises(AuthError):
        await collect(open_source(f"{http_base}/secret.jsonl"))


async def test_extension_filter_applies_to_names(jsonl: Path) -> None:
    skipped: list[SkippedItem] = []
    source = open_source(str(jsonl), extensions=IMAGE_EXTENSIONS, on_skip=skipped.append)
    names = await list_names(source)
    assert "video.mp4" not in names
    assert len(names) == len(GOOD)


async def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        await collect(open_source(str(tmp_path / "nope.jsonl")))


def test_http_url_must_be_jsonl() -> None:
    with pytest.raises(UsageError, match="jsonl"):
        open_source("https://example.com/images/")


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ('{"name": "a.jpg", "url": "https://x/a"}', True),
        ('{"name": "a.jpg", "url": "http://x/a", "size": 3}', True),
        ('{"name": "a.jpg", "url": "https://x/a", "size": true}', False),
        ('{"name": 1, "url": "https://x/a"}', False),
        ("null", False),
    ],
)
def test_parse_line(line: str, ok: bool) -> None:
    parsed = parse_reference_line(line)
    assert (not isinstance(parsed, str)) is ok
    assert parse_reference_line("  \t") is None


@pytest.mark.parametrize("cls", sorted(all_httpx_exceptions(), key=lambda c: c.__name__))
async def test_no_httpx_exception_escapes_a_url_listing(cls: type[Exception]) -> None:
    vendor = instance(cls)

    def fail(request: httpx.Request) -> httpx.Response:
        raise vendor

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as client:
        source = ReferencesSource("http://refs.test/refs.jsonl", http_client=client)
        with pytest.raises(BatchflowError) as caught:
            await collect(source)
    assert type(caught.value) is EXPECTED[cls.__name__]
    assert caught.value.__cause__ is vendor
