"""References JSONL ingests end to end, and resume after SIGKILL of a real CLI process."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchflow.cli._app import cli
from batchflow.ingest import IngestOptions, ingest
from batchflow.pipeline import Journal, journal_path
from tests.ingest.conftest import (
    FileServer,
    list_shards,
    settings_for,
    sha256,
    wait_staged,
)
from tests.server_fixture import ServerHandle

REPO = Path(__file__).resolve().parents[2]


def write_refs(
    server: FileServer, path: Path, count: int, prefix: str, seed: int = 11
) -> dict[str, bytes]:
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    lines = []
    for i in range(count):
        name = f"{prefix}/d{i % 4}/r{i:04d}.jpg"
        data = rng.randbytes(rng.randint(1, 300))
        lines.append(json.dumps({"name": name, "url": server.add(name, data)}))
        files[name] = data
    path.write_text("\n".join(lines) + "\n")
    return files


@pytest.mark.anyio
async def test_malformed_lines_are_reported_with_line_numbers_the_rest_staged(
    ingest_server: ServerHandle, file_server: FileServer, tmp_path: Path
) -> None:
    refs = tmp_path / "refs.jsonl"
    files = write_refs(file_server, refs, 40, "mal")
    lines = refs.read_text().splitlines()
    lines.insert(6, '{"name": "broken", "url": ')  # line 7
    lines.insert(11, '{"name": "no-url.jpg"}')  # line 12
    lines.insert(20, lines[0])  # a duplicate name in the same shard
    refs.write_text("\n".join(lines) + "\n")

    summary = await ingest(
        str(refs), IngestOptions(batch_id="refs-mal", shard_size=100),
        settings=settings_for(ingest_server),
    )  # fmt: skip
    assert summary.mode == "references"
    assert dict(summary.skipped_by_kind) == {"malformed-line": 2, "duplicate-file-name": 1}
    assert {r.item for r in summary.skipped_examples} >= {"line 7", "line 12"}
    assert summary.files_sent == 40
    staged = wait_staged(ingest_server, "refs-mal", 40)
    assert {str(f["fileName"]): f["sha256"] for f in staged} == {
        n: sha256(d) for n, d in files.items()
    }


def test_cli_reports_the_bad_line_and_exits_6(
    ingest_server: ServerHandle,
    file_server: FileServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refs = tmp_path / "refs.jsonl"
    write_refs(file_server, refs, 5, "cli6")
    refs.write_text(refs.read_text() + "not json\n")
    monkeypatch.setenv("API_BASE_URL", ingest_server.base_url)
    monkeypatch.setenv("BATCHFLOW_API_KEY", ingest_server.api_key)
    result = CliRunner().invoke(cli, ["ingest", str(refs), "--batch-id", "refs-cli6", "--json"])
    assert result.exit_code == 6, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    skipped = [e for e in events if e.get("event") == "skipped"]
    assert skipped == [
        {
            "event": "skipped",
            "item": "line 6",
            "type": "malformed-line",
            "reason": skipped[0]["reason"],
        }
    ]
    assert events[-1]["filesSent"] == 5
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 item(s) skipped")


def _acks(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out = set()
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "ack":
            out.add(record["key"])
    return out


def test_sigkill_mid_way_then_rerun_resumes_without_resending(
    ingest_server: ServerHandle, file_server: FileServer, tmp_path: Path, state_dir: Path
) -> None:
    refs = tmp_path / "resume.jsonl"
    files = write_refs(file_server, refs, 300, "res", seed=21)
    batch = "refs-resume"
    journal = journal_path(batch, os.path.abspath(refs), base=state_dir)
    env = {
        **os.environ,
        "API_BASE_URL": ingest_server.base_url,
        "BATCHFLOW_API_KEY": ingest_server.api_key,
        "BATCHFLOW_STATE_DIR": str(state_dir),
        "PYTHONPATH": str(REPO),
    }
    argv = [
        sys.executable, "-m", "batchflow", "ingest", str(refs), "--batch-id", batch,
        "--shard-size", "5", "--concurrency", "1", "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 60
        while len(_acks(journal)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    before = _acks(journal)
    assert 3 <= len(before) < 60

    # concurrency is not part of the plan: the re-run may go faster
    argv[argv.index("--concurrency") + 1] = "4"
    rerun = subprocess.run(
        argv, env=env, capture_output=True, timeout=120, cwd=tmp_path, check=False
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    events = [json.loads(line) for line in rerun.stdout.decode().splitlines()]
    summary = events[-1]
    shard_events = [e for e in events if e.get("event") == "shard"]
    resent = {e["ingestId"] for e in shard_events if e["status"] in ("sent", "duplicated")}
    resumed = {e["ingestId"] for e in shard_events if e["status"] == "resumed"}
    assert resumed == before  # every acknowledged shard skipped...
    assert not resent & before  # ...and none of them sent again
    assert summary["shards"]["total"] == 60
    assert summary["shards"]["sent"] + summary["shards"]["resumed"] == 60
    assert summary["shards"]["duplicated"] <= 1  # at most the one in flight at the kill
    assert summary["shards"]["failed"] == 0
    assert _acks(journal) == set(summary["ingestIds"])

    staged = wait_staged(ingest_server, batch, 300)
    names = [str(f["fileName"]) for f in staged]
    assert len(names) == len(set(names)) == 300  # nothing lost, nothing twice
    assert {n: f["sha256"] for n, f in zip(names, staged, strict=True)} == {
        n: sha256(d) for n, d in files.items()
    }
    server_ids = {s["statusMetadata"]["ingestId"] for s in list_shards(ingest_server, batch)}  # type: ignore[index]
    assert server_ids == set(summary["ingestIds"])


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(
    ingest_server: ServerHandle, file_server: FileServer, tmp_path: Path, state_dir: Path
) -> None:
    refs = tmp_path / "int.jsonl"
    write_refs(file_server, refs, 200, "int", seed=5)
    journal = journal_path("refs-int", os.path.abspath(refs), base=state_dir)
    env = {
        **os.environ,
        "API_BASE_URL": ingest_server.base_url,
        "BATCHFLOW_API_KEY": ingest_server.api_key,
        "BATCHFLOW_STATE_DIR": str(state_dir),
        "PYTHONPATH": str(REPO),
    }
    argv = [
        sys.executable, "-m", "batchflow", "ingest", str(refs), "--batch-id", "refs-int",
        "--shard-size", "2", "--concurrency", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _acks(journal) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert "re-run the same command to resume" in err.decode()
    assert "Traceback" not in err.decode()
    acked = _acks(journal)
    assert 1 <= len(acked) < 100
    with Journal.open(journal) as reopened:  # consistent: every line whole
        assert reopened.acked == acked
        assert not reopened.dropped_torn_line
