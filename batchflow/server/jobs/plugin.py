"""The job engine as a ``batchflow serve`` plugin (``batchflow.server.jobs.server_plugin()``).

Wires the engine to the server through its published extension points (see
``batchflow/server/README.md``): the staging catalog via ``CatalogStagingPort``, job webhooks
via ``OutboxNotifier``, the workflow registry, the executor ``--executor`` names, and the
:class:`Scheduler` running in the app's task group. The routes get the API-key check and the
plugin's :class:`JobService` as router-level dependencies.

Settings: ``ServerSettings.workflows_file`` / ``job_workers`` (``batchflow serve
--workflows-file`` / ``--job-workers``) win; otherwise the plugin's own values, which
:func:`server_plugin` reads from ``BATCHFLOW_WORKFLOWS_FILE`` (a workflows file for the registry)
and ``BATCHFLOW_JOB_WORKERS`` (worker processes, default: CPU count).
"""

from __future__ import annotations

import os
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
from batchflow.server.jobs.executors import Executor, make_executor
from batchflow.server.jobs.routes import router as jobs_router
from batchflow.server.jobs.scheduler import Scheduler, SchedulerConfig
from batchflow.server.jobs.schema import metadata as jobs_metadata
from batchflow.server.jobs.service import JobService

if TYPE_CHECKING:
    from batchflow.server.context import ServerContext

__all__ = ["JobsPlugin", "KnownWorkflows", "server_plugin"]

_log = structlog.get_logger(__name__)


def _registry_ids(path: Path | None) -> frozenset[str]:
    """The workflow ids of the registry (built-ins, entry points, ``path``); slow, blocking."""
    from batchflow.server.workflows import WorkflowRegistry

    with WorkflowRegistry.load(path) as registry:
        return frozenset(registry.known_ids())


class KnownWorkflows:
    """``workflow_exists`` over the workflow registry, loaded once at start-up in a thread.

    Importing the workflows package (and a workflows file's callables: user code) is slow and
    blocking, so it never runs on the event loop: :meth:`load` runs it in a worker thread while
    the server starts, and a check that arrives first awaits it without blocking the loop.
    A registry that failed to load makes every check raise its ConfigError (a 400 naming the
    file and the entry) until the server is restarted with a fixed file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded = anyio.Event()
        self._ids: frozenset[str] = frozenset()
        self._failure: str | None = None

    async def load(self) -> None:
        """Load the registry in a worker thread (once; run it in the plugin's task group)."""
        try:
            self._ids = await anyio.to_thread.run_sync(_registry_ids, self.path)
        except ConfigError as exc:
            _log.error("could not load the workflow registry", error=exc.message)
            self._failure = exc.message
        except Exception as exc:  # noqa: BLE001  # reported by every check instead
            _log.exception("could not load the workflow registry", path=str(self.path))
            self._failure = f"could not load the workflow registry: {type(exc).__name__}: {exc}"
        self._loaded.set()

    async def __call__(self, workflow_id: str) -> bool:
        await self._loaded.wait()
        if self._failure is not None:
            raise ConfigError(self._failure)
        return workflow_id in self._ids


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
        executor = self.executor or make_executor(ctx.settings.executor, workers)
        scheduler = Scheduler(ctx.engine, staging, executor, notifier, config)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(known.load)
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
