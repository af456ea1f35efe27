"""The workflow layer of ``batchflow serve``'s job engine (synchronous: runs in worker processes).

A job's ``workflowId`` is resolved by :class:`WorkflowRegistry` to a :class:`Workflow`; the
scheduler runs file items with :func:`run_items` and video items with :func:`process_video`.
Per-item failures come back as :class:`WorkflowError` values, never as crashed tasks.
"""

from __future__ import annotations

from batchflow.server.workflows._types import (
    ImageOutput,
    Workflow,
    WorkflowError,
    WorkItem,
    WorkResult,
    ordered_map,
    preferred_concurrency,
    run_item,
    run_items,
)
from batchflow.server.workflows.images import (
    ImageMetadataWorkflow,
    ThumbnailWorkflow,
    hamming_distance,
    perceptual_hash,
)
from batchflow.server.workflows.registry import (
    ENTRY_POINT_GROUP,
    FunctionWorkflow,
    UnknownWorkflowError,
    WorkflowRegistry,
)
from batchflow.server.workflows.remote import RemoteSettings, RemoteWorkflow
from batchflow.server.workflows.video import iter_frames, process_video

__all__ = [
    "ENTRY_POINT_GROUP",
    "FunctionWorkflow",
    "ImageMetadataWorkflow",
    "ImageOutput",
    "RemoteSettings",
    "RemoteWorkflow",
    "ThumbnailWorkflow",
    "UnknownWorkflowError",
    "WorkItem",
    "WorkResult",
    "Workflow",
    "WorkflowError",
    "WorkflowRegistry",
    "hamming_distance",
    "iter_frames",
    "ordered_map",
    "perceptual_hash",
    "preferred_concurrency",
    "process_video",
    "run_item",
    "run_items",
]
