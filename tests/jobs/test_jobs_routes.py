"""Shape of the BP routes (PROTOCOL.md) through FastAPI with httpx's ASGI transport."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from batchflow.server.core.errors import install_error_handlers
from batchflow.server.jobs.routes import router

from .conftest import WS, Env, definition, image_bytes, running

pytestmark = pytest.mark.anyio
BASE = f"http://testserver/batch-processing/v1/external/{WS}"


def _client(env: Env) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)  # the server's one error table answers for the routes
    app.include_router(router)
    app.state.job_service = env.service
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def test_routes_speak_the_protocol(env: Env) -> None:
    env.staging.add_input(WS, "b1", {f"r{i}.png": image_bytes(3, 3, i) for i in range(5)})
    async with _client(env) as http, running(env.scheduler()):
        created = await http.post("/jobs/job-r1", params={"name": "first"}, json=definition())
        assert (created.status_code, created.json()) == (200, {})
        again = await http.post("/jobs/job-r1", json=definition())
        assert (again.status_code, again.json()) == (200, {})
        conflict = await http.post("/jobs/job-r1", json=definition(maxParallelTasks=3))
        assert conflict.status_code == 409
        assert "error" in conflict.json()
        trt = await http.post("/jobs/job-r2", json={"type": "trt-compilation-v1"})
        assert trt.status_code == 400
        assert "trt-compilation-v1" in trt.json()["error"]
        bad_json = await http.post("/jobs/job-r2", content=b"{nope")
        assert bad_json.status_code == 400
        no_wf = await http.post("/jobs/job-r2", json=definition(spec={"workflowId": "x"}))
        assert no_wf.status_code == 404
        assert "workflow" in no_wf.json()["error"]
        no_batch = await http.post("/jobs/job-r2", json=definition("zz"))
        assert no_batch.status_code == 404
        assert (await http.get("/jobs/job-zz")).status_code == 404

        await env.wait_terminal("job-r1")
        job = (await http.get("/jobs/job-r1")).json()["job"]
        assert {"jobId", "name", "jobDefinition", "error", "isTerminal", "createdAt",
                "lastUpdate", "restartParametersOverride", "plannedStages"} <= set(job)  # fmt: skip
        assert job["name"] == "first"
        assert job["isTerminal"] is True
        assert job["error"] is False

        listing = (await http.get("/jobs", params={"pageSize": 10})).json()
        assert [j["jobId"] for j in listing["jobs"]] == ["job-r1"]
        assert listing["nextPageToken"] is None  # the reference client requires the key

        stages = (await http.get("/jobs/job-r1/stages")).json()["stages"]
        assert set(stages[0]) == {
            "processingStageId", "processingStageName", "tasksNumber", "outputBatches",
            "startTimestamp", "notification", "statusType", "lastEventTimestamp",
        }  # fmt: skip
        assert [s["processingStageId"] for s in stages] == ["processing", "export"]

        page = (
            await http.get("/jobs/job-r1/stages/processing/tasks", params={"pageSize": 1})
        ).json()
        assert len(page["tasks"]) == 1
        assert page["nextPageToken"]
        assert set(page["tasks"][0]) == {"taskId", "notification", "statusType", "progress",
                                         "eventTimestamp"}  # fmt: skip
        rest = await http.get(
            "/jobs/job-r1/stages/processing/tasks",
            params={"pageSize": 5, "nextPageToken": page["nextPageToken"]},
        )
        assert len(rest.json()["tasks"]) == 1
        assert (await http.get("/jobs/job-r1/stages/nope/tasks")).status_code == 404

        logs = (await http.get("/jobs/job-r1/logs", params={"severity": "info"})).json()["logs"]
        assert logs
        assert all(entry["severity"] == "info" for entry in logs)
        assert {"createdAt", "severity", "reportingModule", "logType", "payload"} <= set(logs[0])
        assert (
            await http.get("/jobs/job-r1/logs", params={"severity": "debug"})
        ).status_code == 400
        bad_page = await http.get("/jobs", params={"pageSize": "ten"})
        assert bad_page.status_code == 400
        assert "pageSize" in bad_page.json()["error"]

        restart = await http.post("/jobs/job-r1/restart")  # no body: no overrides
        assert (restart.status_code, restart.json()) == (200, {})
        await env.wait_terminal("job-r1")
        body = {"type": "parameters-override-v1", "maxParallelTasks": 1}
        assert (await http.post("/jobs/job-r1/restart", json=body)).status_code == 200
        bad_override = await http.post("/jobs/job-r1/restart", json={"maxParallelTasks": 0})
        assert bad_override.status_code in {400, 409}
        job = (await http.get("/jobs/job-r1")).json()["job"]
        assert job["restartParametersOverride"] == [body]
        abort = await http.post("/jobs/job-r1/abort")
        assert (abort.status_code, abort.json()) == (200, {})
        assert (await http.post("/jobs/job-zz/abort")).status_code == 404
