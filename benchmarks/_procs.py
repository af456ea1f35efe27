"""Processes for the workloads: moto, ``batchflow serve``, the sink, and measured child commands.

Long-running servers reuse :class:`tests._procs.ManagedProcess` (own process group, free port,
stopped by pid). A measured command runs in its own process group under a tiny wrapper that
reaps it with ``os.wait4``, whose rusage gives the peak RSS of that command (and of its reaped
descendants) without polling.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests._procs import ManagedProcess, free_port, wait_http

__all__ = [
    "Measured",
    "Moto",
    "Serve",
    "free_port",
    "moto",
    "rss_floor",
    "run_measured",
    "serve",
    "sink",
]

PY = sys.executable
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Measured:
    """One finished command: wall seconds, peak RSS (bytes), exit code, output tail, CPU s."""

    argv: tuple[str, ...]
    wall: float
    peak_rss: int
    returncode: int
    tail: str
    cpu: float = 0.0
    """User + system CPU seconds of the command and its reaped descendants."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> dict[str, Any]:
        return {"exitCode": self.returncode, "argv": list(self.argv), "lastLines": self.tail}


# A small wrapper forks the measured command and reports its rusage. It matters: on Linux a
# child's ru_maxrss starts at the RSS of the process it was forked from (the copied or shared
# address space at exec), so a command spawned straight from a harness holding 170 MiB would
# report at least 170 MiB. Forked from this ~10 MiB interpreter, the floor is ~10 MiB
# (``rss_floor`` measures it).
_WRAPPER = """
import json, os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"maxrss": ru.ru_maxrss, "cpu": ru.ru_utime + ru.ru_stime}, f)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
    tail_lines: int = 15,
    log: Path | None = None,
) -> Measured:
    """Run ``argv`` to completion: wall time, and peak RSS + CPU from ``wait4`` in a wrapper.

    Output goes to ``log`` (or a temp file); the last ``tail_lines`` lines are kept. On timeout
    the process group is killed and the exit code is -9.
    """
    import json
    import tempfile

    full_env = {**os.environ, **(env or {})}
    with contextlib.ExitStack() as stack:
        if log is None:
            out = stack.enter_context(tempfile.TemporaryFile())
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("w+b"))
        usage_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        usage_file = usage_dir / "rusage.json"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [PY, "-S", "-c", _WRAPPER, str(usage_file), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _killpg, (proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        except BaseException:  # interrupted harness: never leave the command running
            _killpg(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
        out.seek(0)
        text = out.read().decode(errors="replace")
    tail = "\n".join(text.splitlines()[-tail_lines:])
    peak = int(usage.get("maxrss", 0)) * 1024
    return Measured(tuple(argv), wall, peak, proc.returncode, tail, float(usage.get("cpu", 0.0)))


def rss_floor() -> float:
    """MiB: the peak RSS that ``run_measured`` reports for ``true`` (the wrapper's floor)."""
    return run_measured(["true"]).peak_rss / 2**20


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------- moto


@dataclass(frozen=True, slots=True)
class Moto:
    """A moto S3 server and the environment a child needs to reach it."""

    endpoint: str
    region: str = "us-east-1"
    access_key: str = "bench-key"
    secret_key: str = "bench-secret"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, pool: int = 16) -> Any:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                max_pool_connections=pool,
            ),
        )

    def seed(self, bucket: str, keys: Sequence[str], body: bytes | Sequence[bytes]) -> None:
        """Create ``bucket`` and put ``keys`` with 16 threads (not measured)."""
        from concurrent.futures import ThreadPoolExecutor

        client = self.client()
        client.create_bucket(Bucket=bucket)
        bodies = [body] * len(keys) if isinstance(body, bytes) else list(body)

        def put(i: int) -> None:
            client.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i])

        with ThreadPoolExecutor(max_workers=16) as pool:
            for _ in pool.map(put, range(len(keys))):
                pass


@contextlib.contextmanager
def moto(scratch: Path) -> Iterator[Moto]:
    port = free_port()
    proc = ManagedProcess([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                          log_path=scratch / "moto.log")  # fmt: skip
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, alive=proc.alive)
        yield Moto(endpoint=f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


# ------------------------------------------------------------------------- batchflow serve


@dataclass
class Serve:
    """A ``batchflow serve`` process."""

    data_dir: Path
    api_key: str = field(default_factory=lambda: "bench-" + secrets.token_hex(8))
    workspace: str = "bench"
    port: int = 0
    proc: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ds(self) -> str:
        return f"{self.base_url}/data-staging/v1/external/{self.workspace}"

    @property
    def env(self) -> dict[str, str]:
        """Both clients' variables (batchflow's and the reference client's)."""
        return {
            "API_BASE_URL": self.base_url,
            "BATCHFLOW_API_URL": self.base_url,
            "ROBOFLOW_API_KEY": self.api_key,
            "BATCHFLOW_API_KEY": self.api_key,
        }

    def http(self) -> httpx.Client:
        return httpx.Client(
            headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60, trust_env=False
        )

    def count(self, batch_id: str) -> int:
        with self.http() as client:
            resp = client.get(f"{self.ds}/batches/{batch_id}/count")
            if resp.status_code == 404:
                return 0
            resp.raise_for_status()
            return int(resp.json()["count"])

    def wait_count(
        self, batch_id: str, n: int, *, timeout: float, poll: float = 0.25
    ) -> tuple[float, int]:
        """(perf_counter time, count) when ``count >= n`` was first seen, or at ``timeout``."""
        deadline = time.perf_counter() + timeout
        count = 0
        with self.http() as client:
            while True:
                resp = client.get(f"{self.ds}/batches/{batch_id}/count")
                if resp.status_code == 200:
                    count = int(resp.json()["count"])
                now = time.perf_counter()
                if count >= n or now > deadline:
                    return now, count
                if self.proc is not None and not self.proc.alive():
                    raise RuntimeError("the server exited:\n" + self.proc.log_tail())
                time.sleep(poll)

    def accepted(self, batch_id: str) -> int:
        """Objects in the batch's shards (known at acceptance for references, after a tar's
        extraction for tars): what a client got the server to take, staged or not yet."""
        total, token = 0, None
        with self.http() as client:
            for _ in range(10_000):
                params = {"pageSize": 1000, **({"nextPageToken": token} if token else {})}
                resp = client.get(f"{self.ds}/batches/{batch_id}/shards", params=params)
                if resp.status_code == 404:
                    return 0
                resp.raise_for_status()
                body = resp.json()
                total += sum(int(s.get("shardObjectsCount") or 0) for s in body["shards"])
                token = body.get("nextPageToken")
                if not token:
                    break
        return total

    def wait_accepted(self, batch_id: str, n: int, *, timeout: float) -> int:
        deadline = time.perf_counter() + timeout
        while True:
            got = max(self.accepted(batch_id), self.count(batch_id))
            if got >= n or time.perf_counter() > deadline:
                return got
            time.sleep(0.25)

    def log_tail(self, lines: int = 30) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else ""


@contextlib.contextmanager
def serve(scratch: Path, *extra: str, name: str = "serve") -> Iterator[Serve]:
    """A fresh server (own data dir) allowed to fetch from 127.0.0.1."""
    data = scratch / f"{name}-{secrets.token_hex(4)}"
    handle = Serve(data_dir=data, port=free_port())
    argv = [
        PY, "-m", "batchflow", "serve", "--port", str(handle.port), "--data-dir", str(data),
        "--api-key", handle.api_key, "--workspace", handle.workspace,
        "--allow-url", "127.0.0.1", "--log-level", "warning", *extra,
    ]  # fmt: skip
    handle.proc = ManagedProcess(argv, log_path=scratch / f"{data.name}.log")
    handle.proc.start()
    try:
        wait_http(f"{handle.base_url}/healthz", timeout=60, alive=handle.proc.alive)
        yield handle
    finally:
        handle.proc.stop()
        shutil.rmtree(data, ignore_errors=True)  # catalog + blobs: tens of MB per server


# ------------------------------------------------------------------------------------ sink


@contextlib.contextmanager
def sink(scratch: Path) -> Iterator[str]:
    """The reference-ingest sink (``benchmarks._sink``) in its own process; yields its URL."""
    port = free_port()
    proc = ManagedProcess([PY, "-m", "benchmarks._sink", "--port", str(port)],
                          log_path=scratch / "sink.log", cwd=REPO)  # fmt: skip
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/stats", timeout=30, alive=proc.alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def rclone_s3(scratch: Path, data: Path) -> Iterator[Moto]:
    """``rclone serve s3 DATA`` (top-level folders are buckets); checks SigV4 signatures."""
    binary = shutil.which("rclone") or str(BIN / "rclone")
    port = free_port()
    store = Moto(endpoint=f"http://127.0.0.1:{port}", access_key="BENCHKEY",
                 secret_key="bench/secret")  # fmt: skip
    proc = ManagedProcess(
        [binary, "serve", "s3", str(data), "--addr", f"127.0.0.1:{port}",
         "--auth-key", f"{store.access_key},{store.secret_key}",
         "--config", str(scratch / "rclone.conf")],
        log_path=scratch / "rclone.log",
    )  # fmt: skip
    proc.start()
    try:
        wait_http(f"{store.endpoint}/", timeout=60, alive=proc.alive)
        yield store
    finally:
        proc.stop()
