"""Fixtures and hooks of the reliability suite: sizes (CI-bounded or full), a local origin,
servers behind the fault proxy, the ``reliability`` marker and the figures summary. Helpers live
in ``_support.py``.

Full sizes: ``BATCHFLOW_RELIABILITY_FULL=1`` or ``--reliability-full`` (``make reliability``).
Every test here carries the ``reliability`` marker.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._procs import free_port
from tests.faultproxy import FaultRates, ThreadedFaultProxy
from tests.reliability._support import FIGURES, Origin, Proxied, Sizes, origin_bytes
from tests.server_fixture import ServerHandle


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-full",
        action="store_true",
        default=False,
        help="run the reliability suite at full size (also: BATCHFLOW_RELIABILITY_FULL=1)",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures every scenario recorded, in one block at the end of the run."""
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    full = bool(pytestconfig.getoption("--reliability-full", default=False)) or (
        os.environ.get("BATCHFLOW_RELIABILITY_FULL", "") not in {"", "0"}
    )
    if full:
        return Sizes(True, references=100_000, references_fetched=3000, folder_files=2000,
                     crash_points=20, export_files=400, schema_examples=50)  # fmt: skip
    return Sizes(False, references=10_000, references_fetched=200, folder_files=120,
                 crash_points=4, export_files=60, schema_examples=8)  # fmt: skip


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals go to a per-test temp dir; the embedded service is never used."""
    path = tmp_path / "state"
    monkeypatch.setenv("BATCHFLOW_STATE_DIR", str(path))
    monkeypatch.delenv("BATCHFLOW_API_URL", raising=False)
    monkeypatch.delenv("API_BASE_URL", raising=False)
    return path


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    state = Origin(url="")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with lock:
                state.hits[path] += 1
            target = state.redirects.get(path)
            if target is not None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = origin_bytes(path)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def proxied_factory(
    server_factory: Callable[..., ServerHandle],
) -> Iterator[Callable[..., Proxied]]:
    """``make(rates, seed, *server_flags)``: a server with ``--public-url`` = the proxy."""
    opened: list[ThreadedFaultProxy] = []

    def make(
        rates: FaultRates,
        seed: int = 1,
        *extra: str,
        on_forward: Callable[[str, str, bytes], None] | None = None,
    ) -> Proxied:
        port = free_port()
        server = server_factory(
            "--allow-url", "127.0.0.1", "--public-url", f"http://127.0.0.1:{port}", *extra
        )
        proxy = ThreadedFaultProxy(
            server.base_url, rates, seed=seed, port=port, on_forward=on_forward
        )
        proxy.__enter__()
        opened.append(proxy)
        return Proxied(server, proxy)

    yield make
    for proxy in opened:
        proxy.__exit__(None, None, None)
