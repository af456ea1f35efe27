"""Remote workflows, job webhooks and crash recovery of ``batchflow serve`` over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from batchflow.samples import make_image_bytes
from tests.server._helpers import Receiver
from tests.server_fixture import ServerHandle

from ._helpers import (
    RemoteStub,
    calls,
    create_job,
    definition,
    download_files,
    logs,
    result_rows,
    stages,
    tasks,
    upload_images,
    wait_for,
    wait_terminal,
)
from .conftest import new_id


def test_remote_workflow_against_a_stub_with_retries(
    job_server: ServerHandle, client: httpx.Client, remote_stub: RemoteStub
) -> None:
    batch, job_id = new_id("rem"), new_id("job")
    inputs = {f"r-{i}.jpg": make_image_bytes(i) for i in range(3)}
    upload_images(client, job_server, batch, inputs)
    spec = {"workflowParameters": {"confidence": 0.4}}
    create_job(client, job_server, job_id, definition(batch, "remote-detect", spec=spec))
    job = wait_terminal(client, job_server, job_id)
    assert not job["error"], [
        (e["logType"], e["payload"]) for e in logs(client, job_server, job_id)
    ]
    # the first call answered 503 and was retried: one extra call, every image answered once
    assert remote_stub.statuses[0] == 503
    assert remote_stub.statuses.count(200) == len(inputs) == len(remote_stub.statuses) - 1
    sent = {base64.b64decode(body["inputs"]["image"]["value"]) for body in remote_stub.seen}
    assert sent == set(inputs.values())
    assert all(body["inputs"]["confidence"] == 0.4 for body in remote_stub.seen)
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    rows = result_rows(download_files(client, job_server, out_batch, "results"))
    assert sorted(row["file_name"] for row in rows) == sorted(inputs)
    for row in rows:
        assert row["model"] == "stub"
        digest = hashlib.sha256(inputs[row["file_name"]]).hexdigest()
        assert row["predictions"] == {"count": 1, "digest": digest}


def test_job_webhook_is_retried_with_the_same_event_id(
    job_server: ServerHandle, client: httpx.Client, receiver: Receiver
) -> None:
    batch, job_id = new_id("hook"), new_id("job")
    upload_images(client, job_server, batch, {"h.jpg": make_image_bytes(1)})
    create_job(client, job_server, job_id, definition(batch, notificationsURL=receiver.url))
    wait_terminal(client, job_server, job_id)
    wait_for(lambda: len(receiver.delivered()) >= 1, timeout=20)
    seen = receiver.all()
    assert [status for _, _, status in seen] == [500, 200]
    (first, headers, _), (second, _, _) = seen
    assert first["type"] == "roboflow-batch-job-notification-v1"
    assert first["job_id"] == job_id
    assert first["job_state"] == "success"
    assert first["event_id"] == second["event_id"]
    assert [first["delivery_attempt"], second["delivery_attempt"]] == [1, 2]
    assert {k: v for k, v in first.items() if k != "delivery_attempt"} == {
        k: v for k, v in second.items() if k != "delivery_attempt"
    }
    authorization = {k.lower(): v for k, v in headers.items()}["authorization"]
    assert authorization
    assert job_server.api_key not in authorization


def test_kill_9_mid_job_then_restart_finishes_without_loss_or_duplicates(
    fresh_job_server: Callable[..., ServerHandle], tmp_path: Path
) -> None:
    server = fresh_job_server()
    batch, job_id = new_id("kill"), new_id("job")
    names = [f"k-{i}.jpg" for i in range(6)]
    log_dir = tmp_path / "calls"
    log_dir.mkdir()
    params = {"delay": 0.6, "log_dir": str(log_dir)}
    body = definition(batch, "slow", spec={"workflowParameters": params}, maxParallelTasks=3)
    with server.client() as client:
        upload_images(client, server, batch, {n: make_image_bytes(i) for i, n in enumerate(names)})
        create_job(client, server, job_id, body)

        def mid_run() -> list[str] | None:
            states = [t["statusType"] for t in tasks(client, server, job_id, planned=False)]
            done = [t["taskId"] for t in tasks(client, server, job_id, planned=False)
                    if t["statusType"] == "succeeded"]  # fmt: skip
            return done if done and "running" in states else None

        done_before = wait_for(mid_run, timeout=30, interval=0.05)
    server.kill()  # SIGKILL to the whole process group: server and its workers

    server = fresh_job_server(server)
    with server.client() as client:
        job = wait_terminal(client, server, job_id)
        assert not job["error"], [
            (e["logType"], e["payload"]) for e in logs(client, server, job_id)
        ]
        assert [t["statusType"] for t in tasks(client, server, job_id)] == ["succeeded"] * 3
        [out_batch] = stages(client, server, job_id)["processing"]["outputBatches"]
        results = download_files(client, server, out_batch, "results")
        assert sorted(results) == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]
        rows = result_rows(results)
        assert sorted(row["file_name"] for row in rows) == names  # each input exactly once
        types = [e["logType"] for e in logs(client, server, job_id)]
        assert "task-requeued" in types
    # tasks finished before the kill were not recomputed
    counts = Counter(calls(log_dir))
    for task_id in done_before:
        for line in results[f"{task_id}.jsonl"].decode().splitlines():
            assert counts[json.loads(line)["file_name"]] == 1
    assert set(counts) == set(names)
