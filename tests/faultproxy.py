"""A fault-injecting HTTP/1.1 reverse proxy for reliability tests and benchmarks (loopback only).

Every request is read in full, then a seeded RNG decides its fate (one draw per request, in
arrival order, so a sequential run replays exactly and a concurrent one replays its fault mix):

- ``error_5xx``: answer 500/502/503 without reaching the upstream;
- ``status_429``: answer 429 with ``Retry-After`` without reaching the upstream;
- ``reset``: forward the request (the upstream acts on it), then drop the client connection with
  a TCP RST instead of the answer: the nastiest case for idempotency;
- ``stall``: keep the connection silent for ``stall_seconds`` (set it past the client's read
  timeout; bounded), then close it; the upstream never sees the request;
- ``truncate``: forward, then send the upstream's head and only half of its body before closing
  (only for answers with a body of at least ``truncate_min_bytes``; otherwise passed through).

Bodies are never rewritten. Signed URLs in answers point wherever the upstream says: start
``batchflow serve --public-url <proxy url>`` so blob downloads and upload PUTs cross the proxy too.
Each connection carries one request (the answer says ``Connection: close``).

``on_forward(method, path, body)`` sees every request the upstream receives (evidence of what was
sent twice). ``decide(method, path)``, when given, names the fault of each request (or None)
instead of the RNG: a scripted fault, such as losing the answer of the first PUT only.
``FaultProxy`` is an async context manager (``async with FaultProxy(url, rates)``);
``ThreadedFaultProxy`` runs one in a background thread for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "FaultProxy", "FaultRates", "ThreadedFaultProxy"]

FAULT_KINDS = ("error_5xx", "status_429", "reset", "stall", "truncate")
_MAX_HEAD = 64 * 1024
_PIPE_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability of each fault per request (their sum must stay <= 1)."""

    error_5xx: float = 0.0
    status_429: float = 0.0
    reset: float = 0.0
    stall: float = 0.0
    truncate: float = 0.0
    retry_after: int = 1
    stall_seconds: float = 3.0
    truncate_min_bytes: int = 64

    def __post_init__(self) -> None:
        total = sum(getattr(self, kind) for kind in FAULT_KINDS)
        if total > 1.0 or any(getattr(self, kind) < 0 for kind in FAULT_KINDS):
            raise ValueError(f"fault rates must be >= 0 and sum to <= 1, got {total}")
        if not 0 < self.stall_seconds <= 120:
            raise ValueError("stall_seconds must be in (0, 120]")

    def pick(self, draw: float) -> str | None:
        """The fault for a uniform ``draw`` in [0, 1), or None to pass the request through."""
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind
        return None


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class ProxyStats:
    """What the proxy saw: requests, faults by kind, answers forwarded per (method, path)."""

    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[tuple[str, str]] = field(default_factory=Counter)
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        """Figures so far (safe to call from another thread: the counters are copied first)."""
        faults = dict(self.faults)  # one C-level copy, atomic under the GIL
        return {
            "requests": self.requests,
            "faults": {kind: faults.get(kind, 0) for kind in FAULT_KINDS},
            "faults_total": sum(faults.values()),
        }


class _BadRequest(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest("request head too large") from exc


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    if (_header(headers, "transfer-encoding") or "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(_header(headers, "content-length") or "0")
    return await reader.readexactly(length) if length else b""


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await _read_head(reader)
    except asyncio.IncompleteReadError:
        return None
    request_line, headers = _parse_head(head)
    method, target, version = request_line.split(" ", 2)
    body = await _read_body(reader, headers)
    return _Request(method, target, version, headers, body)


def _upstream_bytes(request: _Request, host: str) -> bytes:
    drop = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in drop | {"host"}]
    lines += [f"Host: {host}", "Connection: close"]
    if request.body or request.method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


def _simple_response(status: int, reason: str, extra: Mapping[str, str] | None = None) -> bytes:
    body = b'{"error": "injected fault"}'
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """The proxy; ``url`` is valid inside ``async with``. ``upstream`` may change (restarts)."""

    def __init__(
        self,
        upstream: str,
        rates: FaultRates | None = None,
        *,
        seed: int = 0,
        port: int = 0,
        exempt_paths: tuple[str, ...] = ("/healthz",),
        on_forward: Callable[[str, str, bytes], None] | None = None,
        decide: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.decide = decide
        self.rates = rates or FaultRates()
        self.seed = seed
        self.port = port
        self.exempt_paths = exempt_paths
        self.on_forward = on_forward
        self.stats = ProxyStats()
        self.enabled = True
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, limit=_MAX_HEAD
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    def _decide(self, request: _Request) -> str | None:
        draw = self._rng.random()  # always drawn: the sequence replays whatever is exempt
        if not self.enabled or request.path in self.exempt_paths:
            return None
        if self.decide is not None:
            return self.decide(request.method, request.path)
        return self.rates.pick(draw)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, _BadRequest, ValueError):
            pass
        finally:
            self._conns.discard(task)
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if request is None:
            return
        self.stats.requests += 1
        fault = self._decide(request)
        if fault == "error_5xx":
            self.stats.faults[fault] += 1
            status = self._rng.choice([(500, "Internal Server Error"), (502, "Bad Gateway"),
                                       (503, "Service Unavailable")])  # fmt: skip
            writer.write(_simple_response(*status))
            await writer.drain()
            return
        if fault == "status_429":
            self.stats.faults[fault] += 1
            retry = {"Retry-After": str(self.rates.retry_after)}
            writer.write(_simple_response(429, "Too Many Requests", retry))
            await writer.drain()
            return
        if fault == "stall":
            self.stats.faults[fault] += 1
            await asyncio.sleep(self.rates.stall_seconds)
            return
        await self._forward(request, writer, fault)

    async def _forward(
        self, request: _Request, writer: asyncio.StreamWriter, fault: str | None
    ) -> None:
        parts = urlsplit(self.upstream)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        key = (request.method, request.path)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port, limit=_MAX_HEAD)
        except OSError:
            writer.write(_simple_response(502, "Bad Gateway"))
            await writer.drain()
            return
        try:
            up_writer.write(_upstream_bytes(request, f"{host}:{port}"))
            await up_writer.drain()
            self.stats.forwarded[key] += 1
            if self.on_forward is not None:
                self.on_forward(request.method, request.path, request.body)
            if fault == "reset":
                # let the upstream act on the request, then lose its answer
                await up_reader.read()
                self.stats.faults[fault] += 1
                _rst(writer)
                return
            if fault == "truncate":
                raw = await up_reader.read()
                head, sep, body = raw.partition(b"\r\n\r\n")
                if sep and len(body) >= self.rates.truncate_min_bytes:
                    self.stats.faults[fault] += 1
                    writer.write(head + sep + body[: len(body) // 2])
                    await writer.drain()
                    _rst(writer)
                    return
                writer.write(raw)
                await writer.drain()
                self.stats.delivered[key] += 1
                return
            while chunk := await up_reader.read(_PIPE_CHUNK):
                writer.write(chunk)
                await writer.drain()
            self.stats.delivered[key] += 1
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()


class ThreadedFaultProxy:
    """A :class:`FaultProxy` on its own event loop in a daemon thread (for sync tests)."""

    def __init__(
        self,
        upstream: str,
        rates: FaultRates | None = None,
        *,
        seed: int = 0,
        port: int = 0,
        on_forward: Callable[[str, str, bytes], None] | None = None,
        decide: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.proxy = FaultProxy(
            upstream, rates, seed=seed, port=port, on_forward=on_forward, decide=decide
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def set_upstream(self, upstream: str) -> None:
        self.proxy.upstream = upstream

    def __enter__(self) -> ThreadedFaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        future = asyncio.run_coroutine_threadsafe(
            self.proxy.__aexit__(None, None, None), self._loop
        )
        with contextlib.suppress(Exception):
            future.result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
