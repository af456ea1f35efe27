"""``poll`` and ``run`` logic without a server: exit codes, transient errors, backoff, and the
JobDefinition built from ``run``'s flags. (The real-server runs are in test_jobs_cli.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.cli._output import Output
from batchflow.cli._poll import PollSettings, poll_job
from batchflow.cli.jobs import RunArgs
from batchflow.errors import (
    DeadlineExceeded,
    JobFailedError,
    NetworkError,
    NotFoundError,
    UsageError,
)
from batchflow.protocol import Job, JobStage, JobTask
from tests.cli.conftest import run_cli

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeJobs:
    """A job that becomes terminal after ``rounds`` polls; some calls fail transiently."""

    def __init__(self, rounds: int, *, error: bool = False, failures: int = 0) -> None:
        self.rounds = rounds
        self.error = error
        self.failures = failures
        self.calls = 0
        self.sleeps: list[float] = []

    async def get_job(self, job_id: str) -> Job:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise NetworkError("GET /jobs: connection reset")
        terminal = self.calls > self.rounds
        return Job(job_id=job_id, name=job_id, job_definition={}, current_stage="processing",
                   is_terminal=terminal, error=self.error and terminal, created_at=T0,
                   last_update=T0)  # fmt: skip

    async def stages(self, job_id: str) -> list[JobStage]:
        done = self.calls > self.rounds
        return [
            JobStage(
                processing_stage_id="processing",
                processing_stage_name="processing",
                tasks_number=2,
                output_batches=[f"{job_id}-processing"],
                start_timestamp=T0,
                notification={},
                status_type="succeeded" if done else "running",
                last_event_timestamp=T0 + timedelta(seconds=self.calls if done else 0),
            )
        ]

    @asynccontextmanager
    async def iter_tasks(
        self, job_id: str, stage_id: str
    ) -> AsyncIterator[MemoryObjectReceiveStream[JobTask]]:
        done = self.calls > self.rounds
        send, receive = anyio.create_memory_object_stream[JobTask](4)
        with send:
            for i in range(2):
                status = "succeeded" if done or i == 0 else "running"
                send.send_nowait(JobTask(task_id=f"t{i}", notification={}, status_type=status,
                                         progress=1.0 if status == "succeeded" else 0.5,
                                         event_timestamp=T0))  # fmt: skip
        with receive:
            yield receive


def poll_json(fake: FakeJobs, settings: PollSettings, capsys: pytest.CaptureFixture[str]) -> Any:
    async def main() -> None:
        await poll_job(fake, "job-abc", settings, Output(json_mode=True))  # type: ignore[arg-type]

    try:
        anyio.run(main)
    finally:
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines


def test_poll_follows_to_success_and_prints_output_batches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeJobs(rounds=2)
    lines = poll_json(fake, PollSettings(interval=0.01, max_interval=0.02), capsys)
    final = lines[-1]
    assert final == {"jobId": "job-abc", "state": "succeeded", "error": False,
                     "outputBatches": {"processing": ["job-abc-processing"]}}  # fmt: skip
    tasks = [(e["taskId"], e["status"]) for e in lines if e.get("event") == "task"]
    assert tasks == [("t0", "succeeded"), ("t1", "running"), ("t1", "succeeded")]
    stages = [e for e in lines if e.get("event") == "stage"]
    assert stages[-1]["status"] == "succeeded"
    assert stages[-1]["counts"] == {"succeeded": 2}


def test_poll_survives_transient_errors(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeJobs(rounds=1, failures=3)
    lines = poll_json(fake, PollSettings(interval=0.01, max_interval=0.02), capsys)
    warnings = [e for e in lines if e.get("event") == "warning"]
    assert len(warnings) == 3
    assert "connection reset" in warnings[0]["message"]
    assert lines[-1]["state"] == "succeeded"


def test_poll_gives_up_after_many_failures_in_a_row(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeJobs(rounds=1, failures=100)
    with pytest.raises(NetworkError):
        poll_json(fake, PollSettings(interval=0.01, max_interval=0.01, max_failures=4), capsys)
    assert fake.calls == 4


def test_poll_failed_job_raises_exit_7(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeJobs(rounds=1, error=True)
    with pytest.raises(JobFailedError, match="ended in error") as info:
        poll_json(fake, PollSettings(interval=0.01), capsys)
    assert info.value.exit_code == 7


def test_poll_timeout_raises_exit_8(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeJobs(rounds=10**6)
    with pytest.raises(DeadlineExceeded, match=r"still running after 0\.3s") as info:
        poll_json(fake, PollSettings(interval=0.01, max_interval=0.05, timeout=0.3), capsys)
    assert info.value.exit_code == 8


def test_poll_backs_off_while_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = anyio.sleep

    async def record(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("batchflow.cli._poll.anyio.sleep", record)
    fake = FakeJobs(rounds=8)

    async def main() -> None:
        out = Output(json_mode=True)
        await poll_job(fake, "job-abc", PollSettings(interval=1.0, max_interval=3.0), out)  # type: ignore[arg-type]

    anyio.run(main)
    assert slept[0] == 1.0  # the first round changed things: base interval
    assert slept[1:4] == [1.5, 2.25, 3.0]  # then x1.5 up to the cap
    assert max(slept) == 3.0


def test_run_flags_build_the_job_definition() -> None:
    args = RunArgs(
        workflow_id="wf", batch_id="b1", videos=True, machine_type="gpu", workers_per_machine=3,
        max_video_fps=5, part_name="p", aggregation_format="jsonl", persist_images_outputs=True,
        images_outputs=("crops",), max_image_failure_rate=0.25, max_parallel_tasks=7,
        timeout=600, notifications_url="https://example.com/hook",
        workflow_parameters={"k": 1},
    )  # fmt: skip
    wire = args.definition("ws").wire()
    assert wire == {
        "type": "simple-video-processing-v1",
        "jobInput": {"type": "staging-batch-input-v1", "batchId": "b1", "partName": "p"},
        "computeConfiguration": {"type": "compute-configuration-v2", "machineType": "gpu",
                                 "workersPerMachine": 3},
        "processingTimeoutSeconds": 600,
        "maxParallelTasks": 7,
        "maxImageFailureRate": 0.25,
        "processingSpecification": {
            "type": "workflows-processing-specification-v1", "workspace": "ws",
            "workflowId": "wf", "workflowParameters": {"k": 1},
            "persistImagesOutputs": True, "imagesOutputsToBePersisted": ["crops"],
            "aggregationFormat": "jsonl", "maxVideoFPS": 5.0,
        },
        "notificationsURL": "https://example.com/hook",
    }  # fmt: skip
    plain = RunArgs(workflow_id="image-metadata", batch_id="b2").definition("ws").wire()
    assert plain["type"] == "simple-image-processing-v1"
    assert plain["processingSpecification"]["aggregationFormat"] == "csv"  # server default
    with pytest.raises(UsageError, match="--max-video-fps needs --videos"):
        RunArgs(workflow_id="wf", batch_id="b", max_video_fps=2).definition("ws")
    with pytest.raises(UsageError, match="invalid batch id"):
        RunArgs(workflow_id="wf", batch_id="Bad Id").definition("ws")
    assert NotFoundError.exit_code == 3


def test_timeout_without_any_answer_says_the_api_did_not_answer() -> None:
    # nothing listens on port 9: the deadline runs out inside the client's retries
    result = run_cli(
        "poll", "job-abc", "--timeout", "1",
        env={"API_BASE_URL": "http://127.0.0.1:9", "ROBOFLOW_API_KEY": "k"},
    )  # fmt: skip
    assert result.exit_code == 8
    assert "without an answer from the API" in result.stderr
    assert "Traceback" not in result.stderr
