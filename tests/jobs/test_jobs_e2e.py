"""End-to-end job runs: scheduler + executor + tmp-dir staging over a real SQLite catalog."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
import zipfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from batchflow.protocol.jobs import JobStage
from batchflow.server.jobs.executors import InlineExecutor, LocalProcessExecutor
from batchflow.server.jobs.scheduler import Scheduler, SchedulerConfig, plan_chunks
from batchflow.testing.jobs import JobFinished, LocalDirStaging

from .conftest import WS, Env, definition, image_bytes, running
from .fake_runner import RUNNER


def _stage_batches(stages: list[JobStage]) -> dict[str, str]:
    return {s.processing_stage_id: s.output_batches[0] for s in stages}


async def _files(env: Env, batch: str, part: str | None = None) -> dict[str, bytes]:
    items = await env.staging.list_items(WS, batch, part)
    return {item.name: env.staging.read(item) for item in items}


@pytest.mark.anyio
async def test_image_job_end_to_end_in_worker_processes(env: Env) -> None:
    inputs = {f"dir/img-{i}.png": image_bytes(10 + i, 5 + i, seed=i) for i in range(7)}
    env.staging.add_input(WS, "b1", inputs, content_type="image/png")
    body = definition(
        spec={"persistImagesOutputs": True, "imagesOutputsToBePersisted": ["thumbnail"]},
        computeConfiguration={"type": "compute-configuration-v2", "workersPerMachine": 2},
    )
    assert await env.service.create_job(WS, "job-e2e", body, "nightly")
    executor = LocalProcessExecutor(2)
    try:
        async with running(env.scheduler(executor)):
            job = await env.wait_terminal("job-e2e")
            await env.wait_for(lambda: _notified(env))
    finally:
        await executor.aclose()
    assert job.is_terminal
    assert not job.error
    assert job.name == "nightly"
    assert job.job_definition == body  # stored as sent
    stages = await env.service.list_stages(WS, "job-e2e")
    assert [s.processing_stage_id for s in stages] == ["processing", "export"]
    assert all(s.status_type == "succeeded" for s in stages)
    tasks = (await env.service.list_tasks(WS, "job-e2e", "processing")).tasks
    assert len(tasks) == 3  # ceil(7 / 3)
    assert all(t.status_type == "succeeded" and t.progress == 1.0 for t in tasks)

    batches = _stage_batches(stages)
    results = await _files(env, batches["processing"], "results")
    assert sorted(results) == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]
    rows = [json.loads(line) for data in results.values() for line in data.splitlines()]
    assert len(rows) == 7
    for row in rows:
        data = inputs[row["file_name"]]
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["width"] == Image.open(io.BytesIO(data)).width
    images = await _files(env, batches["processing"], "images")
    assert sorted(images) == sorted(f"images/{name}/thumbnail.jpg" for name in inputs)

    archives = await _files(env, batches["export"], "archives")
    assert list(archives) == ["job-e2e-00000.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(archives["job-e2e-00000.tar.gz"])) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert members == {**results, **images}
    assert env.notifier.calls == [JobFinished("job-e2e", "https://example.com/hook", True)]


async def _notified(env: Env) -> bool:
    return bool(env.notifier.calls)


@pytest.mark.anyio
async def test_csv_results_with_failed_items_under_the_threshold(env: Env) -> None:
    inputs = {f"i{i}.png": image_bytes(4, 3 + i, seed=i) for i in range(5)}
    inputs["i9.png"] = b"garbage"
    env.staging.add_input(WS, "b1", inputs, content_type="image/png")
    body = definition(maxImageFailureRate=0.5, spec={"aggregationFormat": "csv"})
    await env.service.create_job(WS, "job-csv", body)
    async with running(env.scheduler(items_per_task=10, files_per_archive=1, archive_format="zip")):
        job = await env.wait_terminal("job-csv")
    assert not job.error
    stages = await env.service.list_stages(WS, "job-csv")
    batches = _stage_batches(stages)
    results = await _files(env, batches["processing"], "results")
    assert len(results) == 2  # min(n, maxParallelTasks) tasks even for a small batch
    rows = [r for data in results.values() for r in csv.DictReader(io.StringIO(data.decode()))]
    header = next(csv.reader(io.StringIO(results["00000.csv"].decode())))
    assert header[0] == "file_name"
    assert sorted(header[1:]) == header[1:]
    by_name = {r["file_name"]: r for r in rows}
    assert set(by_name) == set(inputs)
    assert by_name["i9.png"]["error"].startswith("corrupt-image: ")
    assert by_name["i9.png"]["width"] == ""
    assert by_name["i2.png"]["height"] == "5"
    archives = await _files(env, batches["export"], "archives")
    assert len(archives) == 2  # one file per archive
    names = set()
    for data in archives.values():
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names.update(archive.namelist())
    assert names == set(results)
    warnings = (await env.service.list_logs(WS, "job-csv", "warning")).logs
    assert [w.log_type for w in warnings] == ["items-failed"]
    assert warnings[0].payload["errors"][0]["item"] == "i9.png"


@pytest.mark.anyio
async def test_failure_rate_fails_the_task_and_the_job_goes_on(env: Env) -> None:
    good = {f"a{i}.png": image_bytes(4, 4, seed=i) for i in range(6)}
    bad = {f"z{i}.png": b"not an image" for i in range(3)}
    env.staging.add_input(WS, "b1", {**good, **bad}, content_type="image/png")
    await env.service.create_job(WS, "job-rate", definition(maxImageFailureRate=0.1))
    async with running(env.scheduler()):
        job = await env.wait_terminal("job-rate")
        await env.wait_for(lambda: _notified(env))
    assert job.error
    assert job.is_terminal
    tasks = (await env.service.list_tasks(WS, "job-rate", "processing")).tasks
    assert [t.status_type for t in tasks] == ["succeeded", "succeeded", "failed"]
    assert tasks[2].notification == {
        "reason": "failure-rate-exceeded", "processed": 0, "failed": 3, "items": 3
    }  # fmt: skip
    errors = (await env.service.list_logs(WS, "job-rate", "error")).logs
    assert errors[0].log_type == "failure-rate-exceeded"
    assert errors[0].task_id == "00002"
    stages = await env.service.list_stages(WS, "job-rate")
    assert stages[1].status_type == "succeeded"  # export still ran
    archive = (await _files(env, _stage_batches(stages)["export"]))["job-rate-00000.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert sorted(tar.getnames()) == ["00000.jsonl", "00001.jsonl"]
    assert env.notifier.calls == [JobFinished("job-rate", "https://example.com/hook", False)]


@pytest.mark.anyio
async def test_timeout_stops_remaining_tasks(env: Env) -> None:
    env.staging.add_input(WS, "b1", {f"s{i}.png": image_bytes(3, 3, i) for i in range(12)})
    body = definition(processingTimeoutSeconds=1, spec={"workflowParameters": {"sleep": 0.2}})
    await env.service.create_job(WS, "job-slow", body)
    async with running(env.scheduler()):
        job = await env.wait_terminal("job-slow", limit=15)
    assert job.error
    statuses = [
        t.status_type for t in (await env.service.list_tasks(WS, "job-slow", "processing")).tasks
    ]
    assert "succeeded" not in statuses
    assert statuses.count("failed") == 2  # the two running ones
    assert set(statuses) <= {"failed", "aborted"}
    errors = (await env.service.list_logs(WS, "job-slow", "error")).logs
    assert [e.log_type for e in errors] == ["processing-timeout"]
    assert errors[0].payload["machineSeconds"] > 1
    assert [s.processing_stage_id for s in await env.service.list_stages(WS, "job-slow")] == [
        "processing"
    ]


@pytest.mark.anyio
async def test_gpu_job_on_cpu_machine_warns(env: Env) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(3, 3)})
    body = definition(
        computeConfiguration={"type": "compute-configuration-v2", "machineType": "gpu"}
    )
    await env.service.create_job(WS, "job-gpu", body)
    async with running(env.scheduler(has_gpu=False)):
        job = await env.wait_terminal("job-gpu")
    assert not job.error
    warnings = (await env.service.list_logs(WS, "job-gpu", "warning")).logs
    assert [w.log_type for w in warnings] == ["gpu-unavailable"]


class _BrokenOutputs(LocalDirStaging):
    async def add_output_blob(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")


@pytest.mark.anyio
async def test_a_broken_output_store_fails_the_job_cleanly(env: Env) -> None:
    broken = _BrokenOutputs(env.staging.root)
    broken.batches = env.staging.batches
    env.staging.add_input(WS, "b1", {f"a{i}.png": image_bytes(3, 3, i) for i in range(4)})
    await env.service.create_job(WS, "job-broken", definition())
    scheduler = Scheduler(
        env.engine,
        broken,
        InlineExecutor(2),
        env.notifier,
        SchedulerConfig(work_dir=env.work_dir, runner=RUNNER, poll_interval=0.2, has_gpu=False),
    )
    async with running(scheduler):
        job = await env.wait_terminal("job-broken")
    assert job.error
    errors = (await env.service.list_logs(WS, "job-broken", "error")).logs
    assert [e.log_type for e in errors] == ["internal-error"]
    assert "disk full" in errors[0].payload["reason"]
    statuses = {
        t.status_type for t in (await env.service.list_tasks(WS, "job-broken", "processing")).tasks
    }
    assert statuses <= {"failed", "aborted"}


@given(count=st.integers(0, 5000), per_task=st.integers(1, 1000), parallel=st.integers(1, 64))
def test_plan_chunks_cover_every_item_once(count: int, per_task: int, parallel: int) -> None:
    chunks = plan_chunks(count, per_task, parallel)
    assert [i for chunk in chunks for i in chunk] == list(range(count))
    assert len(chunks) >= min(count, parallel)
    assert all(1 <= len(chunk) <= per_task for chunk in chunks)
    if chunks:
        assert max(map(len, chunks)) - min(map(len, chunks)) <= 1
