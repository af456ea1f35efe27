"""Abort, restart and crash recovery of jobs (worker processes where it matters)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio
import pytest
from sqlalchemy import Row, select

from batchflow.errors import ConflictError, NotFoundError
from batchflow.protocol.jobs import RestartOverrides
from batchflow.server.jobs.executors import LocalProcessExecutor
from batchflow.server.jobs.schema import tasks
from batchflow.testing.jobs import JobFinished

from .conftest import WS, Env, definition, image_bytes, running

pytestmark = pytest.mark.anyio


async def _task_rows(env: Env) -> list[Row[Any]]:
    async with env.engine.connect() as conn:
        return list((await conn.execute(select(tasks).order_by(tasks.c.id))).all())


async def _statuses(env: Env, job_id: str) -> list[str]:
    try:
        page = await env.service.list_tasks(WS, job_id, "processing")
    except NotFoundError:  # not planned yet
        return []
    return [t.status_type for t in page.tasks]


async def _results(env: Env, job_id: str) -> dict[str, os.stat_result]:
    stages = await env.service.list_stages(WS, job_id)
    items = await env.staging.list_items(WS, stages[0].output_batches[0], "results")
    return {item.name: env.staging.path(item).stat() for item in items}


async def test_abort_kills_running_tasks_within_seconds(env: Env) -> None:
    env.staging.add_input(WS, "b1", {f"s{i}.png": image_bytes(3, 3, i) for i in range(8)})
    body = definition(spec={"workflowParameters": {"sleep": 1.0}})
    await env.service.create_job(WS, "job-abort", body)
    executor = LocalProcessExecutor(2)
    try:
        async with running(env.scheduler(executor, items_per_task=2)):

            async def two_running() -> bool:
                return (await _statuses(env, "job-abort")).count("running") == 2

            await env.wait_for(two_running)
            await env.wait_for(lambda: _workers_busy(executor))
            workers = [w.process for w in executor._all]
            started = time.monotonic()
            await env.service.abort(WS, "job-abort")

            async def stopped() -> bool:
                return "running" not in await _statuses(env, "job-abort")

            await env.wait_for(stopped, limit=5)
            with anyio.fail_after(5):
                while any(p.is_alive() for p in workers):  # noqa: ASYNC110  # polls processes
                    await anyio.sleep(0.02)
            assert time.monotonic() - started < 3
            await env.wait_for(lambda: _notified(env))
    finally:
        await executor.aclose()
    job = await env.service.get_job(WS, "job-abort")
    assert job.is_terminal
    assert job.error
    assert await _statuses(env, "job-abort") == ["aborted"] * 4
    stages = await env.service.list_stages(WS, "job-abort")
    assert [s.status_type for s in stages] == ["aborted"]
    assert env.notifier.calls == [JobFinished("job-abort", "https://example.com/hook", False)]
    await env.service.abort(WS, "job-abort")  # idempotent on a terminal job


async def _workers_busy(executor: LocalProcessExecutor) -> bool:
    return len(executor._all) == 2 and not executor._idle


async def _notified(env: Env) -> bool:
    return bool(env.notifier.calls)


async def test_restart_reruns_only_what_did_not_succeed(env: Env) -> None:
    good = {f"a{i}.png": image_bytes(4, 4, seed=i) for i in range(6)}
    bad = {f"z{i}.png": b"not an image" for i in range(3)}
    env.staging.add_input(WS, "b1", {**good, **bad}, content_type="image/png")
    await env.service.create_job(WS, "job-rs", definition(maxImageFailureRate=0.1))
    async with running(env.scheduler()):
        first = await env.wait_terminal("job-rs")
        assert first.error
        before = await _results(env, "job-rs")
        assert sorted(before) == ["00000.jsonl", "00001.jsonl"]
        with pytest.raises(ConflictError):  # not while running
            await env.service.create_job(WS, "job-rs", definition(maxImageFailureRate=0.2))

        env.staging.add_input(WS, "b1", {n: image_bytes(5, 6, seed=9) for n in bad})
        overrides = RestartOverrides(max_parallel_tasks=1, max_image_failure_rate=0.0)
        await env.service.restart(WS, "job-rs", overrides)
        assert not (await env.service.get_job(WS, "job-rs")).is_terminal
        second = await env.wait_terminal("job-rs")
        await env.wait_for(lambda: _count_calls(env, 2))
    assert not second.error
    assert second.restart_parameters_override == [overrides.wire()]
    assert await _statuses(env, "job-rs") == ["succeeded"] * 3
    after = await _results(env, "job-rs")
    for name, stat in before.items():  # untouched: same inode, same mtime
        assert (after[name].st_ino, after[name].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    attempts = {
        row.task_id: row.attempts for row in await _task_rows(env) if row.items[0].endswith(".png")
    }
    assert attempts["00000"] == 1
    assert attempts["00002"] == 2
    stages = await env.service.list_stages(WS, "job-rs")
    export_batch = stages[1].output_batches[0]
    assert export_batch == "job-rs-export-1"
    items = await env.staging.list_items(WS, stages[0].output_batches[0], "results")
    rows = [json.loads(x) for item in items for x in env.staging.read(item).splitlines()]
    assert sorted(r["file_name"] for r in rows) == sorted([*good, *bad])
    assert all("error" not in r for r in rows)
    assert [c.success for c in env.notifier.calls] == [False, True]
    logs = (await env.service.list_logs(WS, "job-rs", "info")).logs
    assert "job-restarted" in [entry.log_type for entry in logs]


async def _count_calls(env: Env, n: int) -> bool:
    return len(env.notifier.calls) >= n


async def test_restart_of_a_running_job_is_a_conflict(env: Env) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(3, 3)})
    await env.service.create_job(WS, "job-live", definition())
    with pytest.raises(ConflictError):
        await env.service.restart(WS, "job-live", None)


@pytest.mark.parametrize(
    "engine",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[pytest.mark.postgres],
        ),
    ],
    indirect=True,
)
async def test_crash_mid_job_resumes_without_losing_or_duplicating(env: Env) -> None:
    inputs = {f"c{i:02d}.png": image_bytes(3, 3 + i, i) for i in range(10)}
    env.staging.add_input(WS, "b1", inputs, content_type="image/png")
    body = definition(spec={"workflowParameters": {"sleep": 0.25}})
    await env.service.create_job(WS, "job-crash", body)
    first = LocalProcessExecutor(2)
    try:
        async with running(env.scheduler(first, items_per_task=2)):

            async def some_done_some_running() -> bool:
                # tasks run in pairs of 0.5 s: two done and the next pair well under way
                statuses = await _statuses(env, "job-crash")
                return statuses.count("succeeded") >= 2 and "running" in statuses

            await env.wait_for(some_done_some_running)
            workers = [w.process for w in first._all]
        # the task group is gone: a crash as far as the catalog is concerned
    finally:
        await first.aclose()
    assert not any(p.is_alive() for p in workers)
    statuses = await _statuses(env, "job-crash")
    assert "running" in statuses
    done_before = await _results(env, "job-crash")
    assert done_before

    second = LocalProcessExecutor(2)
    try:
        async with running(env.scheduler(second, items_per_task=2)):
            job = await env.wait_terminal("job-crash")
    finally:
        await second.aclose()
    assert not job.error
    after = await _results(env, "job-crash")
    assert sorted(after) == [f"{i:05d}.jsonl" for i in range(5)]
    for name, stat in done_before.items():
        assert (after[name].st_ino, after[name].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    stages = await env.service.list_stages(WS, "job-crash")
    items = await env.staging.list_items(WS, stages[0].output_batches[0], "results")
    names = [json.loads(x)["file_name"] for i in items for x in env.staging.read(i).splitlines()]
    assert sorted(names) == sorted(inputs)  # every item exactly once
    requeued = list((await env.service.list_logs(WS, "job-crash", "warning")).logs)
    assert requeued
    assert {e.log_type for e in requeued} == {"task-requeued"}
    rows = {r.task_id: r.attempts for r in await _task_rows(env) if r.items[0].endswith(".png")}
    assert sorted(rows.values())[-1] == 2
    assert sorted(rows.values())[0] == 1
