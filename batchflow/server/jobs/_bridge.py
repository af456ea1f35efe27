"""The default worker-side runner: staged items through :mod:`batchflow.server.workflows`.

Images go through ``run_items`` (``spec.workers`` threads); videos through ``process_video``
with ``spec.max_video_fps``, one row per sampled frame. The registry is loaded once per worker
process and workflows file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from batchflow.server.jobs._spec import TaskSpec
from batchflow.server.jobs.worker import ItemOutput, TaskItem

__all__ = ["run_workflow"]

_REGISTRIES: dict[Path | None, Any] = {}


def _registry(path: Path | None) -> Any:
    from batchflow.server.workflows import WorkflowRegistry

    registry = _REGISTRIES.get(path)
    if registry is None:
        registry = WorkflowRegistry.load(path)
        _REGISTRIES[path] = registry
    return registry


def run_workflow(
    spec: TaskSpec, items: Iterable[TaskItem]
) -> Iterator[tuple[TaskItem, ItemOutput]]:
    """The :class:`~batchflow.server.jobs.worker.TaskRunner` used unless a test plugs another."""
    from batchflow.server.workflows import (
        WorkflowError,
        WorkItem,
        WorkResult,
        process_video,
        run_items,
    )

    workflow = _registry(spec.workflows_file).resolve(spec.workflow_id)
    in_flight: deque[TaskItem] = deque()  # run_items keeps input order

    def work_items(source: Iterable[TaskItem]) -> Iterator[WorkItem]:
        for item in source:
            in_flight.append(item)
            yield WorkItem(name=item.name, path=item.path, content_type=item.content_type)

    def convert(result: WorkResult | WorkflowError) -> ItemOutput:
        if isinstance(result, WorkflowError):
            return ItemOutput(error={"kind": result.kind, "message": result.message})
        images = tuple((out.name, out.data, out.extension) for out in result.images)
        return ItemOutput(rows=(dict(result.row),), images=images)

    if spec.job_type != "simple-video-processing-v1":
        for _work_item, result in run_items(
            workflow, work_items(items), spec.params, concurrency=spec.workers
        ):
            yield in_flight.popleft(), convert(result)
        return
    for item in items:
        work_item = WorkItem(name=item.name, path=item.path, content_type=item.content_type)
        rows: list[dict[str, Any]] = []
        images: list[tuple[str, bytes, str]] = []
        error: dict[str, Any] | None = None
        for frame in process_video(
            workflow, work_item, spec.params, spec.max_video_fps, concurrency=spec.workers
        ):
            if isinstance(frame, WorkflowError):
                if frame.frame_index is None:
                    error = {"kind": frame.kind, "message": frame.message}
                else:
                    rows.append({"frame_index": frame.frame_index, "error": frame.to_record()})
            else:
                rows.append(dict(frame.row))
                images.extend((out.name, out.data, out.extension) for out in frame.images)
        yield item, ItemOutput(rows=tuple(rows), images=tuple(images), error=error)
