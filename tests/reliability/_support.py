"""Shared helpers of the reliability suite: sizes, fault mixes, server-side evidence, CLI runs.

Imported by the test modules and by ``conftest.py`` (which holds the fixtures and hooks).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from batchflow.config import ClientSettings, RetryPolicy, Timeouts
from batchflow.testing import synthetic_ref
from tests.faultproxy import FaultRates, ThreadedFaultProxy
from tests.server_fixture import ServerHandle


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs."""

    full: bool
    references: int
    references_fetched: int
    folder_files: int
    crash_points: int
    export_files: int
    schema_examples: int


# The mix the issue asks for: 10% 5xx, 5% resets, 2% stalls, some 429s (and truncated bodies).
ISSUE_RATES = FaultRates(
    error_5xx=0.10, reset=0.05, stall=0.02, status_429=0.03, truncate=0.02,
    retry_after=1, stall_seconds=3.0,
)  # fmt: skip

# Client settings through the proxy: a read timeout shorter than the stall, enough attempts.
FAST_TIMEOUTS = Timeouts(connect=2.0, read=1.5, write=5.0, pool=10.0)
PATIENT_RETRY = RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=0.5, deadline=120.0)


def client_settings(url: str, api_key: str) -> ClientSettings:
    return ClientSettings(
        api_url=url, api_key=api_key, key_in_header=True,
        timeouts=FAST_TIMEOUTS, retry=PATIENT_RETRY,
    )  # fmt: skip


def origin_bytes(path: str) -> bytes:
    """What the origin serves for ``path``: small, deterministic, distinct per path."""
    seed = hashlib.sha256(path.encode()).digest()
    return b"\xff\xd8\xff\xe0" + seed * 8 + path.encode()


@dataclass
class Origin:
    """A loopback HTTP origin serving :func:`origin_bytes` for any path (references point here)."""

    url: str
    hits: Counter[str] = field(default_factory=Counter)
    redirects: dict[str, str] = field(default_factory=dict)


@dataclass
class Proxied:
    """A server whose API and signed URLs are reached through a fault proxy."""

    server: ServerHandle
    proxy: ThreadedFaultProxy

    @property
    def url(self) -> str:
        return self.proxy.url

    def settings(self) -> ClientSettings:
        return client_settings(self.proxy.url, self.server.api_key)

    def restart_server(self) -> None:
        """SIGKILL the server and start it again (new port); the proxy follows."""
        self.server.kill()
        self.server.start()
        self.proxy.set_upstream(self.server.base_url)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _paged(server: ServerHandle, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token: str | None = None
    with server.client() as http:
        for _ in range(100_000):
            query: dict[str, Any] = {"pageSize": 1000, **params}
            if token:
                query["nextPageToken"] = token
            resp = http.get(f"{server.ds}{path}", params=query)
            if resp.status_code == 404:
                return out
            resp.raise_for_status()
            body = resp.json()
            out.extend(body[key])
            token = body.get("nextPageToken")
            if not token:
                break
    return out


def list_files(server: ServerHandle, batch_id: str) -> list[dict[str, Any]]:
    return _paged(server, f"/batches/{batch_id}/list", "filesMetadata")


def list_shards(server: ServerHandle, batch_id: str) -> list[dict[str, Any]]:
    return _paged(server, f"/batches/{batch_id}/shards", "shards")


def count(server: ServerHandle, batch_id: str) -> int:
    with server.client() as http:
        resp = http.get(f"{server.ds}/batches/{batch_id}/count")
        if resp.status_code == 404:
            return 0
        resp.raise_for_status()
        return int(resp.json()["count"])


def wait_settled(server: ServerHandle, batch_id: str, expected: int, timeout: float) -> int:
    """Poll until ``count`` reaches ``expected`` and no shard is pending; the last count."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = count(server, batch_id)
        if seen >= expected:
            shards = list_shards(server, batch_id)
            if all(s["statusName"] in ("completed", "failed") for s in shards):
                return seen
        time.sleep(0.25)
    return seen


def fetch(url: str) -> bytes:
    with httpx.Client(timeout=30, trust_env=False) as http:
        resp = http.get(url)
        resp.raise_for_status()
        return resp.content


FIGURES: list[str] = []
"""Every ``report`` line of the session; the conftest prints them in the terminal summary."""


def report(title: str, figures: dict[str, Any]) -> None:
    """Record one line of figures (printed at the end of the run, and at once with ``-s``)."""
    line = f"{title}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    FIGURES.append(line)
    print(f"\n[reliability] {line}")


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def write_references(path: Path, n: int, url_base: str) -> dict[str, str]:
    """A references JSONL of ``n`` synthetic refs; returns name -> expected sha256."""
    expected: dict[str, str] = {}
    with path.open("w") as out:
        for i in range(n):
            ref = synthetic_ref(i, url_base=url_base)
            assert ref.url is not None
            out.write(json.dumps({"name": ref.name, "url": ref.url}) + "\n")
            expected[ref.name] = sha256(origin_bytes(urlsplit(ref.url).path))
    return expected


def assert_exactly_once(files: list[dict[str, object]], expected: dict[str, str]) -> None:
    names = Counter(str(f["fileName"]) for f in files)
    twice = [name for name, n in names.items() if n > 1]
    assert not twice, f"{len(twice)} names staged more than once, e.g. {twice[:5]}"
    missing = set(expected) - set(names)
    assert not missing, f"{len(missing)} files missing, e.g. {sorted(missing)[:5]}"
    extra = set(names) - set(expected)
    assert not extra, f"unexpected files {sorted(extra)[:5]}"
    wrong = [f["fileName"] for f in files if f.get("sha256") != expected[str(f["fileName"])]]
    assert not wrong, f"{len(wrong)} files with the wrong content, e.g. {wrong[:5]}"
