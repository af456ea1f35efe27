"""The job, task and stage state machines: every allowed move is accepted, every other pair of
states refused with a typed error, and the service and the scheduler go through them."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from batchflow.errors import ConflictError
from batchflow.server.core.errors import install_error_handlers
from batchflow.server.jobs._run import JobRun, RunContext
from batchflow.server.jobs._store import task_move
from batchflow.server.jobs.executors import InlineExecutor
from batchflow.server.jobs.records import job_by_id
from batchflow.server.jobs.routes import router
from batchflow.server.jobs.schema import jobs
from batchflow.server.jobs.states import (
    JOB,
    STAGE,
    TASK,
    IllegalTransitionError,
    JobState,
    StateMachine,
    TaskStatus,
)

from .conftest import WS, Env, definition, image_bytes

J, T = JobState, TaskStatus

# Written out by hand from the diagrams (states.py, jobs/README.md), not derived from the tables.
JOB_MOVES = {
    (J.PENDING, J.PROCESSING), (J.PENDING, J.FAILED), (J.PENDING, J.ABORTED),
    (J.PROCESSING, J.EXPORT), (J.PROCESSING, J.FAILED), (J.PROCESSING, J.ABORTED),
    (J.EXPORT, J.COMPLETED), (J.EXPORT, J.FAILED), (J.EXPORT, J.ABORTED),
    (J.COMPLETED, J.PENDING), (J.COMPLETED, J.PROCESSING),
    (J.FAILED, J.PENDING), (J.FAILED, J.PROCESSING),
    (J.ABORTED, J.PENDING), (J.ABORTED, J.PROCESSING),
}  # fmt: skip
TASK_MOVES = {
    (T.PENDING, T.RUNNING), (T.PENDING, T.ABORTED),
    (T.RUNNING, T.SUCCEEDED), (T.RUNNING, T.FAILED), (T.RUNNING, T.ABORTED),
    (T.RUNNING, T.PENDING),
    (T.FAILED, T.PENDING), (T.FAILED, T.RUNNING),
    (T.ABORTED, T.PENDING),
}  # fmt: skip
STAGE_MOVES = {
    (T.PENDING, T.RUNNING), (T.PENDING, T.ABORTED),
    (T.RUNNING, T.SUCCEEDED), (T.RUNNING, T.FAILED), (T.RUNNING, T.ABORTED),
    (T.SUCCEEDED, T.RUNNING), (T.FAILED, T.RUNNING), (T.ABORTED, T.RUNNING),
}  # fmt: skip

CASES = [
    pytest.param(machine, current, target, (current, target) in moves,
                 id=f"{machine.kind}:{current}->{target}")
    for machine, moves, states in (
        (JOB, JOB_MOVES, list(JobState)),
        (TASK, TASK_MOVES, list(TaskStatus)),
        (STAGE, STAGE_MOVES, list(TaskStatus)),
    )
    for current, target in itertools.product(states, repeat=2)
]  # fmt: skip


@pytest.mark.parametrize(("machine", "current", "target", "allowed"), CASES)
def test_every_pair_of_states(
    machine: StateMachine[JobState] | StateMachine[TaskStatus],
    current: JobState | TaskStatus,
    target: JobState | TaskStatus,
    allowed: bool,
) -> None:
    if allowed:
        machine.check(current, target)  # type: ignore[arg-type]
        assert current in machine.sources(target)  # type: ignore[arg-type]
    else:
        with pytest.raises(IllegalTransitionError) as refused:
            machine.check(current, target)  # type: ignore[arg-type]
        assert (refused.value.current, refused.value.target) == (current, target)
        assert refused.value.message == f"illegal {machine.kind} transition {current} -> {target}"
        assert current not in machine.sources(target)  # type: ignore[arg-type]


def test_the_wire_values_and_terminal_states() -> None:
    assert [s.value for s in JobState] == [
        "pending", "processing", "export", "completed", "failed", "aborted",
    ]  # fmt: skip
    assert [s.value for s in TaskStatus] == [
        "pending", "running", "succeeded", "failed", "aborted",
    ]  # fmt: skip
    assert {s for s in JobState if s.is_terminal} == {J.COMPLETED, J.FAILED, J.ABORTED}
    assert issubclass(IllegalTransitionError, ConflictError)  # a 409 if it reaches a route


def _client(env: Env) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)  # the server's one error table answers for the routes
    app.include_router(router)
    app.state.job_service = env.service
    base = f"http://testserver/batch-processing/v1/external/{WS}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


async def _job_in(env: Env, job_id: str, state: JobState) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(3, 3)})
    await env.service.create_job(WS, job_id, definition())
    async with env.engine.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.job_id == job_id)
            .values(state=state, is_terminal=state.is_terminal)
        )


@pytest.mark.anyio
@pytest.mark.parametrize("state", list(JobState))
async def test_abort_and_restart_follow_the_job_machine(env: Env, state: JobState) -> None:
    """Abort of a finished job stays a no-op (200, nothing written); restart of a live one
    stays a 409 with its message: both refused by the state machine."""
    await _job_in(env, "job-sm", state)
    async with _client(env) as http:
        abort = await http.post("/jobs/job-sm/abort")
        assert (abort.status_code, abort.json()) == (200, {})
        after_abort = (await http.get("/jobs/job-sm")).json()["job"]
        logs = [e["logType"] for e in (await http.get("/jobs/job-sm/logs")).json()["logs"]]
        if state.is_terminal:
            assert after_abort["lastNotification"] == {"type": "job-state", "state": "pending"}
            assert "job-aborted" not in logs
            assert (await _state(env, "job-sm")) is state
        else:
            assert after_abort["lastNotification"] == {"type": "job-state", "state": "aborted"}
            assert "job-aborted" in logs
            assert (await _state(env, "job-sm")) is J.ABORTED

    await _job_in(env, "job-sm2", state)
    async with _client(env) as http:
        restart = await http.post("/jobs/job-sm2/restart")
        if state.is_terminal:
            assert (restart.status_code, restart.json()) == (200, {})
            assert (await _state(env, "job-sm2")) is J.PENDING  # no processing stage yet
        else:
            assert restart.status_code == 409
            assert restart.json() == {"error": "job 'job-sm2' is still running: abort it or wait"}
            assert (await _state(env, "job-sm2")) is state


async def _state(env: Env, job_id: str) -> JobState:
    async with env.engine.connect() as conn:
        job = await job_by_id(conn, WS, job_id)
    assert job is not None
    return job.state


@pytest.mark.anyio
async def test_the_scheduler_moves_a_job_only_through_the_machine(env: Env, tmp_path: Path) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(3, 3)})
    await env.service.create_job(WS, "job-run", definition())
    async with env.engine.connect() as conn:
        job = await job_by_id(conn, WS, "job-run")
    assert job is not None
    context = RunContext(
        engine=env.engine, staging=env.staging, executor=InlineExecutor(1),
        work_dir=tmp_path, items_per_task=1, files_per_archive=1, archive_format="tar.gz",
        watch_interval=1.0, has_gpu=False, workflows_file=None, runner="unused:run",
    )  # fmt: skip
    run = JobRun(context, job)
    async with env.engine.begin() as conn:
        with pytest.raises(IllegalTransitionError, match="pending -> completed"):
            await run.transition(conn, J.PENDING, J.COMPLETED)
        assert not await run.transition(conn, J.EXPORT, J.COMPLETED)  # legal, but not its state
        assert await run.transition(conn, J.PENDING, J.PROCESSING)
    assert (await _state(env, "job-run")) is J.PROCESSING
    with pytest.raises(IllegalTransitionError, match="task transition succeeded -> running"):
        task_move(T.RUNNING, T.SUCCEEDED)  # a succeeded task is never recomputed
