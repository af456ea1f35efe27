"""A tiny scriptable HTTP origin on 127.0.0.1 (http.server in a thread) and a loopback guard.

The origin answers by path; ``Origin.script`` queues per-path behaviours ("500", "drop", "429:3",
"200") consumed one per request, then the path's default applies. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


def payload(n: int) -> bytes:
    """Deterministic bytes of length n."""
    block = hashlib.sha256(str(n).encode()).digest()
    return (block * (n // len(block) + 1))[:n]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Origin:
    port: int
    seen: list[Seen] = field(default_factory=list)
    scripts: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0
    hold: float = 0.0  # seconds each POST waits for a second concurrent request...
    hold_total: int = 0  # ...unless this many POSTs have arrived (the last one is alone)
    posts_started: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *steps: str) -> None:
        with self.lock:
            self.scripts[path].extend(steps)

    def next_step(self, path: str) -> str | None:
        with self.lock:
            queue = self.scripts.get(path)
            return queue.popleft() if queue else None

    def posts(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == "POST" and s.path == path]


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self, body: bytes = b"") -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            with origin.lock:
                origin.seen.append(
                    Seen(
                        self.command,
                        parts.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            return parts.path, parse_qs(parts.query)

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            *,
            length: bool = True,
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _step(self, path: str) -> bool:
            """Apply a scripted step; True if it answered."""
            step = origin.next_step(path)
            if step is None or step == "200":
                return False
            if step == "drop":
                self.close_connection = True
                return True
            code, _, retry_after = step.partition(":")
            self._send(int(code), b"{}", {"Retry-After": retry_after} if retry_after else None)
            return True

        def do_GET(self) -> None:
            path, query = self._record()
            if self._step(path):
                return
            head, _, rest = path.strip("/").partition("/")
            if head == "ok":
                self._send(200, payload(int(rest)), {"Content-Type": "image/jpeg"})
            elif head == "nolength":
                self._send(200, payload(int(rest)), length=False)
            elif head == "status":
                self._send(int(rest), b"nope")
            elif head == "redirect":
                n = int(rest)
                target = f"/redirect/{n - 1}" if n > 0 else "/ok/100"
                self._send(302, b"", {"Location": target})
            elif head == "loop":
                self._send(302, b"", {"Location": "/loop"})
            elif head == "to":
                self._send(302, b"", {"Location": query["url"][0]})
            else:
                self._send(404, b"unknown")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path, _ = self._record(body)
            with origin.cond:
                origin.in_flight += 1
                origin.posts_started += 1
                origin.max_in_flight = max(origin.max_in_flight, origin.in_flight)
                origin.cond.notify_all()
                if origin.hold:
                    origin.cond.wait_for(
                        lambda: origin.in_flight >= 2 or origin.posts_started >= origin.hold_total,
                        timeout=origin.hold,
                    )
            try:
                if not self._step(path):
                    self._send(200, b"{}", {"Content-Type": "application/json"})
            finally:
                with origin.cond:
                    origin.in_flight -= 1

    return Handler


class LoopbackOnly(httpx.AsyncBaseTransport):
    """Delegates to a real transport but fails the test on any non-loopback target."""

    def __init__(self, verify: ssl.SSLContext | bool = False) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=verify)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host = request.url.host
        assert ipaddress.ip_address(host).is_loopback, f"test tried to reach {host}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def plain_client() -> httpx.AsyncClient:
    """An http-only test client: no env proxies; no TLS context to build (that costs ~0.15 s)."""
    return httpx.AsyncClient(verify=False, trust_env=False)


def self_signed(tmp: Path, dns_name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a cert naming only ``dns_name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cadata=pem.decode())
    return server, client
