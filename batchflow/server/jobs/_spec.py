"""What the scheduler hands an executor (:class:`TaskSpec`) and gets back (:class:`TaskOutcome`).

Both are plain picklable records that name inputs and outputs as blob keys of one store (its
locator travels with the spec), never local paths, so any executor (a local process pool today,
a Ray cluster later) can ship them to where the work runs. Kept free of heavy imports: worker
processes import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batchflow.errors import PermanentError
from batchflow.server.jobs.ports import OutputBlob, StagedItem

__all__ = ["DEFAULT_RUNNER", "TaskFailedError", "TaskOutcome", "TaskSpec"]

DEFAULT_RUNNER = "batchflow.server.jobs._bridge:run_workflow"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One processing task: run ``workflow_id`` over ``items`` (blobs of ``blob_store``) and
    store its outputs under the key prefix ``output_prefix`` of the same store.

    ``runner`` is the ``module:attribute`` import path of the worker-side
    :class:`~batchflow.server.jobs.worker.TaskRunner` (the workflows bridge by default; tests
    plug in a fake). ``workers`` is the job's ``workersPerMachine``.
    """

    job_id: str
    task_id: str
    workflow_id: str
    job_type: str
    items: tuple[StagedItem, ...]
    params: dict[str, Any]
    max_video_fps: float | None
    machine_type: Literal["cpu", "gpu"]
    workers: int
    aggregation_format: Literal["csv", "jsonl"]
    persist_outputs: bool
    outputs_to_persist: tuple[str, ...]
    blob_store: str
    output_prefix: str
    workflows_file: Path | None = None
    image_input_name: str | None = None
    runner: str = DEFAULT_RUNNER


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """A finished task: item counts, its stored result file and images, time spent."""

    processed: int
    failed: int
    result: OutputBlob
    images: tuple[OutputBlob, ...]
    machine_seconds: float
    errors: tuple[dict[str, Any], ...] = ()  # a sample: {"item", "kind", "message"}


class TaskFailedError(PermanentError):
    """The task as a whole could not run (worker crashed, workflow failed to load)."""
