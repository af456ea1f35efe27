"""The unchanged reference client (``inference-cli``) in its own venv, and a server for it.

The venv is built once under ``.cache/refclient-venv`` in the repository (or
``$BATCHFLOW_REFCLIENT_VENV``) and reused by later sessions; installing needs PyPI (~1-3 min).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server_fixture import ServerHandle

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("BATCHFLOW_REFCLIENT_VENV", REPO / ".cache" / "refclient-venv"))
REQUIREMENT = os.environ.get("BATCHFLOW_REFCLIENT_REQUIREMENT", "inference-cli==1.8.3")
CLI_TIMEOUT = 90


def _ensure_refclient() -> Path:
    exe = VENV / "bin" / "inference"
    marker = VENV / ".batchflow-installed"
    if exe.exists() and marker.exists() and marker.read_text().strip() == REQUIREMENT:
        return exe
    VENV.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:  # several times faster than pip for this dependency tree
        venv = [uv, "venv", "-q", "--clear", "--python", sys.executable, str(VENV)]
        subprocess.run(venv, check=True, timeout=300)
        install = [uv, "pip", "install", "-q", "--python", str(VENV / "bin" / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True,
                       timeout=300)  # fmt: skip
        install = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*install, REQUIREMENT], check=True, timeout=900)
    marker.write_text(REQUIREMENT + "\n")
    return exe


@dataclass(frozen=True)
class RefClient:
    """Runs ``inference rf-cloud ...`` against one server."""

    exe: Path
    server: ServerHandle

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "API_BASE_URL": self.server.base_url,
            "ROBOFLOW_API_KEY": self.server.api_key,
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [str(self.exe), "rf-cloud", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str, cwd: Path | None = None) -> str:
        """Run a command that must exit 0; its stdout."""
        done = self.run(*args, cwd=cwd)
        assert done.returncode == 0, (
            f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout


@pytest.fixture(scope="session")
def refclient_exe() -> Path:
    return _ensure_refclient()


@pytest.fixture(scope="session")
def compat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp("compat") / "data",
        extra_args=("--allow-url", "127.0.0.1", "--job-workers", "2"),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def ref(refclient_exe: Path, compat_server: ServerHandle) -> RefClient:
    return RefClient(refclient_exe, compat_server)
