"""Fixtures for ingest tests: one SQLite ``batchflow serve`` for the session, a temp state dir."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchflow.config import ClientSettings
from tests.server_fixture import ServerHandle


@pytest.fixture(scope="session")
def ingest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A real server on SQLite that may fetch 127.0.0.1 URLs (the emulators)."""
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp("serve-ingest") / "data",
        extra_args=("--allow-url", "127.0.0.1"),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals go to a per-test temp dir, never to the user's state dir."""
    path = tmp_path / "state"
    monkeypatch.setenv("BATCHFLOW_STATE_DIR", str(path))
    return path


def settings_for(server: ServerHandle) -> ClientSettings:
    return ClientSettings(api_url=server.base_url, api_key=server.api_key, key_in_header=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_files(server: ServerHandle, batch_id: str) -> list[dict[str, object]]:
    """Every file of the batch, through the API's pagination."""
    out: list[dict[str, object]] = []
    token: str | None = None
    with server.client() as http:
        for _ in range(1000):
            params: dict[str, str | int] = {"pageSize": 500}
            if token:
                params["nextPageToken"] = token
            resp = http.get(f"{server.ds}/batches/{batch_id}/list", params=params)
            if resp.status_code == 404:
                return out
            resp.raise_for_status()
            body = resp.json()
            out.extend(body["filesMetadata"])
            token = body.get("nextPageToken")
            if not token:
                break
    return out


def list_shards(server: ServerHandle, batch_id: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    token: str | None = None
    with server.client() as http:
        for _ in range(1000):
            params: dict[str, str | int] = {"pageSize": 500}
            if token:
                params["nextPageToken"] = token
            resp = http.get(f"{server.ds}/batches/{batch_id}/shards", params=params)
            resp.raise_for_status()
            body = resp.json()
            out.extend(body["shards"])
            token = body.get("nextPageToken")
            if not token:
                break
    return out


def wait_staged(
    server: ServerHandle, batch_id: str, expected: int, timeout: float = 60.0
) -> list[dict[str, object]]:
    """Poll the listing until ``expected`` files are there and no shard is pending."""
    deadline = time.monotonic() + timeout
    files: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        files = list_files(server, batch_id)
        if len(files) >= expected:
            shards = list_shards(server, batch_id)
            if all(s["statusName"] in ("completed", "failed") for s in shards):
                return files
        time.sleep(0.2)
    return files


def fetch(url: str) -> bytes:
    with httpx.Client(timeout=30, trust_env=False) as http:
        resp = http.get(url)
        resp.raise_for_status()
        return resp.content


@dataclass(frozen=True)
class FileServer:
    """A static HTTP server over ``root`` on 127.0.0.1 (what references URLs point at)."""

    root: Path
    url: str

    def add(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{name}"


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    root = tmp_path_factory.mktemp("static")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
