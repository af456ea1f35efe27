"""Video items: decode with PyAV, sample frames by timestamp, run each through an image workflow.

Sampling keeps a frame when its presentation time is at least ``1 / max_fps`` after the last
kept frame (the first frame is always kept), so consecutive output frames are never closer than
``1 / max_fps`` seconds and the output rate is at most ``max_fps``. A video that cannot be
opened or decoded becomes one ``corrupt-video`` WorkflowError (after the rows of any frames
decoded before the damage).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchflow.server.workflows._types import (
    ImageOutput,
    Workflow,
    WorkflowError,
    WorkItem,
    WorkResult,
    ordered_map,
    preferred_concurrency,
    run_item,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["iter_frames", "process_video"]

# Float timestamps (pts * time_base) can land a hair below an exact multiple of the interval.
_EPSILON = 1e-6


def iter_frames(path: Path, max_fps: float | None) -> Iterator[tuple[int, float, Image.Image]]:
    """Yield ``(frame_index, timestamp_seconds, rgb_image)`` of the first video stream.

    ``frame_index`` counts decoded frames of the source stream from 0 (skipped ones included);
    ``max_fps=None`` yields every frame. Raises ``WorkflowError("corrupt-video")`` when the file
    cannot be opened, has no video stream, or fails to decode.
    """
    import av

    if max_fps is not None and not max_fps > 0:
        raise ValueError(f"max_fps must be positive or None, got {max_fps!r}")
    interval = None if max_fps is None else 1.0 / max_fps
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise WorkflowError("corrupt-video", f"{path.name}: cannot open video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise WorkflowError("corrupt-video", f"{path.name}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else None
        last: float | None = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.time is not None:
                    timestamp = float(frame.time)
                else:
                    timestamp = index / rate if rate else float(index)
                if (
                    interval is not None
                    and last is not None
                    and timestamp - last < interval - _EPSILON
                ):
                    continue
                last = timestamp
                image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
                yield index, timestamp, image
        except av.FFmpegError as exc:
            raise WorkflowError("corrupt-video", f"{path.name}: decoding failed: {exc}") from exc


def _frame_result(
    item: WorkItem, index: int, timestamp: float, result: WorkResult | WorkflowError
) -> WorkResult | WorkflowError:
    if isinstance(result, WorkflowError):
        return WorkflowError(result.kind, result.message, frame_index=index)
    rest = {
        k: v for k, v in result.row.items() if k not in {"file_name", "frame_index", "timestamp"}
    }
    row = {"file_name": item.name, "frame_index": index, "timestamp": timestamp, **rest}
    images = tuple(
        ImageOutput(f"{out.name}-{index:06d}", out.data, out.extension) for out in result.images
    )
    return WorkResult(row=row, images=images)


def process_video(
    workflow: Workflow,
    item: WorkItem,
    params: Mapping[str, Any],
    max_fps: float | None,
    *,
    concurrency: int | None = None,
) -> Iterator[WorkResult | WorkflowError]:
    """Run ``workflow`` on each sampled frame of the video ``item``, in frame order.

    Each row starts with ``file_name`` (the video's), ``frame_index`` and ``timestamp``; image
    outputs are renamed ``<name>-<frame_index:06d>``. A per-frame failure is a WorkflowError
    with ``frame_index`` set; a corrupt video ends the stream with one ``corrupt-video`` error;
    a non-positive ``max_fps`` gives one ``invalid-params`` error.
    ``concurrency`` as in ``run_items`` (``None``: the workflow's preference).
    """
    if max_fps is not None and not max_fps > 0:
        yield WorkflowError("invalid-params", f"max_fps must be positive, got {max_fps!r}")
        return
    limit = preferred_concurrency(workflow) if concurrency is None else concurrency

    def frames() -> Iterator[tuple[int, float, Image.Image] | WorkflowError]:
        # The decode error travels as a value so frames already in flight still finish.
        try:
            yield from iter_frames(item.path, max_fps)
        except WorkflowError as exc:
            yield exc

    def one(frame: tuple[int, float, Image.Image] | WorkflowError) -> WorkResult | WorkflowError:
        if isinstance(frame, WorkflowError):
            return frame
        index, timestamp, image = frame
        return _frame_result(item, index, timestamp, run_item(workflow, item, image, params))

    produced = False
    for result in ordered_map(one, frames(), limit):
        produced = True
        yield result
    if not produced:
        yield WorkflowError("corrupt-video", f"{item.name}: no decodable frames")
