"""The unchanged ``inference rf-cloud`` client against ``batchflow serve`` (real subprocesses)."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import httpx

from batchflow.samples import make_image_bytes, make_video
from tests.server._helpers import image_bytes, run_origin
from tests.server_jobs._helpers import (
    bp,
    download_files,
    get_job,
    result_rows,
    stages,
    wait_count,
    wait_terminal,
)

from .conftest import RefClient


def _id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_data_staging_commands(ref: RefClient, tmp_path: Path) -> None:
    server = ref.server
    images = tmp_path / "images"
    images.mkdir()
    inputs = {f"ref-{i}.jpg": make_image_bytes(i) for i in range(3)}
    for name, data in inputs.items():
        (images / name).write_bytes(data)
    local_batch, refs_batch = _id("cli-local"), _id("cli-refs")

    ref.ok("data-staging", "create-batch-of-images", "--images-dir", str(images),
           "--batch-id", local_batch)  # fmt: skip
    with server.client() as client, run_origin() as origin:
        wait_count(client, server, local_batch, 3)
        references = tmp_path / "refs.jsonl"
        names = [f"o-{i}.jpg" for i in range(2)]
        references.write_text(
            "".join(json.dumps({"name": n, "url": origin.url(f"/img/{n}")}) + "\n" for n in names)
        )
        ref.ok("data-staging", "create-batch-of-images", "--data-source", "references-file",
               "--references", str(references), "--batch-id", refs_batch)  # fmt: skip
        wait_count(client, server, refs_batch, 2)
        fetched = download_files(client, server, refs_batch)
        assert fetched == {n: image_bytes(n) for n in names}

        listing = ref.ok("data-staging", "list-batches")
        assert local_batch in listing
        assert refs_batch in listing
        details = ref.ok("data-staging", "show-batch-details", "--batch-id", local_batch)
        assert "simple-batch" in details
        assert "3" in details
        content = tmp_path / "content.jsonl"
        ref.ok("data-staging", "list-batch-content", "--batch-id", local_batch,
               "--output-file", str(content))  # fmt: skip
        listed = [json.loads(line) for line in content.read_text().splitlines() if line.strip()]
        assert sorted(e.get("file_name", e.get("fileName")) for e in listed) == sorted(inputs)
        ingest = ref.ok("data-staging", "list-ingest-details", "--batch-id", refs_batch)
        assert "completed" in ingest

    target = tmp_path / "export"
    ref.ok("data-staging", "export-batch", "--batch-id", local_batch, "--target-dir", str(target))
    exported = {p.name: p.read_bytes() for p in target.iterdir() if p.suffix == ".jpg"}
    assert exported == inputs


def test_batch_processing_commands(ref: RefClient, tmp_path: Path) -> None:
    server = ref.server
    images = tmp_path / "images"
    images.mkdir()
    inputs = {f"job-{i}.jpg": make_image_bytes(10 + i) for i in range(4)}
    for name, data in inputs.items():
        (images / name).write_bytes(data)
    batch, job_id = _id("cli-job"), _id("job")
    ref.ok("data-staging", "create-batch-of-images", "--images-dir", str(images),
           "--batch-id", batch)  # fmt: skip
    with server.client() as client:
        wait_count(client, server, batch, 4)
        out = ref.ok(
            "batch-processing", "process-images-with-workflow",
            "--workflow-id", "image-metadata", "--batch-id", batch, "--job-id", job_id,
            "--machine-type", "cpu", "--workers-per-machine", "2", "--max-parallel-tasks", "2",
            "--aggregation-format", "jsonl", "--job-name", "compat run",
        )  # fmt: skip
        assert job_id in out
        job = wait_terminal(client, server, job_id)
        assert job["error"] is False
        assert job["name"] == "compat run"
        definition = job["jobDefinition"]
        assert definition["processingSpecification"]["workflowId"] == "image-metadata"

        assert job_id in ref.ok("batch-processing", "list-jobs")
        details = ref.ok("batch-processing", "show-job-details", "--job-id", job_id)
        assert "processing" in details
        assert "export" in details
        logs_file = tmp_path / "logs.jsonl"
        ref.ok(
            "batch-processing", "fetch-logs", "--job-id", job_id, "--output-file", str(logs_file)
        )
        log_types = {json.loads(line)["log_type"] for line in logs_file.read_text().splitlines()}
        assert "job-completed" in log_types

        # export the processing results with the reference client's own exporter
        found = stages(client, server, job_id)
        [export_batch] = found["export"]["outputBatches"]
        target = tmp_path / "results"
        ref.ok("data-staging", "export-batch", "--batch-id", export_batch,
               "--target-dir", str(target))  # fmt: skip
        files = {p.name: p.read_bytes() for p in target.rglob("0*.jsonl")}
        rows = result_rows(files)
        assert sorted(row["file_name"] for row in rows) == sorted(inputs)
        for row in rows:
            assert row["sha256"] == hashlib.sha256(inputs[row["file_name"]]).hexdigest()
        [processing_batch] = found["processing"]["outputBatches"]
        assert files == download_files(client, server, processing_batch)
        multipart = ref.ok("data-staging", "show-batch-details", "--batch-id", processing_batch)
        assert "multipart-batch" in multipart
        assert "results" in multipart
        content = tmp_path / "content.jsonl"
        ref.ok("data-staging", "list-batch-content", "--batch-id", processing_batch,
               "--output-file", str(content))  # fmt: skip
        listed = [json.loads(line) for line in content.read_text().splitlines() if line.strip()]
        assert sorted(e.get("file_name", e.get("fileName")) for e in listed) == sorted(files)

        # restart a terminal job with overrides, then abort it
        ref.ok("batch-processing", "restart-job", "--job-id", job_id, "--max-parallel-tasks", "1",
               "--max-runtime-seconds", "600")  # fmt: skip
        restarted = get_job(client, server, job_id)
        assert restarted["restartParametersOverride"] == [
            {"type": "parameters-override-v1", "maxParallelTasks": 1,
             "processingTimeoutSeconds": 600.0},
        ]  # fmt: skip
        ref.ok("batch-processing", "abort-job", "--job-id", job_id)
        assert get_job(client, server, job_id)["isTerminal"] is True
        response = httpx.get(f"{bp(server)}/jobs/{job_id}", params={"api_key": server.api_key})
        assert response.status_code == 200

    # an unsupported job type is refused with a clear message, and the CLI reports it
    refused = ref.run("batch-processing", "trt-compile", "--model-id", "proj/1",
                      "--device", "nvidia-t4", "--job-id", _id("trt"))  # fmt: skip
    assert refused.returncode == 1
    assert "trt-compilation-v1" in refused.stdout + refused.stderr


def test_videos_and_sharded_image_ingest(ref: RefClient, tmp_path: Path) -> None:
    server = ref.server
    videos = tmp_path / "videos"
    make_video(videos / "clip.mp4", seconds=2.0, fps=10)
    images = tmp_path / "many"
    images.mkdir()
    inputs = {f"m-{i:02d}.jpg": make_image_bytes(100 + i, size=(16, 12)) for i in range(33)}
    for name, data in inputs.items():
        (images / name).write_bytes(data)
    video_batch, image_batch, job_id = _id("cli-vid"), _id("cli-many"), _id("job")

    # more than 32 images: the reference client packs tar shards (bulk-upload/image-files)
    ref.ok("data-staging", "create-batch-of-images", "--images-dir", str(images),
           "--batch-id", image_batch)  # fmt: skip
    ref.ok("data-staging", "create-batch-of-videos", "--videos-dir", str(videos),
           "--batch-id", video_batch)  # fmt: skip
    with server.client() as client:
        wait_count(client, server, image_batch, 33)
        batch = client.get(f"{server.ds}/batches/{image_batch}").json()["batch"]
        assert batch["batchType"] == "sharded-batch"
        assert download_files(client, server, image_batch) == inputs

        wait_count(client, server, video_batch, 1)
        ref.ok("batch-processing", "process-videos-with-workflow", "--workflow-id",
               "image-metadata", "--batch-id", video_batch, "--job-id", job_id,
               "--max-video-fps", "2", "--aggregation-format", "csv")  # fmt: skip
        job = wait_terminal(client, server, job_id)
        assert job["error"] is False
        assert job["jobDefinition"]["type"] == "simple-video-processing-v1"
        [out_batch] = stages(client, server, job_id)["processing"]["outputBatches"]
        rows = result_rows(download_files(client, server, out_batch, "results"))
        assert 3 <= len(rows) <= 5
        assert {row["file_name"] for row in rows} == {"clip.mp4"}
        assert [int(row["frame_index"]) for row in rows] == sorted(
            {int(row["frame_index"]) for row in rows}
        )
