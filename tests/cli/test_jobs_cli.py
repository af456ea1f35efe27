"""``run``/``poll``/``export --job-id`` and ``jobs ...`` against a real ``batchflow serve`` with
the built-in ``image-metadata`` workflow."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import anyio
import pytest
from PIL import Image

from batchflow.cli._embedded import ensure_local_service
from batchflow.client import BatchClient
from batchflow.config import ClientSettings
from tests.cli.conftest import api_args, invoke
from tests.cli.test_export_cli import stage
from tests.server_fixture import ServerHandle


def png(width: int, height: int, seed: int) -> bytes:
    img = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, 100))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_run_wait_then_export_gives_one_row_per_image(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    images = {f"set/{i // 3}/img_{i}.png": png(8 + i, 6 + i, i) for i in range(6)}
    stage(cli_server, batch_id, images)
    api = api_args(cli_server)
    job_id = "job-" + batch_id[-12:]

    ran = invoke("run", "--workflow-id", "image-metadata", "--batch-id", batch_id,
                 "--aggregation-format", "jsonl", "--job-id", job_id, "--wait",
                 "--poll-interval", "0.2", "--wait-timeout", "120", "--json", *api)  # fmt: skip
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    lines = ran.json_lines()
    assert lines[0] == {"event": "created", "jobId": job_id}
    final = lines[-1]
    assert final["state"] == "succeeded"
    assert final["outputBatches"]  # every stage and its output batches
    assert any(e.get("event") == "stage" for e in lines)

    again = invoke("run", "--workflow-id", "image-metadata", "--batch-id", batch_id,
                   "--aggregation-format", "jsonl", "--job-id", job_id, *api)  # fmt: skip
    assert again.exit_code == 0, again.stderr  # same id + same definition: a no-op
    assert again.stdout.strip() == job_id
    other = invoke("run", "--workflow-id", "image-metadata", "--batch-id", batch_id,
                   "--aggregation-format", "csv", "--job-id", job_id, *api)  # fmt: skip
    assert other.exit_code == 5  # same id, another definition: a conflict

    target = tmp_path / "results"
    exported = invoke("export", "--job-id", job_id, "--target-dir", str(target), "--extract",
                      "--json", *api)  # fmt: skip
    assert exported.exit_code == 0, exported.stdout + exported.stderr
    summary = exported.json_lines()[-1]
    assert summary["failed"] == 0
    assert summary["downloaded"] >= 1
    rows = [
        json.loads(line)
        for path in sorted(target.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    by_name = {row["file_name"]: row for row in rows}
    assert len(rows) == len(images) == len(by_name)
    for name, data in images.items():
        assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()

    # the inspection commands, JSON and text
    assert any(j["jobId"] == job_id for j in invoke("jobs", "list", "--json", *api).json_lines())
    shown = json.loads(invoke("jobs", "show", job_id, "--json", *api).stdout)
    assert shown["jobId"] == job_id
    assert shown["isTerminal"] is True
    stages = invoke("jobs", "stages", job_id, "--json", *api).json_lines()
    assert [s["processingStageId"] for s in stages] == ["processing", "export"]
    tasks = invoke("jobs", "tasks", job_id, "processing", "--json", *api).json_lines()
    assert tasks
    assert all(t["statusType"] == "succeeded" for t in tasks)
    logs = invoke("jobs", "logs", job_id, "--json", *api).json_lines()
    assert logs
    assert {entry["severity"] for entry in logs} <= {"info", "warning", "error"}
    polled = invoke("poll", job_id, *api)
    assert polled.exit_code == 0
    assert f"job {job_id} succeeded" in polled.stdout


def test_failed_job_exits_7_and_timeout_exits_8(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    files = {"good.png": png(5, 5, 1), "broken.png": b"\x89PNG\r\n\x1a\n not really an image"}
    stage(cli_server, batch_id, files)
    api = api_args(cli_server)
    job_id = "job-f" + batch_id[-11:]

    created = invoke("run", "--workflow-id", "image-metadata", "--batch-id", batch_id,
                     "--max-image-failure-rate", "0", "--job-id", job_id, *api)  # fmt: skip
    assert created.exit_code == 0, created.stderr
    timed_out = invoke("poll", job_id, "--timeout", "0.001", *api)
    assert timed_out.exit_code == 8
    assert "still running" in timed_out.stderr  # the deadline came before any answer

    polled = invoke("poll", job_id, "--interval", "0.2", "--timeout", "120", "--json", *api)
    assert polled.exit_code == 7, polled.stdout + polled.stderr
    assert polled.json_lines()[-1]["state"] == "failed"
    assert f"jobs logs {job_id}" in polled.stderr

    errors = invoke("jobs", "logs", job_id, "--severity", "error", "--json", *api).json_lines()
    assert errors
    assert all(entry["severity"] == "error" for entry in errors)

    restarted = invoke("jobs", "restart", job_id, "--max-image-failure-rate", "1", "--json", *api)
    assert restarted.exit_code == 0, restarted.stderr
    assert json.loads(restarted.stdout)["overrides"]["maxImageFailureRate"] == 1
    aborted = invoke("jobs", "abort", job_id, "--json", *api)
    assert aborted.exit_code == 0, aborted.stderr
    assert json.loads(aborted.stdout) == {"jobId": job_id, "aborted": True}


def test_env_vars_select_the_server_and_unknown_job_exits_3(
    cli_server: ServerHandle, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_BASE_URL", cli_server.base_url)
    monkeypatch.setenv("ROBOFLOW_API_KEY", cli_server.api_key)
    listed = invoke("jobs", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert "using the local" not in listed.stderr
    result = invoke("poll", "job-nosuchjob0000", "--timeout", "30")
    assert result.exit_code == 3
    assert "job-nosuchjob0000" in result.stderr
    assert not (data_dir / "server.json").exists()  # no local service was started


def test_embedded_service_runs_a_job_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    """No API URL anywhere: the CLI starts its local service, runs the job, exports results."""
    service = ensure_local_service(announce=False)
    images = {f"img_{i}.png": png(4 + i, 4, i) for i in range(3)}

    async def upload() -> None:
        settings = ClientSettings(service.url, service.api_key, key_in_header=True)
        async with BatchClient(settings) as client:
            for name, data in images.items():
                await client.upload_image("local-in", name, data)

    anyio.run(upload)
    ran = invoke("run", "--workflow-id", "image-metadata", "--batch-id", "local-in",
                 "--aggregation-format", "jsonl", "--wait", "--poll-interval", "0.2")  # fmt: skip
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    job_id = ran.stdout.splitlines()[0]
    assert job_id.startswith("job-")
    assert f"job {job_id} succeeded" in ran.stdout
    target = tmp_path / "embedded-out"
    exported = invoke("export", "--job-id", job_id, "--target-dir", str(target), "--extract")
    assert exported.exit_code == 0, exported.stdout + exported.stderr
    rows = [
        json.loads(line)
        for path in target.rglob("*.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    assert sorted(row["file_name"] for row in rows) == sorted(images)
