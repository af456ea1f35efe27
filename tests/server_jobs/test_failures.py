"""Failure handling over real HTTP: failure rate, timeout, abort, restart, bad requests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from batchflow.samples import make_image_bytes
from tests.server_fixture import ServerHandle

from ._helpers import (
    bp,
    calls,
    create_job,
    definition,
    download_files,
    get_job,
    logs,
    result_rows,
    stages,
    tasks,
    upload_images,
    wait_for,
    wait_terminal,
)
from .conftest import new_id

CORRUPT = b"\xff\xd8\xff\xe0 this is not really a JPEG"


def test_failure_rate_threshold_with_corrupt_images(
    job_server: ServerHandle, client: httpx.Client
) -> None:
    batch, job_id = new_id("bad"), new_id("job")
    inputs = {f"good-{i}.jpg": make_image_bytes(i) for i in range(3)}
    inputs |= {"bad-0.jpg": CORRUPT, "bad-1.jpg": CORRUPT, "good-3.jpg": make_image_bytes(3)}
    upload_images(client, job_server, batch, inputs)  # listing order: task 1 gets both bad ones
    create_job(client, job_server, job_id, definition(batch, maxImageFailureRate=0.5))
    job = wait_terminal(client, job_server, job_id)
    assert job["isTerminal"]
    assert job["error"] is True
    statuses = [t["statusType"] for t in tasks(client, job_server, job_id)]
    assert statuses == ["succeeded", "failed"]
    types = {entry["logType"] for entry in logs(client, job_server, job_id)}
    assert "failure-rate-exceeded" in types
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    rows = result_rows(download_files(client, job_server, out_batch, "results"))
    # only the task under the threshold publishes its results
    assert sorted(row["file_name"] for row in rows) == ["good-0.jpg", "good-1.jpg", "good-2.jpg"]


def test_restart_reruns_only_the_failed_task_of_a_user_workflow(
    job_server: ServerHandle, client: httpx.Client, tmp_path: Path
) -> None:
    batch, job_id = new_id("rst"), new_id("job")
    names = ["ok-0.jpg", "ok-1.jpg", "ok-2.jpg", "bad-0.jpg", "ok-3.jpg", "ok-4.jpg"]
    upload_images(client, job_server, batch, {n: make_image_bytes(i) for i, n in enumerate(names)})
    params = {"log_dir": str(tmp_path), "tag": "t1"}
    body = definition(batch, "tagger", spec={"workflowParameters": params}, maxImageFailureRate=0.2)
    create_job(client, job_server, job_id, body)
    job = wait_terminal(client, job_server, job_id)
    assert job["error"] is True
    statuses = [t["statusType"] for t in tasks(client, job_server, job_id)]
    assert statuses == ["succeeded", "failed"], [
        (e["logType"], e["payload"]) for e in logs(client, job_server, job_id)
    ]
    assert calls(tmp_path) == sorted(names)

    overrides = {"type": "parameters-override-v1", "maxImageFailureRate": 0.5}
    response = client.post(f"{bp(job_server)}/jobs/{job_id}/restart", json=overrides)
    assert response.status_code == 200, response.text
    job = wait_terminal(client, job_server, job_id)
    assert job["error"] is False, job
    assert job["restartParametersOverride"] == [overrides]
    assert [t["statusType"] for t in tasks(client, job_server, job_id)] == ["succeeded"] * 2
    # the failed task's three items ran again, the succeeded task's did not
    assert calls(tmp_path) == sorted([*names, "bad-0.jpg", "ok-3.jpg", "ok-4.jpg"])
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    rows = result_rows(download_files(client, job_server, out_batch, "results"))
    assert sorted(row["file_name"] for row in rows) == sorted(names)
    by_name = {row["file_name"]: row for row in rows}
    assert by_name["bad-0.jpg"]["error"]["message"]
    assert by_name["ok-0.jpg"]["tag"] == "t1"
    assert by_name["ok-0.jpg"]["pixels"] == 64 * 48
    assert "job-restarted" in {entry["logType"] for entry in logs(client, job_server, job_id)}


def test_processing_timeout_fails_the_job(job_server: ServerHandle, client: httpx.Client) -> None:
    batch, job_id = new_id("tmo"), new_id("job")
    upload_images(client, job_server, batch, {f"s-{i}.jpg": make_image_bytes(i) for i in range(3)})
    body = definition(
        batch,
        "slow",
        spec={"workflowParameters": {"delay": 5}},
        processingTimeoutSeconds=1,
        maxParallelTasks=1,
    )
    started = time.monotonic()
    create_job(client, job_server, job_id, body)
    job = wait_terminal(client, job_server, job_id, timeout=30)
    assert time.monotonic() - started < 12  # well before the 15 s the items would take
    assert job["error"] is True
    assert job["lastNotification"]["state"] == "failed"
    assert [t["statusType"] for t in tasks(client, job_server, job_id)] == ["failed"]
    assert "processing-timeout" in {entry["logType"] for entry in logs(client, job_server, job_id)}
    assert stages(client, job_server, job_id)["processing"]["statusType"] == "failed"


def test_abort_mid_run_is_terminal_within_seconds(
    job_server: ServerHandle, client: httpx.Client, tmp_path: Path
) -> None:
    batch, job_id = new_id("abt"), new_id("job")
    upload_images(client, job_server, batch, {f"a-{i}.jpg": make_image_bytes(i) for i in range(6)})
    params = {"delay": 1.0, "log_dir": str(tmp_path)}
    body = definition(batch, "slow", spec={"workflowParameters": params}, maxParallelTasks=1)
    create_job(client, job_server, job_id, body)
    wait_for(
        lambda: (
            [t["statusType"] for t in tasks(client, job_server, job_id, planned=False)]
            == ["running"]
        ),
        timeout=20,
    )
    response = client.post(f"{bp(job_server)}/jobs/{job_id}/abort")
    assert response.status_code == 200, response.text
    aborted = time.monotonic()
    job = get_job(client, job_server, job_id)
    assert job["isTerminal"]
    assert job["error"] is True
    wait_for(
        lambda: "running" not in {t["statusType"] for t in tasks(client, job_server, job_id)},
        timeout=5,
    )
    assert time.monotonic() - aborted < 5
    done = len(calls(tmp_path))
    time.sleep(1.5)  # the worker was killed: no more items are processed
    assert len(calls(tmp_path)) == done < 6
    assert "job-aborted" in {entry["logType"] for entry in logs(client, job_server, job_id)}
    again = client.post(f"{bp(job_server)}/jobs/{job_id}/abort")
    assert again.status_code == 200  # aborting a terminal job is a no-op


@pytest.mark.parametrize(
    ("mutate", "status", "words"),
    [
        (lambda b: b["processingSpecification"].update(workflowId="no-such-flow"), 404, "workflow"),
        (lambda b: b["jobInput"].update(batchId="no-such-batch"), 404, "batch"),
        (lambda b: b.update(maxParallelTasks="many"), 400, "maxParallelTasks"),
        (lambda b: b.pop("jobInput"), 400, "jobInput"),
        (lambda b: b.update(type="trt-compilation-v1", modelId="m/1"), 400, "trt-compilation-v1"),
        (lambda b: b.update(type="made-up-v9"), 400, "type"),
    ],
)
def test_bad_job_requests_are_clear_4xx(
    job_server: ServerHandle,
    client: httpx.Client,
    mutate: object,
    status: int,
    words: str,
) -> None:
    batch = new_id("val")
    upload_images(client, job_server, batch, {"v.jpg": make_image_bytes(0)})
    body = definition(batch)
    mutate(body)  # type: ignore[operator]
    response = client.post(f"{bp(job_server)}/jobs/{new_id('job')}", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/jobs/job-x", b"not json", 400),
        ("POST", "/jobs/job-x", b"[1, 2]", 400),
        ("POST", "/jobs/Bad%20Id", b"{}", 400),
        ("POST", "/jobs/" + "j" * 21, b"{}", 400),
        ("GET", "/jobs/no-such-job", None, 404),
        ("GET", "/jobs/no-such-job/stages", None, 404),
        ("GET", "/jobs/no-such-job/stages/processing/tasks", None, 404),
        ("POST", "/jobs/no-such-job/abort", None, 404),
        ("POST", "/jobs/no-such-job/restart", None, 404),
        ("GET", "/jobs/no-such-job/logs?severity=fatal", None, 400),
        ("GET", "/jobs?pageSize=lots", None, 400),
        ("GET", "/jobs?nextPageToken=garbage", None, 400),
    ],
)
def test_malformed_requests_never_500(
    job_server: ServerHandle,
    client: httpx.Client,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    response = client.request(
        method,
        bp(job_server) + path,
        content=body,
        headers={"Content-Type": "application/json"} if body else None,
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_another_workspace_is_not_found_on_job_routes(
    job_server: ServerHandle, client: httpx.Client
) -> None:
    other = bp(job_server).replace(f"/external/{job_server.workspace}", "/external/someone-else")
    assert other != bp(job_server)
    for path in ("/jobs", "/jobs/job-x", "/jobs/job-x/stages", "/jobs/job-x/logs"):
        answer = client.get(other + path)
        assert answer.status_code == 404, path
        assert "workspace" in answer.json()["error"]
    assert client.get(bp(job_server) + "/jobs").status_code == 200
