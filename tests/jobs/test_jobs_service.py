"""JobService validation, idempotency and pagination; the PostgreSQL pass of a whole job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from batchflow.errors import ConflictError, NotFoundError, UsageError
from batchflow.server.jobs.schema import logs

from .conftest import WS, Env, definition, image_bytes, running

pytestmark = pytest.mark.anyio


async def test_create_validates_before_recording(env: Env) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(2, 2)})
    trt = {"type": "trt-compilation-v1", "modelId": "m/1", "compilationDevices": ["t4"]}
    with pytest.raises(UsageError, match="unsupported job type 'trt-compilation-v1'"):
        await env.service.create_job(WS, "job-1", trt)
    with pytest.raises(UsageError, match="invalid job definition"):
        await env.service.create_job(WS, "job-1", definition(maxParallelTasks=0))
    with pytest.raises(UsageError, match="invalid job id"):
        await env.service.create_job(WS, "Job_Upper", definition())
    with pytest.raises(NotFoundError, match="workflow 'nope' not found"):
        await env.service.create_job(WS, "job-1", definition(spec={"workflowId": "nope"}))
    with pytest.raises(NotFoundError, match="batch 'missing' not found"):
        await env.service.create_job(WS, "job-1", definition("missing"))
    assert (await env.service.list_jobs(WS)).jobs == []
    with pytest.raises(NotFoundError):
        await env.service.get_job(WS, "job-1")


async def test_create_is_idempotent_and_conflicts_on_another_definition(env: Env) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(2, 2)})
    minimal = {
        "type": "simple-image-processing-v1",
        "jobInput": {"batchId": "b1"},
        "processingSpecification": {"workspace": WS, "workflowId": "fake-image"},
    }
    assert await env.service.create_job(WS, "job-1", minimal)
    explicit_defaults = {**minimal, "maxParallelTasks": 4, "unknownField": 1}
    assert not await env.service.create_job(WS, "job-1", explicit_defaults)
    with pytest.raises(ConflictError):
        await env.service.create_job(WS, "job-1", {**minimal, "maxParallelTasks": 3})
    job = await env.service.get_job(WS, "job-1")
    assert job.job_definition == minimal
    assert job.name == "job-1"
    assert job.planned_stages == ["processing", "export"]
    assert job.current_stage is None
    # same id in another workspace is another job
    env.staging.add_input("other", "b1", {"a.png": image_bytes(2, 2)})
    assert await env.service.create_job("other", "job-1", {**minimal, "maxParallelTasks": 3})


async def test_pagination_tokens_survive_appends(env: Env) -> None:
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(2, 2)})
    for i in range(5):
        await env.service.create_job(WS, f"job-{i}", definition())
    first = await env.service.list_jobs(WS, page_size=2)
    assert [j.job_id for j in first.jobs] == ["job-0", "job-1"]
    assert first.next_page_token
    await env.service.create_job(WS, "job-5", definition())
    seen = [j.job_id for j in first.jobs]
    token: str | None = first.next_page_token
    while token:
        jobs_page = await env.service.list_jobs(WS, page_size=2, token=token)
        seen += [j.job_id for j in jobs_page.jobs]
        token = jobs_page.next_page_token
    assert seen == [f"job-{i}" for i in range(6)]
    with pytest.raises(UsageError):
        await env.service.list_jobs(WS, token="garbage!")

    job_pk = 1
    async with env.engine.begin() as conn:
        await conn.execute(
            insert(logs),
            [
                {"job_pk": job_pk, "severity": sev, "reporting_module": "t", "log_type": f"l{i}",
                 "payload": {"i": i}, "created_at": datetime.now(UTC)}
                for i, sev in enumerate(["warning", "info", "warning", "error", "warning"])
            ],
        )  # fmt: skip
    page = await env.service.list_logs(WS, "job-0", "warning", page_size=2)
    assert [e.payload["i"] for e in page.logs] == [0, 2]
    rest = await env.service.list_logs(
        WS, "job-0", "warning", page_size=2, token=page.next_page_token
    )
    assert [e.payload["i"] for e in rest.logs] == [4]
    assert rest.next_page_token is None


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
async def test_whole_job_on_postgres(env: Env) -> None:
    env.staging.add_input(WS, "b1", {f"p{i}.png": image_bytes(3, 3, i) for i in range(4)})
    await env.service.create_job(WS, "job-pg", definition(spec={"aggregationFormat": "csv"}))
    assert not await env.service.create_job(
        WS, "job-pg", definition(spec={"aggregationFormat": "csv"})
    )
    async with running(env.scheduler()):
        job = await env.wait_terminal("job-pg")
        assert job.is_terminal
        assert not job.error
        stages = await env.service.list_stages(WS, "job-pg")
        assert [s.status_type for s in stages] == ["succeeded", "succeeded"]
        tasks = await env.service.list_tasks(WS, "job-pg", "processing", page_size=1)
        assert len(tasks.tasks) == 1
        assert tasks.next_page_token
        await env.service.restart(WS, "job-pg", None)
        job = await env.wait_terminal("job-pg")
    assert not job.error
    assert job.restart_parameters_override == []
    stages = await env.service.list_stages(WS, "job-pg")
    assert stages[1].output_batches == ["job-pg-export-1"]
    archives = await env.staging.list_items(WS, "job-pg-export-1", "archives")
    assert [a.name for a in archives] == ["job-pg-00000.tar.gz"]
