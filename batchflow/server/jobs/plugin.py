"""The job engine as a ``batchflow serve`` plugin (``batchflow.server.jobs.server_plugin()``).

Wires the engine to the server through its published extension points (see
``batchflow/server/README.md``): the staging catalog via ``CatalogStagingPort``, job webhooks
via ``OutboxNotifier``, the workflow registry, a :class:`LocalProcessExecutor`, and the
:class:`Scheduler` running in the app's task group. The routes get the API-key check and the
plugin's :class:`JobService` as router-level dependencies.

Settings: ``ServerSettings.workflows_file`` / ``job_workers`` (``batchflow serve
--workflows-file`` / ``--job-workers``) win; otherwise the plugin's own values, which
:func:`server_plugin` reads from ``BATCHFLOW_WORKFLOWS_FILE`` (a workflows file for the registry)
and ``BATCHFLOW_JOB_WORKERS`` (worker processes, default: CPU count).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Request
from sqlalchemy import MetaData

from batchflow.errors import ConfigError
from batchflow.server.jobs.executors import Executor, LocalProcessExecutor
from batchflow.server.jobs.routes import router as jobs_router
from batchflow.server.jobs.scheduler import Scheduler, SchedulerConfig
from batchflow.server.jobs.schema import metadata as jobs_metadata
from batchflow.server.jobs.service import JobService

if TYPE_CHECKING:
    from batchflow.server.context import ServerContext

__all__ = ["JobsPlugin", "KnownWorkflows", "server_plugin"]

_log = structlog.get_logger(__name__)


class KnownWorkflows:
    """``workflow_exists`` over the workflow registry, loaded once (in a thread: the import of
    the workflows package is slow, so the server does not wait for it to start)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ids: frozenset[str] | None = None
        self._lock = threading.Lock()

    def load(self) -> frozenset[str]:
        with self._lock:
            if self._ids is None:
                from batchflow.server.workflows import WorkflowRegistry

                registry = WorkflowRegistry.load(self.path)
                self._ids = frozenset(registry.known_ids())
                registry.close()
            return self._ids

    async def preload(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.load)
        except Exception:  # noqa: BLE001  # reported again by the first create_job
            _log.exception("could not load the workflow registry", path=str(self.path))

    def __call__(self, workflow_id: str) -> bool:
        return workflow_id in self.load()


class JobsPlugin:
    """``ServerPlugin`` of the job engine; ``metadata`` holds its tables."""

    metadata: MetaData = jobs_metadata

    def __init__(
        self,
        *,
        workflows_file: Path | None = None,
        workers: int | None = None,
        config: SchedulerConfig | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.workflows_file = workflows_file
        self.workers = workers
        self.config = config
        self.executor = executor
        self.service: JobService | None = None
        self.scheduler: Scheduler | None = None

    def _provide(self, request: Request) -> None:
        if self.service is not None:
            request.state.job_service = self.service

    def routers(self) -> Sequence[APIRouter]:
        from batchflow.server.core.auth import require_api_key
        from batchflow.server.staging.routes import check_workspace

        outer = APIRouter(
            dependencies=[
                Depends(require_api_key),
                Depends(check_workspace),
                Depends(self._provide),
            ]
        )
        outer.include_router(jobs_router)
        return [outer]

    async def run(
        self,
        ctx: ServerContext,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the scheduler; serve until cancelled; stop the worker processes."""
        from batchflow.server.staging.port import CatalogStagingPort, OutboxNotifier

        workflows_file = ctx.settings.workflows_file or self.workflows_file
        workers = ctx.settings.job_workers or self.workers
        known = KnownWorkflows(workflows_file)
        staging = CatalogStagingPort(ctx.staging)
        notifier = OutboxNotifier(ctx.staging, ctx.publishable_key, ctx.dispatcher.wake)
        config = self.config or SchedulerConfig(work_dir=ctx.settings.data_dir / "jobs")
        config = replace(config, workflows_file=workflows_file)
        executor = self.executor or LocalProcessExecutor(workers)
        scheduler = Scheduler(ctx.engine, staging, executor, notifier, config)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(known.preload)
                await group.start(scheduler.run)
                self.scheduler = scheduler
                self.service = JobService(
                    ctx.engine,
                    staging,
                    workflow_exists=known,
                    on_change=scheduler.wake,
                )
                task_status.started()
        finally:
            self.service = None
            with anyio.CancelScope(shield=True):
                await executor.aclose()


def server_plugin() -> JobsPlugin:
    """The plugin ``batchflow serve`` loads (see ``batchflow.server.app.default_plugins``)."""
    raw_file = os.environ.get("BATCHFLOW_WORKFLOWS_FILE")
    raw_workers = os.environ.get("BATCHFLOW_JOB_WORKERS")
    try:
        workers = int(raw_workers) if raw_workers else None
    except ValueError as exc:
        raise ConfigError(f"invalid BATCHFLOW_JOB_WORKERS {raw_workers!r}: not an integer") from exc
    return JobsPlugin(workflows_file=Path(raw_file) if raw_file else None, workers=workers)
