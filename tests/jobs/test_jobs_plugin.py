"""The job engine as a plugin of the real ``batchflow serve`` app (in process, ASGI transport):
stage through the DS routes, run a job through the BP routes, read results via the stages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import httpx
import pytest

from batchflow.server.app import create_app
from batchflow.server.core.settings import ServerSettings
from batchflow.server.jobs.executors import InlineExecutor
from batchflow.server.jobs.plugin import JobsPlugin
from batchflow.server.jobs.scheduler import SchedulerConfig

from .conftest import definition, image_bytes

pytestmark = pytest.mark.anyio
DS = "/data-staging/v1/external/local"
BP = "/batch-processing/v1/external/local"


async def test_jobs_run_inside_the_server_app(tmp_path: Path) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data", api_keys=("key-1",), public_url="http://testserver"
    )
    config = SchedulerConfig(work_dir=tmp_path / "work", poll_interval=0.2, watch_interval=0.05)
    plugin = JobsPlugin(config=config, executor=InlineExecutor(2))
    app = create_app(settings, plugins=[plugin])
    inputs = {f"p{i}.png": image_bytes(7 + i, 5, seed=i) for i in range(3)}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": "Bearer key-1"},
        ) as http,
    ):
        for name, data in inputs.items():
            response = await http.post(
                f"{DS}/batches/b1/upload/image",
                params={"fileName": name},
                files={"file": (name, data, "image/png")},
            )
            assert response.status_code == 200, response.text
        body = definition(spec={"workflowId": "image-metadata", "workspace": "local"})
        del body["notificationsURL"]
        unauthenticated = await http.post(
            f"{BP}/jobs/job-p", json=body, headers={"Authorization": ""}
        )
        assert unauthenticated.status_code == 401
        unknown = await http.post(f"{BP}/jobs/job-p", json=definition(spec={"workflowId": "nope"}))
        assert unknown.status_code == 404
        created = await http.post(f"{BP}/jobs/job-p", json=body)
        assert (created.status_code, created.json()) == (200, {})
        with anyio.fail_after(30):
            while not (job := (await http.get(f"{BP}/jobs/job-p")).json()["job"])["isTerminal"]:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert job["error"] is False
        stages = (await http.get(f"{BP}/jobs/job-p/stages")).json()["stages"]
        listing = await http.get(f"{DS}/batches/{stages[0]['outputBatches'][0]}/list")
        files = listing.json()["filesMetadata"]
        rows = []
        for meta in files:
            blob = await http.get(meta["downloadURL"])
            rows += [json.loads(line) for line in blob.content.splitlines()]
        assert {r["file_name"]: r["sha256"] for r in rows} == {
            name: hashlib.sha256(data).hexdigest() for name, data in inputs.items()
        }
        export = await http.get(f"{DS}/batches/{stages[1]['outputBatches'][0]}/list")
        assert [m["fileName"] for m in export.json()["filesMetadata"]] == ["job-p-00000.tar.gz"]
