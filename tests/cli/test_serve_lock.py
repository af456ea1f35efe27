"""One ``batchflow serve`` per data dir: a second exits 5; the embedded CLI waits for the first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from batchflow.cli import _embedded
from batchflow.cli._embedded import ensure_local_service
from batchflow.errors import PermanentError
from tests.cli.conftest import serve_processes


def test_second_serve_on_the_same_data_dir_exits_5_naming_the_pid(data_dir: Path) -> None:
    first = ensure_local_service(announce=False)
    # the first one's own port: had the second bound a port before locking, it would exit 2
    port = str(urlsplit(first.url).port)
    argv = [sys.executable, "-m", "batchflow", "serve", "--data-dir", str(data_dir), "--port", port]
    second = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 5, second.stderr
    assert second.stderr.splitlines() == [
        f"error: another batchflow serve (pid {first.pid}) already serves {data_dir} "
        f"(it holds {data_dir / 'serve.lock'}): stop it or pass another --data-dir"
    ]
    assert [p.pid for p in serve_processes(data_dir)] == [first.pid]
    assert httpx.get(f"{first.url}/healthz", trust_env=False).status_code == 200


def test_cli_waits_for_a_daemon_that_holds_the_lock_but_does_not_answer(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_local_service(announce=False)
    os.kill(first.pid, signal.SIGSTOP)  # as under load: alive, holding the lock, /healthz silent
    try:
        with pytest.raises(PermanentError, match=r"serve\.lock\) did not become healthy"):
            ensure_local_service(announce=False, timeout=3)
        assert [p.pid for p in serve_processes(data_dir)] == [first.pid]  # no second daemon

        waiting = threading.Event()
        probe = _embedded.serve_lock_held

        def spy(path: Path) -> bool:
            held = probe(path)
            if held:
                waiting.set()
            return held

        monkeypatch.setattr(_embedded, "serve_lock_held", spy)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(ensure_local_service, announce=False, timeout=60)
            assert waiting.wait(60)  # the CLI found the lock held and waits for its holder
            os.kill(first.pid, signal.SIGCONT)
            joined = pending.result()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert (joined.pid, joined.url) == (first.pid, first.url)
    assert [p.pid for p in serve_processes(data_dir)] == [first.pid]
