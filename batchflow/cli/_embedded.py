"""The embedded default: a local ``batchflow serve`` daemon the CLI starts (or reuses) on demand.

With no API URL configured, commands talk to a daemon that keeps its data in the user's data
dir (``$BATCHFLOW_DATA_DIR``, else ``$XDG_DATA_HOME/batchflow/service``, else
``~/.local/share/batchflow/service``). Files there:

- ``service.lock``: ``flock``-ed while a CLI checks for or starts the daemon, so two concurrent
  CLIs never start two daemons;
- ``serve.lock``: ``flock``-ed by the daemon for its whole life (see ``_serve_lock``): a CLI that
  finds it held while ``/healthz`` does not answer waits for that daemon (it is starting, or busy)
  instead of starting another;
- ``api_key`` (mode 0600): the generated key; handed to the daemon through the environment
  (``BATCHFLOW_API_KEYS``), never on its command line, where ``ps`` would show it;
- ``server.json``: written by ``batchflow serve`` once it listens (``url``, ``pid``, ``workspace``);
- ``service.log``: the daemon's stdout and stderr.

The daemon is reused while its pid is alive and ``GET /healthz`` answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from batchflow.cli._serve_lock import LOCK_NAME, serve_lock_held
from batchflow.errors import BatchflowError, ConfigError, ConflictError, PermanentError
from batchflow.httperrors import translate_httpx

__all__ = [
    "LocalService",
    "ServiceStatus",
    "ensure_local_service",
    "service_data_dir",
    "service_status",
    "stop_local_service",
    "tail_log",
]

WORKSPACE = "local"
START_TIMEOUT = 60.0
LOCK_TIMEOUT = 120.0
_announced: set[str] = set()


@dataclass(frozen=True, slots=True)
class LocalService:
    """A running local service and how to reach it."""

    url: str
    api_key: str
    data_dir: Path
    pid: int
    workspace: str


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What ``batchflow service status`` shows."""

    data_dir: Path
    up: bool
    url: str | None
    pid: int | None
    workspace: str | None
    log_file: Path


def service_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the local service keeps its data (see the module docstring)."""
    env = os.environ if env is None else env
    explicit = env.get("BATCHFLOW_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(base).expanduser() / "batchflow" / "service").resolve()


def _paths(data_dir: Path) -> tuple[Path, Path, Path, Path]:
    return (
        data_dir / "server.json",
        data_dir / "service.lock",
        data_dir / "api_key",
        data_dir / "service.log",
    )


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_serve_process(pid: int) -> bool:
    """Best effort check that ``pid`` is a ``batchflow serve`` (guards against pid reuse)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists() and _pid_alive(pid)
    except OSError:
        return False
    return b"batchflow" in args and b"serve" in args


def _read_info(data_dir: Path) -> dict[str, object] | None:
    try:
        info = json.loads(_paths(data_dir)[0].read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _healthy(url: str) -> bool:
    try:
        with translate_httpx("health check"):
            response = httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False)
    except BatchflowError:
        return False
    return response.status_code == 200


def _running(data_dir: Path) -> tuple[str, int, str] | None:
    """(url, pid, workspace) of a live, healthy daemon for ``data_dir``."""
    info = _read_info(data_dir)
    if info is None:
        return None
    url, pid, workspace = info.get("url"), info.get("pid"), info.get("workspace")
    if not isinstance(url, str) or not isinstance(pid, int):
        return None
    if not _pid_alive(pid) or not _healthy(url):
        return None
    return url, pid, str(workspace or WORKSPACE)


@contextlib.contextmanager
def _locked(lock_path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (bounded wait)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PermanentError(
                        f"another batchflow command holds {lock_path} for over {timeout:.0f}s"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def tail_log(data_dir: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the daemon log ('' when there is none)."""
    try:
        text = _paths(data_dir)[3].read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def _spawn(data_dir: Path, api_key: str) -> subprocess.Popen[bytes]:
    info, _, _, log_path = _paths(data_dir)
    info.unlink(missing_ok=True)  # stale: the daemon that wrote it is gone
    env = {**os.environ, "BATCHFLOW_API_KEYS": api_key}
    for name in ("BATCHFLOW_API_URL", "API_BASE_URL"):
        env.pop(name, None)
    argv = [
        sys.executable, "-m", "batchflow", "serve",
        "--host", "127.0.0.1", "--port", "0",
        "--data-dir", str(data_dir),
        "--workspace", WORKSPACE,
        "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        log.write(
            f"--- starting batchflow serve at {time.strftime('%FT%TZ', time.gmtime())}\n".encode()
        )
        log.flush()
        return subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
            start_new_session=True,
            close_fds=True,
        )


def _wait_ready(
    data_dir: Path, proc: subprocess.Popen[bytes], timeout: float
) -> tuple[str, int, str]:
    log_path = _paths(data_dir)[3]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == ConflictError.exit_code and serve_lock_held(data_dir):
                return _wait_for_holder(data_dir, deadline)  # another serve got there first
            raise PermanentError(
                f"the local batchflow service exited during start-up (code {proc.returncode}); "
                f"see {log_path}:\n{tail_log(data_dir, 15)}"
            )
        info = _read_info(data_dir)
        if info is not None and info.get("pid") == proc.pid:
            running = _running(data_dir)
            if running is not None:
                return running
        time.sleep(0.05)
    raise PermanentError(
        f"the local batchflow service did not become healthy within {timeout:.0f}s; see {log_path}"
    )


def _wait_for_holder(data_dir: Path, deadline: float) -> tuple[str, int, str]:
    """Wait for the serve that holds the data dir's lock (starting, or too busy for /healthz)."""
    log_path = _paths(data_dir)[3]
    while time.monotonic() < deadline:
        running = _running(data_dir)
        if running is not None:
            return running
        if not serve_lock_held(data_dir):
            raise PermanentError(
                f"the local batchflow service exited during start-up; see {log_path}:\n"
                f"{tail_log(data_dir, 15)}"
            )
        time.sleep(0.05)
    raise PermanentError(
        f"the local batchflow service (it holds {data_dir / LOCK_NAME}) did not become healthy "
        f"in time; see {log_path}"
    )


def ensure_local_service(
    data_dir: Path | None = None, *, timeout: float | None = None, announce: bool = True
) -> LocalService:
    """Reuse the local daemon if it runs, else start it and wait until it is healthy."""
    data_dir = data_dir or service_data_dir()
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"can not create the service data dir {data_dir}: {exc}") from exc
    _, lock_path, key_path, _ = _paths(data_dir)
    from batchflow.server.core.settings import read_or_create_secret

    if timeout is None:
        timeout = float(os.environ.get("BATCHFLOW_SERVICE_START_TIMEOUT") or START_TIMEOUT)
    with _locked(lock_path):
        api_key = read_or_create_secret(key_path, prefix="bf_")
        os.chmod(key_path, 0o600)
        running = _running(data_dir)
        if running is None and serve_lock_held(data_dir):
            # a daemon holds the data dir but does not answer yet: wait for it, never start a
            # second one (it would exit 5 on the lock anyway)
            running = _wait_for_holder(data_dir, time.monotonic() + timeout)
        if running is None:
            proc = _spawn(data_dir, api_key)
            try:
                running = _wait_ready(data_dir, proc, timeout)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                raise
    url, pid, workspace = running
    if announce and url not in _announced:
        _announced.add(url)
        click.echo(f"using the local batchflow service at {url} (data: {data_dir})", err=True)
    return LocalService(url=url, api_key=api_key, data_dir=data_dir, pid=pid, workspace=workspace)


def service_status(data_dir: Path | None = None) -> ServiceStatus:
    """Whether the local daemon for ``data_dir`` runs (never starts it)."""
    data_dir = data_dir or service_data_dir()
    log_path = _paths(data_dir)[3]
    running = _running(data_dir)
    if running is None:
        return ServiceStatus(data_dir, False, None, None, None, log_path)
    url, pid, workspace = running
    return ServiceStatus(data_dir, True, url, pid, workspace, log_path)


def stop_local_service(data_dir: Path | None = None, *, timeout: float = 15.0) -> int | None:
    """SIGTERM the daemon, wait for it (SIGKILL after ``timeout``); return its pid or None."""
    data_dir = data_dir or service_data_dir()
    info_path, lock_path, _, _ = _paths(data_dir)
    if not data_dir.exists():
        return None
    with _locked(lock_path):
        info = _read_info(data_dir)
        pid = info.get("pid") if info else None
        if not isinstance(pid, int) or not _pid_alive(pid) or not _is_serve_process(pid):
            info_path.unlink(missing_ok=True)
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # leftovers of its session (job worker processes)
        info_path.unlink(missing_ok=True)
        return pid
