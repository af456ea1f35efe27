"""The batch-processing job engine of ``batchflow serve``.

- :mod:`.ports`: what the engine needs from the server (StagingPort, Notifier).
- :mod:`.schema`: its catalog tables (own ``metadata``).
- :mod:`.service`: JobService, the API's backend.
- :mod:`.scheduler`: Scheduler, the background service that runs jobs.
- :mod:`.executors`: Executor Protocol, LocalProcessExecutor, InlineExecutor.
- :mod:`.routes`: the FastAPI router of the BP prefix.
- :mod:`.plugin`: ``server_plugin()``, the wiring into ``batchflow serve``.

Names are imported lazily: worker processes import only :mod:`.worker` and stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Executor",
    "InlineExecutor",
    "JobService",
    "JobsPlugin",
    "LocalProcessExecutor",
    "Notifier",
    "Scheduler",
    "SchedulerConfig",
    "StagedItem",
    "StagingPort",
    "TaskOutcome",
    "TaskSpec",
    "get_job_service",
    "metadata",
    "router",
    "server_plugin",
]

_WHERE = {
    "Executor": "executors",
    "InlineExecutor": "executors",
    "LocalProcessExecutor": "executors",
    "TaskOutcome": "executors",
    "TaskSpec": "executors",
    "JobService": "service",
    "Notifier": "ports",
    "StagedItem": "ports",
    "StagingPort": "ports",
    "Scheduler": "scheduler",
    "SchedulerConfig": "scheduler",
    "get_job_service": "routes",
    "router": "routes",
    "metadata": "schema",
    "server_plugin": "plugin",
    "JobsPlugin": "plugin",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
