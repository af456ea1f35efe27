"""SIGKILL the ``batchflow ingest`` / ``batchflow export`` client at random points, re-run.

Kill points are random but tied to progress: the client is killed once the upstream has seen a
random number of new uploads (or downloads) since it started, so every kill lands mid-run. The
proxy records what reached the server, which is the evidence: after each kill, no shard the
journal had acknowledged is sent again, and no file already complete on disk is fetched again.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faultproxy import FaultRates
from tests.reliability._support import (
    Proxied,
    Sizes,
    cli,
    finish,
    list_files,
    report,
    sha256,
    wait_settled,
)

pytestmark = pytest.mark.timeout(900)


@dataclass
class Recorder:
    """What crossed the proxy to the server: (method, path, body), in order."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, method: str, path: str, body: bytes) -> None:
        with self.lock:
            self.seen.append((method, path, body))

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def since(self, start: int) -> list[tuple[str, str, bytes]]:
        with self.lock:
            return self.seen[start:]


def tar_ingest_id(body: bytes) -> str | None:
    """The ingestId in a bulk tar's ``notification_config.json`` (None if unreadable)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            member = tar.extractfile("notification_config.json")
            return None if member is None else str(json.load(member)["ingestId"])
    except (tarfile.TarError, KeyError, ValueError):
        return None


def kill_after(
    proc: subprocess.Popen[bytes], progress: Callable[[], int], target: int, timeout: float
) -> bool:
    """SIGKILL ``proc`` once ``progress()`` reaches ``target``; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if progress() >= target:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
            return True
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
        raise AssertionError("the client neither progressed nor finished in time")
    return False


def journal_acks(state: Path) -> set[str]:
    acked: set[str] = set()
    for path in (state / "ingests").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if record.get("kind") == "ack":
                acked.add(record["key"])
    return acked


def make_folder(root: Path, n: int, size: int = 2048) -> dict[str, str]:
    expected = {}
    for i in range(n):
        name = f"f{i % 5}/img-{i:05d}.jpg"
        data = b"\xff\xd8\xff\xe0" + os.urandom(size)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = sha256(data)
    return expected


def test_sigkill_ingest_client_resumes_without_resending(
    proxied_factory: Callable[..., Proxied], sizes: Sizes, tmp_path: Path, state_dir: Path
) -> None:
    recorder = Recorder()
    proxied = proxied_factory(FaultRates(), 0, on_forward=recorder)
    n_files = sizes.crash_points * 40
    folder = tmp_path / "photos"
    expected = make_folder(folder, n_files)
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    argv = ("ingest", str(folder), "--batch-id", "crash-ingest", "--tar-size", "5",
            "--concurrency", "2", "--api-url", proxied.url, "--api-key", proxied.server.api_key,
            "--json")  # fmt: skip
    rng = random.Random(2026)

    def uploads(start: int) -> Callable[[], int]:
        return lambda: sum(1 for m, p, _ in recorder.since(start) if m == "PUT")

    kills = 0
    resent_acked: list[str] = []
    sent: Counter[str] = Counter()
    for _ in range(sizes.crash_points):
        acked_before = journal_acks(state_dir)
        start = recorder.mark()
        proc = cli(*argv, env=env)
        killed = kill_after(proc, uploads(start), rng.randint(1, 4), timeout=120)
        ids = [tar_ingest_id(b) for m, _, b in recorder.since(start) if m == "PUT"]
        sent.update(i for i in ids if i)
        resent_acked += [i for i in ids if i in acked_before]
        if not killed:
            break
        kills += 1
    acked_before = journal_acks(state_dir)
    start = recorder.mark()
    code, out, err = finish(cli(*argv, env=env))
    assert code == 0, err
    assert "Traceback" not in err
    ids = [tar_ingest_id(b) for m, _, b in recorder.since(start) if m == "PUT"]
    sent.update(i for i in ids if i)
    resent_acked += [i for i in ids if i in acked_before]

    assert kills >= min(2, sizes.crash_points), "the kills never landed mid-run"
    assert not resent_acked, f"acknowledged shards sent again: {resent_acked}"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["shards"]["resumed"] >= 1, summary["shards"]
    staged = wait_settled(proxied.server, "crash-ingest", n_files, 120.0)
    assert staged == n_files
    files = list_files(proxied.server, "crash-ingest")
    names = Counter(f["fileName"] for f in files)
    assert max(names.values()) == 1, "a file staged twice"
    assert {f["fileName"]: f["sha256"] for f in files} == expected
    report("ingest client SIGKILL", {"kills": kills, "files": n_files,
           "shards": n_files // 5, "uploads": sum(sent.values()),
           "unacked_resent": sum(v - 1 for v in sent.values() if v > 1)})  # fmt: skip


def test_sigkill_export_client_resumes_without_refetching(
    proxied_factory: Callable[..., Proxied], sizes: Sizes, tmp_path: Path, state_dir: Path
) -> None:
    recorder = Recorder()
    proxied = proxied_factory(FaultRates(), 0, on_forward=recorder)
    n_files = sizes.export_files
    folder = tmp_path / "photos"
    expected = make_folder(folder, n_files, size=256 * 1024)
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    code, _, err = finish(cli("ingest", str(folder), "--batch-id", "crash-export",
                              "--api-url", proxied.server.base_url,
                              "--api-key", proxied.server.api_key, env=env))  # fmt: skip
    assert code == 0, err
    assert wait_settled(proxied.server, "crash-export", n_files, 120.0) == n_files
    listing = list_files(proxied.server, "crash-export")
    blob_name = {
        "/" + str(f["downloadURL"]).split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]: str(
            f["fileName"]
        )
        for f in listing
    }
    target = tmp_path / "out"
    root = target / "crash-export"
    argv = ("export", "--batch-id", "crash-export", "--target-dir", str(target),
            "--concurrency", "4", "--api-url", proxied.url,
            "--api-key", proxied.server.api_key, "--json")  # fmt: skip
    rng = random.Random(7)

    def complete_files() -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                and not p.name.endswith(".part")} if root.exists() else set()  # fmt: skip

    def downloads(start: int) -> Callable[[], int]:
        return lambda: sum(1 for m, p, _ in recorder.since(start) if p.startswith("/blobs/"))

    kills = 0
    refetched: list[str] = []
    fetched: Counter[str] = Counter()
    per_run = max(n_files // (sizes.crash_points + 2), 2)
    for _ in range(sizes.crash_points):
        done_before = complete_files()
        start = recorder.mark()
        killed = kill_after(cli(*argv, env=env), downloads(start),
                            rng.randint(1, per_run), timeout=120)  # fmt: skip
        names = [blob_name[p] for m, p, _ in recorder.since(start) if p in blob_name]
        fetched.update(names)
        refetched += [name for name in names if name in done_before]
        if not killed:
            break
        kills += 1
    done_before = complete_files()
    start = recorder.mark()
    code, _, err = finish(cli(*argv, env=env))
    assert code == 0, err
    assert "Traceback" not in err
    names = [blob_name[p] for m, p, _ in recorder.since(start) if p in blob_name]
    fetched.update(names)
    refetched += [name for name in names if name in done_before]

    assert kills >= min(2, sizes.crash_points)
    assert not refetched, f"complete files fetched again: {refetched}"
    on_disk = {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}
    assert not [n for n in on_disk if n.endswith(".part")], "partial files left behind"
    assert {name: sha256(p.read_bytes()) for name, p in on_disk.items()} == expected
    report("export client SIGKILL", {"kills": kills, "files": n_files,
           "downloads": sum(fetched.values()),
           "partial_refetched": sum(v - 1 for v in fetched.values() if v > 1)})  # fmt: skip
