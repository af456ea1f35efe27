"""Fixtures of the job engine tests: a real catalog (SQLite; PostgreSQL when marked), a
tmp-dir staging area, a recording notifier, and helpers to run the scheduler."""

from __future__ import annotations

import contextlib
import io
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from batchflow.protocol.jobs import Job
from batchflow.server.jobs.executors import Executor, InlineExecutor
from batchflow.server.jobs.scheduler import Scheduler, SchedulerConfig
from batchflow.server.jobs.schema import metadata
from batchflow.server.jobs.service import JobService
from batchflow.testing.jobs import LocalDirStaging, RecordingNotifier

from .fake_runner import RUNNER

WS = "ws"
KNOWN_WORKFLOWS = {"fake-image", "image-metadata", "thumbnail"}


def image_bytes(width: int, height: int, seed: int = 0, fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, 100))
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def definition(batch_id: str = "b1", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "workflows-processing-specification-v1",
        "workspace": WS,
        "workflowId": "fake-image",
        "workflowParameters": {},
        "aggregationFormat": "jsonl",
    }
    spec.update(overrides.pop("spec", {}))
    body: dict[str, Any] = {
        "type": "simple-image-processing-v1",
        "jobInput": {"type": "staging-batch-input-v1", "batchId": batch_id},
        "computeConfiguration": {"type": "compute-configuration-v2", "machineType": "cpu"},
        "maxParallelTasks": 2,
        "processingSpecification": spec,
        "notificationsURL": "https://example.com/hook",
    }
    body.update(overrides)
    return body


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1",
         "-c", sql],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


@pytest.fixture(params=["sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgres":
        name = f"bf_jobs_{uuid.uuid4().hex[:10]}"
        _psql(f"CREATE DATABASE {name}")
        eng = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    else:
        name = ""
        eng = create_async_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}", connect_args={"timeout": 30}
        )
        event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()
        if name:
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Env:
    engine: AsyncEngine
    staging: LocalDirStaging
    notifier: RecordingNotifier
    service: JobService
    work_dir: Path
    wakers: list[Callable[[], None]]

    def scheduler(self, executor: Executor | None = None, **config: Any) -> Scheduler:
        config.setdefault("runner", RUNNER)
        config.setdefault("poll_interval", 0.5)
        config.setdefault("watch_interval", 0.05)
        config.setdefault("items_per_task", 3)
        config.setdefault("has_gpu", False)
        scheduler = Scheduler(
            self.engine,
            self.staging,
            executor or InlineExecutor(2),
            self.notifier,
            SchedulerConfig(work_dir=self.work_dir, **config),
        )
        self.wakers.append(scheduler.wake)
        return scheduler

    def wake(self) -> None:
        for waker in self.wakers:
            waker()

    async def wait_terminal(self, job_id: str, limit: float = 30.0) -> Job:
        with anyio.fail_after(limit):
            while True:
                job = await self.service.get_job(WS, job_id)
                if job.is_terminal:
                    return job
                await anyio.sleep(0.05)

    async def wait_for(self, predicate: Callable[[], Any], limit: float = 20.0) -> None:
        with anyio.fail_after(limit):
            while not await predicate():  # noqa: ASYNC110  # polls the catalog
                await anyio.sleep(0.02)


@pytest.fixture
async def env(engine: AsyncEngine, tmp_path: Path) -> Env:
    staging = LocalDirStaging(tmp_path / "staging")
    wakers: list[Callable[[], None]] = []
    holder: list[Env] = []

    def on_change() -> None:
        holder[0].wake()

    service = JobService(
        engine, staging, workflow_exists=KNOWN_WORKFLOWS.__contains__, on_change=on_change
    )
    created = Env(engine, staging, RecordingNotifier(), service, tmp_path / "work", wakers)
    holder.append(created)
    return created


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[anyio.CancelScope]:
    """Run ``scheduler`` in a task group; leaving the block cancels it (like a shutdown)."""
    async with anyio.create_task_group() as group:
        await group.start(scheduler.run)
        yield group.cancel_scope
        group.cancel_scope.cancel()
