"""The workflow registry is loaded once, at start-up, in a worker thread: ``create_job`` only
awaits it, so neither the import of the workflows package nor a workflows file's user code ever
runs on (or blocks) the event loop."""

from __future__ import annotations

import sys
import threading
import types
import uuid
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from batchflow.errors import ConfigError, NotFoundError
from batchflow.server.app import create_app
from batchflow.server.core.settings import ServerSettings
from batchflow.server.jobs.executors import InlineExecutor
from batchflow.server.jobs.plugin import JobsPlugin, KnownWorkflows
from batchflow.server.jobs.scheduler import SchedulerConfig
from batchflow.server.jobs.service import JobService

from .conftest import WS, Env, definition, image_bytes

pytestmark = pytest.mark.anyio
DS = "/data-staging/v1/external/local"
BP = "/batch-processing/v1/external/local"


class Probe:
    """A workflows file whose one callable lives in a module that records the thread importing
    it (the first import only: Python caches modules) and then waits for ``release`` (set at once
    unless the test holds the load)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, hold: bool) -> None:
        name = f"bf_probe_{uuid.uuid4().hex[:10]}"
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        gate = types.ModuleType(f"{name}_gate")
        gate.__dict__.update(threads=self.threads, entered=self.entered, release=self.release)
        monkeypatch.setitem(sys.modules, gate.__name__, gate)
        (tmp_path / f"{name}.py").write_text(
            "import threading\n"
            f"import {gate.__name__} as gate\n"
            "gate.threads.append(threading.get_ident())\n"
            "gate.entered.set()\n"
            "gate.release.wait(30)  # a blocked event loop can never release it\n"
            "def probe(item, image, params):\n"
            "    return {}\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        self.workflows_file = tmp_path / "workflows.toml"
        self.workflows_file.write_text(f'[workflows.probe]\ncallable = "{name}:probe"\n')


async def test_a_check_awaits_the_load_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(tmp_path, monkeypatch, hold=True)
    known = KnownWorkflows(probe.workflows_file)
    answers: list[bool] = []

    async def check() -> None:
        answers.append(await known("probe"))

    async with anyio.create_task_group() as group:
        group.start_soon(known.load)
        await anyio.to_thread.run_sync(probe.entered.wait)  # loading, in a worker thread
        group.start_soon(check)
        await anyio.wait_all_tasks_blocked()  # only possible while the loop is free
        assert answers == []  # the check waits for the load: no "unknown", no load of its own
        probe.release.set()
    assert answers == [True]
    assert len(probe.threads) == 1
    assert probe.threads[0] != threading.get_ident()  # imported off the event loop


async def test_create_job_never_loads_the_registry(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(tmp_path, monkeypatch, hold=False)
    known = KnownWorkflows(probe.workflows_file)
    asked = anyio.Event()

    async def workflow_exists(workflow_id: str) -> bool:
        asked.set()
        return await known(workflow_id)

    service = JobService(env.engine, env.staging, workflow_exists=workflow_exists)
    env.staging.add_input(WS, "b1", {"a.png": image_bytes(3, 3)})
    created: list[bool] = []

    async def create() -> None:
        created.append(await service.create_job(WS, "job-early", _probe_job()))

    async with anyio.create_task_group() as group:
        group.start_soon(create)  # arrives before the registry has been loaded
        await asked.wait()
        await anyio.wait_all_tasks_blocked()
        assert probe.threads == []  # create_job asked, and did not load the registry itself
        assert created == []
        await known.load()
    assert created == [True]  # waited for the registry instead of answering 404
    assert len(probe.threads) == 1
    assert probe.threads[0] != threading.get_ident()  # by the load's worker thread
    with pytest.raises(NotFoundError, match="'nope'"):
        await service.create_job(WS, "job-nope", definition(spec={"workflowId": "nope"}))


async def test_a_broken_workflows_file_is_a_400_at_every_create(tmp_path: Path) -> None:
    broken = tmp_path / "workflows.toml"
    broken.write_text('[workflows.bad]\ncallable = "no_such_module_bf:fn"\n')
    known = KnownWorkflows(broken)
    await known.load()
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"workflows file .*\[workflows.bad\]"):
            await known("bad")


async def test_the_server_loads_the_registry_at_start_up_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(tmp_path, monkeypatch, hold=False)
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        api_keys=("key-1",),
        public_url="http://testserver",
        workflows_file=probe.workflows_file,
    )
    config = SchedulerConfig(work_dir=tmp_path / "work", poll_interval=0.2, watch_interval=0.05)
    app = create_app(settings, plugins=[JobsPlugin(config=config, executor=InlineExecutor(1))])
    with anyio.fail_after(30):  # a registry never loaded would leave create_job waiting
        await _create_two_jobs(app)
    assert len(probe.threads) == 1
    assert probe.threads[0] != threading.get_ident()


async def _create_two_jobs(app: FastAPI) -> None:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": "Bearer key-1"},
        ) as http,
    ):
        uploaded = await http.post(
            f"{DS}/batches/b1/upload/image",
            params={"fileName": "a.png"},
            files={"file": ("a.png", image_bytes(3, 3), "image/png")},
        )
        assert uploaded.status_code == 200, uploaded.text
        for job_id in ("job-s1", "job-s2"):
            created = await http.post(f"{BP}/jobs/{job_id}", json=_probe_job("local"))
            assert (created.status_code, created.json()) == (200, {})
        unknown = await http.post(f"{BP}/jobs/job-s3", json=definition(spec={"workflowId": "x"}))
        assert unknown.status_code == 404


def _probe_job(workspace: str = WS) -> dict[str, object]:
    body = definition(spec={"workflowId": "probe", "workspace": workspace})
    del body["notificationsURL"]
    return body
