"""Fixtures: a scriptable HTTP origin on 127.0.0.1 and a loopback-guarded httpx client."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._origin import LoopbackOnly, Origin, _handler, self_signed


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Origin]:
    state = Origin(port=0)
    server = _Server(("127.0.0.1", 0), _handler(state))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def origin() -> Iterator[Origin]:
    with _serve() as state:
        yield state


@pytest.fixture
def tls_origin(tmp_path: Path) -> Iterator[tuple[Origin, ssl.SSLContext]]:
    """An https origin on 127.0.0.1 whose certificate names only ``localhost``."""
    server_ctx, client_ctx = self_signed(tmp_path, "localhost")
    with _serve(server_ctx) as state:
        yield state, client_ctx


@pytest.fixture
async def guarded() -> Any:
    transport = LoopbackOnly()
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        client.guard = transport  # type: ignore[attr-defined]
        yield client
