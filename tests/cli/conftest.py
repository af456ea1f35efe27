"""Fixtures of the CLI tests: isolated data/state dirs, one real ``batchflow serve`` for the
module, a click runner, a subprocess runner and a client to stage files with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from batchflow.cli._app import cli
from batchflow.cli._embedded import stop_local_service
from batchflow.client import BatchClient
from batchflow.config import ClientSettings, RetryPolicy
from tests.server_fixture import ServerHandle

_API_ENV = (
    "API_BASE_URL",
    "BATCHFLOW_API_URL",
    "BATCHFLOW_API_KEY",
    "ROBOFLOW_API_KEY",
    "BATCHFLOW_API_KEYS",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fresh BATCHFLOW_DATA_DIR/BATCHFLOW_STATE_DIR, no API URL or key from the environment."""
    for name in _API_ENV:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "service-data"
    monkeypatch.setenv("BATCHFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("BATCHFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("batchflow.logging.configure", lambda **_: None)
    return data


def serve_processes(data_dir: Path) -> list[psutil.Process]:
    """Live ``batchflow serve`` processes whose command line names ``data_dir``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if "serve" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def data_dir(isolated_env: Path) -> Iterator[Path]:
    """The local service data dir of this test; a daemon started in it is stopped afterwards."""
    yield isolated_env
    stop_local_service(isolated_env)
    for proc in serve_processes(isolated_env):  # belt and braces: never leak a daemon
        proc.kill()


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One ``batchflow serve`` for the CLI tests (loopback references allowed)."""
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp("cli-serve") / "data",
        extra_args=("--allow-url", "127.0.0.1"),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def batch_id() -> str:
    return "cli-" + uuid.uuid4().hex[:12]


def api_args(server: ServerHandle) -> list[str]:
    return ["--api-url", server.base_url, "--api-key", server.api_key]


def make_client(server: ServerHandle) -> BatchClient:
    settings = ClientSettings(
        api_url=server.base_url,
        api_key=server.api_key,
        key_in_header=True,
        retry=RetryPolicy(max_attempts=3, base_delay=0.05, deadline=30),
    )
    return BatchClient(settings)


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def invoke(*args: str) -> Result:
    """Run the CLI in-process (fast); stdout and stderr kept apart."""
    runner = CliRunner()
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m batchflow ARGS`` as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "batchflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
