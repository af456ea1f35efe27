"""The records a workflow consumes and produces, its Protocol, and the per-item runner.

A workflow turns one staged file (or one decoded video frame) into one result row plus optional
image outputs. A failure of one item is a :class:`WorkflowError` value, never a crashed task:
``run_items`` catches it (and any other exception a workflow raises) and yields it in place of
the result, so the scheduler can count failures against ``maxImageFailureRate``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ImageOutput",
    "WorkItem",
    "WorkResult",
    "Workflow",
    "WorkflowError",
    "ordered_map",
    "preferred_concurrency",
    "run_item",
    "run_items",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A staged file on local disk: its name in the batch, its path, its content type."""

    name: str
    path: Path
    content_type: str

    @property
    def is_video(self) -> bool:
        """True when the scheduler should run it through ``process_video``."""
        return self.content_type.lower().startswith("video/")


@dataclass(frozen=True, slots=True)
class ImageOutput:
    """One encoded image a workflow produced, e.g. ``("thumbnail", b"...", "jpg")``."""

    name: str
    data: bytes
    extension: str


@dataclass(frozen=True, slots=True)
class WorkResult:
    """The result row of one item (JSON-serialisable values) and its image outputs."""

    row: Mapping[str, Any]
    images: tuple[ImageOutput, ...] = ()


class WorkflowError(Exception):
    """One item failed (``kind``: corrupt-image, corrupt-video, workflow-failed, ...).

    It is a value the runner yields, not a crash of the task. Picklable, so it can travel back
    from a worker process.
    """

    def __init__(self, kind: str, message: str, *, frame_index: int | None = None) -> None:
        super().__init__(kind, message, frame_index)
        self.kind = kind
        self.message = message
        self.frame_index = frame_index

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.kind, self.message, self.frame_index))

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable failed-item record."""
        record: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.frame_index is not None:
            record["frame_index"] = self.frame_index
        return record


def _rebuild_error(kind: str, message: str, frame_index: int | None) -> WorkflowError:
    return WorkflowError(kind, message, frame_index=frame_index)


@runtime_checkable
class Workflow(Protocol):
    """Processes one item; ``image`` is the decoded frame for video frames, else ``None``.

    With ``image=None`` the workflow opens ``item.path`` itself. May raise ``WorkflowError``;
    any other exception is reported as ``workflow-failed`` by the runner.
    """

    @property
    def workflow_id(self) -> str:
        """The id jobs name in ``workflowId`` (a plain attribute satisfies this)."""
        ...

    def process_image(
        self, item: WorkItem, image: Image.Image | None, params: Mapping[str, Any]
    ) -> WorkResult: ...


def preferred_concurrency(workflow: Workflow) -> int:
    """The workflow's own ``concurrency`` attribute (remote workflows set it), else 1."""
    value = getattr(workflow, "concurrency", 1)
    return value if isinstance(value, int) and value >= 1 else 1


def as_workflow_error(exc: Exception) -> WorkflowError:
    """``exc`` itself when already a WorkflowError, else a ``workflow-failed`` one chained to it."""
    if isinstance(exc, WorkflowError):
        return exc
    error = WorkflowError("workflow-failed", f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def run_item(
    workflow: Workflow,
    item: WorkItem,
    image: Image.Image | None,
    params: Mapping[str, Any],
) -> WorkResult | WorkflowError:
    """``workflow.process_image`` with every per-item failure turned into a WorkflowError."""
    try:
        return workflow.process_image(item, image, params)
    except Exception as exc:  # noqa: BLE001  # a failing item must not crash the task
        return as_workflow_error(exc)


def ordered_map(fn: Callable[[T], R], inputs: Iterable[T], concurrency: int) -> Iterator[R]:
    """``map(fn, inputs)`` on up to ``concurrency`` threads, results in input order.

    At most ``2 * concurrency`` inputs are in flight, so memory stays bounded however long
    ``inputs`` is; closing the iterator early cancels what has not started and waits for the rest.
    """
    if concurrency <= 1:
        yield from map(fn, inputs)
        return
    window = 2 * concurrency
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="workflow") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for value in inputs:
                pending.append(pool.submit(fn, value))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def run_items(
    workflow: Workflow,
    items: Iterable[WorkItem],
    params: Mapping[str, Any],
    *,
    concurrency: int | None = None,
) -> Iterator[tuple[WorkItem, WorkResult | WorkflowError]]:
    """Run ``workflow`` on each file item; yield ``(item, result or error)`` in input order.

    ``concurrency`` > 1 uses threads (for I/O-bound remote workflows); ``None`` takes the
    workflow's preference (:func:`preferred_concurrency`). Items are files (``image=None``);
    video items go through :func:`batchflow.server.workflows.process_video` instead.
    """
    limit = preferred_concurrency(workflow) if concurrency is None else concurrency

    def one(item: WorkItem) -> tuple[WorkItem, WorkResult | WorkflowError]:
        return item, run_item(workflow, item, None, params)

    yield from ordered_map(one, items, limit)
