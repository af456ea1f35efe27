"""Hostile input against the client (the ``batchflow`` CLI as users run it).

Odd names, empty and huge files, malformed references, a server that answers garbage, archives
and listings that try to escape the export folder. Each gets a clear error or a clean skip with a
record: never a traceback, never a partial file under its final name, nothing outside the target.
"""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._support import (
    Origin,
    Sizes,
    cli,
    finish,
    list_files,
    report,
    sha256,
    wait_settled,
)
from tests.server_fixture import ServerHandle

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
ODD_NAMES = [
    "ünïcødé 日本語.jpg",
    "emoji 📷.jpg",
    "with space.jpg",
    "question?.jpg",
    "hash#tag.jpg",
    "percent%20.jpg",
    "percent%.jpg",
    "plus+amp&eq=.jpg",
    "semi;colon.jpg",
    "quote'dq\".jpg",
    "-leading-dash.jpg",
    "tab\there.jpg",
    "new\nline.jpg",
    "back\\slash.jpg",
    "nfd-cafe\u0301.jpg",
    "deep/" * 20 + "nested.jpg",
]


def clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp("hostile-client") / "data",
        extra_args=("--allow-url", "127.0.0.1"),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def api(server: ServerHandle) -> tuple[str, ...]:
    return ("--api-url", server.base_url, "--api-key", server.api_key)


def summary_of(out: str) -> dict[str, Any]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_odd_names_empty_and_huge_files_round_trip(
    server: ServerHandle, tmp_path: Path, state_dir: Path
) -> None:
    folder = tmp_path / "odd"
    expected: dict[str, str] = {}
    for i, name in enumerate(ODD_NAMES):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"\xff\xd8\xff\xe0" + name.encode() + bytes([i])
        path.write_bytes(data)
        expected[name] = sha256(data)
    (folder / "empty.jpg").write_bytes(b"")
    with (folder / "huge.jpg").open("wb") as handle:
        handle.truncate(21 * MiB)  # sparse: cheap on disk, over the 20 MiB limit
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    code, out, err = finish(cli("ingest", str(folder), "--batch-id", "odd-names", "--json",
                                *api(server), env=env))  # fmt: skip
    clean(err)
    summary = summary_of(out)
    skipped = {r["item"]: r for r in summary["skippedExamples"]}
    assert code == 6, (code, err)  # partial: the run went through, the skips are listed
    assert "skipped" in err
    assert all(r["type"] and r["reason"] for r in skipped.values())
    assert skipped["huge.jpg"]["type"] == "file-size-limit-exceeded", skipped
    # control characters can not be a staged name: a clean skip with a record, never mangled
    for name in ("new\nline.jpg", "tab\there.jpg"):
        assert skipped[name]["type"] == "invalid-file-name", skipped
    assert summary["skipped"] == len(skipped)  # every skip is in the record
    expected = {n: d for n, d in expected.items() if n not in skipped}
    if "empty.jpg" not in skipped:
        expected["empty.jpg"] = sha256(b"")
    n = len(expected)
    assert wait_settled(server, "odd-names", n, 60.0) == n
    staged = {f["fileName"]: f["sha256"] for f in list_files(server, "odd-names")}
    assert staged == expected  # every other odd name arrives exactly as it was, bytes intact

    # and back: the export writes each odd name as it is, with nothing partial left
    target = tmp_path / "back"
    code, out, err = finish(cli("export", "--batch-id", "odd-names", "--target-dir", str(target),
                                "--json", *api(server), env=env))  # fmt: skip
    clean(err)
    assert code == 0, err
    root = target / "odd-names"
    got = {str(p.relative_to(root)): sha256(p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert got == expected
    report("client odd names", {"names": len(ODD_NAMES) + 2, "skipped": len(skipped)})


BAD_LINES = [
    "not json at all",
    "[1, 2, 3]",
    '{"name": "no-url.jpg"}',
    '{"url": "http://127.0.0.1/no-name.jpg"}',
    '{"name": "", "url": "http://127.0.0.1/empty-name.jpg"}',
    '{"name": "file-scheme.jpg", "url": "file:///etc/passwd"}',
    '{"name": "js.jpg", "url": "javascript:alert(1)"}',
    '{"name": "ftp.jpg", "url": "ftp://127.0.0.1/x.jpg"}',
    '{"name": 7, "url": "http://127.0.0.1/int-name.jpg"}',
    '{"name": "neg.jpg", "url": "http://127.0.0.1/neg.jpg", "size": -1}',
    '{"name": "../escape.jpg", "url": "http://127.0.0.1/escape.jpg"}',
    '{"name": "/abs.jpg", "url": "http://127.0.0.1/abs.jpg"}',
    "\ufeff",
    '{"name": "trunc.jpg", "url": "http://127.0.0.1/tr',
]


def test_malformed_truncated_and_duplicate_references(
    server: ServerHandle, origin: Origin, tmp_path: Path, state_dir: Path
) -> None:
    good = {f"ok{i}.jpg": f"{origin.url}/refs/ok{i}.jpg" for i in range(5)}
    good["new\nline.jpg"] = f"{origin.url}/refs/newline.jpg"
    good["spaced name ü.jpg"] = f"{origin.url}/refs/spaced%20name.jpg"
    lines = [json.dumps({"name": n, "url": u}) for n, u in good.items()]
    dup = json.dumps({"name": "ok0.jpg", "url": f"{origin.url}/refs/other.jpg"})
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join([*lines[:3], *BAD_LINES[:-1], *lines[3:], dup, BAD_LINES[-1]]))
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    code, out, err = finish(cli("ingest", str(refs), "--batch-id", "bad-refs", "--json",
                                *api(server), env=env))  # fmt: skip
    clean(err)
    assert code in {0, 6}, err
    summary = summary_of(out)
    skipped = {r["item"]: r for r in summary["skippedExamples"]}
    assert all(r["type"] and r["reason"] for r in skipped.values())
    n = len(good)
    wait_settled(server, "bad-refs", n - 1, 60.0)
    staged_names = {f["fileName"] for f in list_files(server, "bad-refs")}
    # the newline name is refused as a name (staged names have no control characters)
    assert "new\nline.jpg" not in staged_names
    assert set(good) - {"new\nline.jpg"} <= staged_names
    assert not [s for s in staged_names if ".." in s or s.startswith("/")], staged_names
    # nothing vanished silently: every line is staged, skipped with a record, or a failure
    accounted = summary["skipped"] + summary["filesFailed"] + len(staged_names)
    assert accounted >= len(good) + len(BAD_LINES) - 1, summary  # the BOM line may be blank
    report("client references", {"lines": len(lines) + len(BAD_LINES) + 1,
           "skipped": summary["skipped"], "staged": len(staged_names)})  # fmt: skip


# --------------------------------------------------------------------- a server of garbage
GARBAGE: dict[str, Callable[[str], tuple[int, dict[str, str], bytes]]] = {
    "invalid-json": lambda p: (200, {"Content-Type": "application/json"}, b'{"workspace": '),
    "html": lambda p: (200, {"Content-Type": "text/html"}, b"<html><body>Welcome</body></html>"),
    "wrong-shape": lambda p: (200, {"Content-Type": "application/json"}, b'["a", 1, null]'),
    "nulls": lambda p: (200, {"Content-Type": "application/json"},
                        b'{"workspace": null, "batches": null, "job": null, "filesMetadata": 5}'),
    "html-500": lambda p: (500, {"Content-Type": "text/html"}, b"<h1>oops</h1>" * 100),
    "teapot": lambda p: (418, {}, b""),
    "redirect-loop": lambda p: (302, {"Location": p}, b""),
}  # fmt: skip


TRANSIENT = {"html-500", "truncated"}


@pytest.fixture(scope="module")
def garbage() -> Iterator[Callable[[str], str]]:
    """``url(mode)``: a server answering every request in the garbage ``mode``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            mode = self.path.lstrip("/").partition("/")[0]
            if mode == "truncated":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"workspace": "w", "batches": [')
                self.close_connection = True
                return
            status, headers, body = GARBAGE[mode](self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    try:
        yield lambda mode: f"http://127.0.0.1:{port}/{mode}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.mark.parametrize("mode", [*GARBAGE, "truncated"])
def test_garbage_server_gives_clear_errors(
    garbage: Callable[[str], str], mode: str, sizes: Sizes, tmp_path: Path, state_dir: Path
) -> None:
    """Every command against every kind of garbage: a non-zero exit and a short reason.

    5xx and truncated answers are retried (transient) until the retry budget runs out, about
    15 s per command: those two modes run ingest, poll and export (CI: ingest only); the
    others run every command (CI: ingest, poll and export).
    """
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0a")
    target = tmp_path / "out"
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    keys = ("--api-url", garbage(mode), "--api-key", "k")
    commands = {
        "ingest": ("ingest", str(folder), "--batch-id", "g1", *keys),
        "poll": ("poll", "job-g1", "--interval", "0.05", "--timeout", "20", *keys),
        "export": ("export", "--batch-id", "g1", "--target-dir", str(target), *keys),
        "run": ("run", "--workflow-id", "thumbnail", "--batch-id", "g1", *keys),
        "batches": ("batches", "list", *keys),
    }
    if mode in TRANSIENT:  # each command spends its retry budget: the three the promise names
        keep = ("ingest", "poll", "export") if sizes.full else ("ingest",)
        commands = {name: commands[name] for name in keep}
    elif not sizes.full:
        commands = {name: commands[name] for name in ("ingest", "poll", "export")}
    for name, argv in commands.items():
        code, out, err = finish(cli(*argv, env=env), timeout=120)
        assert code != 0, (name, out, err)
        clean(err)
        assert err.strip(), (name, "a failure must say why")
        assert len(err.strip().splitlines()) <= 20, (name, err)
    leftovers = [p for p in target.rglob("*") if p.is_file()] if target.exists() else []
    assert not leftovers, leftovers


# ------------------------------------------------------------ export listings that escape
def _tar_with_escapes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in [("ok.txt", b"fine"), ("../../escape-tar.txt", b"evil"),
                           ("/tmp/escape-abs.txt", b"evil")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link-out")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../.."
        tar.addfile(link)
        through = tarfile.TarInfo("link-out/escape-link.txt")
        through.size = 4
        tar.addfile(through, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.fixture
def evil_api() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A Batch API whose listing and archives try to write outside the export folder."""
    blobs = {"/blob/results.tar": _tar_with_escapes(), "/blob/ok.jpg": b"good bytes"}
    names = {"/blob/results.tar": "results.tar", "/blob/ok.jpg": "ok.jpg",
             "/blob/e1": "../escape-list.txt", "/blob/e2": "/tmp/escape-list-abs.txt",
             "/blob/e3": "sub/../../escape-list2.txt"}  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        base = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                body = json.dumps({"workspace": "w"}).encode()
            elif path.endswith("/list"):
                body = json.dumps({"filesMetadata": [
                    {"downloadURL": self.base + blob, "fileName": name,
                     "contentType": "application/octet-stream"}
                    for blob, name in names.items()
                ]}).encode()  # fmt: skip
            elif path in blobs or path in names:
                body = blobs.get(path, b"evil")
            else:
                body = json.dumps({"error": "nope"}).encode()
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    Handler.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Handler.base, blobs
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_export_refuses_escaping_names_and_archive_members(
    evil_api: tuple[str, dict[str, bytes]], tmp_path: Path, state_dir: Path
) -> None:
    url, _ = evil_api
    sandbox = tmp_path / "sandbox"
    target = sandbox / "a" / "b" / "out"
    target.mkdir(parents=True)
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    argv = ("export", "--batch-id", "b1", "--target-dir", str(target), "--extract",
            "--api-url", url, "--api-key", "k")  # fmt: skip
    code, _, err = finish(cli(*argv, env=env))
    clean(err)
    assert code != 0, "unsafe names must fail the export"
    assert "refused" in err or "unsafe" in err.lower(), err
    escaped = list(sandbox.rglob("escape*")) + list(Path("/tmp").glob("escape-*"))
    assert not escaped, escaped
    outside = [p for p in sandbox.rglob("*") if p.is_file() and not p.is_relative_to(target)]
    assert not outside, outside
    assert (target / "b1" / "ok.jpg").read_bytes() == b"good bytes"
    assert not list(target.rglob("*.part"))
    report("client export escapes", {"names": 3, "archive_members": 4})
