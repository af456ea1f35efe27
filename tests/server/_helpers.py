"""Local HTTP origin (Pillow images, slow and huge paths, JSONL files) and webhook receiver."""

from __future__ import annotations

import io
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from PIL import Image

BIG = 20 * 1024 * 1024 + 10


def image_bytes(name: str, fmt: str = "JPEG") -> bytes:
    """A small deterministic image per name."""
    seed = zlib.crc32(name.encode())
    color = (seed & 255, (seed >> 8) & 255, (seed >> 16) & 255)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, format=fmt)
    return buffer.getvalue()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Origin:
    """Paths: /img/<name> (image), /slow/<name> (image after ``slow`` s), /big.jpg (> 20 MiB),
    /missing.jpg (404), /files/<key> (registered bytes)."""

    port: int = 0
    slow: float = 0.4
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _origin_handler(state: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "image/jpeg") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            with state.lock:
                state.hits[path] = state.hits.get(path, 0) + 1
            if path.startswith("/img/"):
                self._send(200, image_bytes(path[5:]))
            elif path.startswith("/slow/"):
                time.sleep(state.slow)
                self._send(200, image_bytes(path[6:]))
            elif path == "/big.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(BIG))
                self.end_headers()
                chunk = b"\0" * 65536
                sent = 0
                try:
                    while sent < BIG:
                        self.wfile.write(chunk[: min(len(chunk), BIG - sent)])
                        sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif path.startswith("/files/") and path[7:] in state.files:
                self._send(200, state.files[path[7:]], "application/octet-stream")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@contextmanager
def run_origin() -> Iterator[Origin]:
    state = Origin()
    with serve_http(_origin_handler(state)) as port:
        state.port = port
        yield state


@dataclass
class Receiver:
    """Records webhook POSTs; answers 500 to the first ``fail_first`` of them."""

    port: int = 0
    fail_first: int = 0
    seen: list[tuple[dict[str, Any], dict[str, str], int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body, _, status in self.seen if status == 200]

    def all(self) -> list[tuple[dict[str, Any], dict[str, str], int]]:
        with self.lock:
            return list(self.seen)


def _receiver_handler(state: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                status = 500 if len(state.seen) < state.fail_first else 200
                state.seen.append((body, dict(self.headers.items()), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def run_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first)
    with serve_http(_receiver_handler(state)) as port:
        state.port = port
        yield state


def wait_for(check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def shards_done(client: httpx.Client, ds: str, batch_id: str) -> bool:
    """True when every shard of the batch is completed or failed."""
    shards = client.get(f"{ds}/batches/{batch_id}/shards", params={"pageSize": 1000}).json()
    items = shards.get("shards", [])
    return bool(items) and all(s["statusName"] in {"completed", "failed"} for s in items)
