"""The embedded default: the CLI starts (or reuses) one local ``batchflow serve`` daemon."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from batchflow.cli._context import ApiOptions, resolve_settings
from batchflow.cli._embedded import ensure_local_service, service_status
from tests.cli.conftest import Result, invoke, run_cli, serve_processes


def test_two_concurrent_clis_start_exactly_one_daemon(data_dir: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        results: list[Result] = list(
            pool.map(lambda _: run_cli("batches", "list", "--json"), range(2))
        )
    for result in results:
        assert result.exit_code == 0, result.stderr
        assert result.stdout == ""  # a fresh service has no batches; the note went to stderr
        assert "using the local batchflow service at http://127.0.0.1:" in result.stderr
        assert f"(data: {data_dir})" in result.stderr
    procs = serve_processes(data_dir)
    assert len(procs) == 1
    info = json.loads((data_dir / "server.json").read_text())
    assert info["pid"] == procs[0].pid
    assert stat.S_IMODE((data_dir / "api_key").stat().st_mode) == 0o600
    key = (data_dir / "api_key").read_text().strip()
    assert key not in " ".join(procs[0].cmdline())  # the key is not visible in ps

    assert procs[0].cmdline()[:4] == [sys.executable, "-m", "batchflow", "serve"]

    again = ensure_local_service(announce=False)  # a later call reuses it
    assert (again.pid, again.url, again.api_key) == (info["pid"], info["url"], key)
    assert [p.pid for p in serve_processes(data_dir)] == [procs[0].pid]


def test_status_stop_and_logs(data_dir: Path) -> None:
    down = invoke("service", "status", "--json")
    assert down.exit_code == 0
    assert json.loads(down.stdout)["status"] == "down"

    service = ensure_local_service(announce=False)
    up = json.loads(invoke("service", "status", "--json").stdout)
    assert up == {
        "status": "up",
        "url": service.url,
        "pid": service.pid,
        "workspace": "local",
        "dataDir": str(data_dir),
        "logFile": str(data_dir / "service.log"),
    }
    human = invoke("service", "status")
    assert f"url: {service.url}" in human.stdout
    logs = invoke("service", "logs", "-n", "5")
    assert "batchflow serve listening on" in logs.stdout

    os.kill(service.pid, signal.SIGKILL)  # dies without removing server.json
    os.waitpid(service.pid, 0)
    assert (data_dir / "server.json").exists()
    assert service_status().up is False
    fresh = ensure_local_service(announce=False)  # the stale server.json is replaced
    assert fresh.pid != service.pid
    assert fresh.api_key == service.api_key  # the key file is kept
    assert [p.pid for p in serve_processes(data_dir)] == [fresh.pid]

    stopped = json.loads(invoke("service", "stop", "--json").stdout)
    assert stopped == {"stopped": True, "pid": fresh.pid, "dataDir": str(data_dir)}
    assert serve_processes(data_dir) == []
    assert not (data_dir / "server.json").exists()
    assert service_status().up is False
    assert "not running" in invoke("service", "stop").stdout


def test_daemon_that_cannot_start_points_at_its_log(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "catalog.sqlite3").mkdir()  # the catalog path is a folder: serve fails
    result = invoke("batches", "list")
    assert result.exit_code == 1
    assert "exited during start-up" in result.stderr
    assert str(data_dir / "service.log") in result.stderr
    assert serve_processes(data_dir) == []


def test_explicit_api_url_never_starts_the_daemon(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_BASE_URL", "http://127.0.0.1:9/")
    settings = resolve_settings(ApiOptions(api_url=None, api_key="k"))
    assert (settings.api_url, settings.api_key, settings.key_in_header) == (
        "http://127.0.0.1:9", "k", True)  # fmt: skip
    assert not data_dir.exists()
    assert serve_processes(data_dir) == []
