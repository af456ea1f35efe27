"""A TaskRunner for the job engine tests, independent of the workflows package.

Row: ``sha256, width, height`` of the decoded image; outputs ``thumbnail`` (jpg) and ``gray``
(png). Params: ``sleep`` seconds per item (slow jobs for abort/timeout/crash tests).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable, Iterator

from PIL import Image

from batchflow.server.jobs._spec import TaskSpec
from batchflow.server.jobs.worker import ItemOutput, TaskItem

RUNNER = f"{__name__}:run"  # importable under whatever name pytest gave this module


def _encode(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def run(spec: TaskSpec, items: Iterable[TaskItem]) -> Iterator[tuple[TaskItem, ItemOutput]]:
    pause = float(spec.params.get("sleep", 0.0))
    for item in items:
        if pause:
            time.sleep(pause)
        data = item.path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = img.convert("RGB")
        except Exception as exc:
            yield item, ItemOutput(error={"kind": "corrupt-image", "message": str(exc)})
            continue
        row = {"sha256": hashlib.sha256(data).hexdigest(), "width": rgb.width, "height": rgb.height}
        thumb = rgb.copy()
        thumb.thumbnail((8, 8))
        images = (
            ("thumbnail", _encode(thumb, "JPEG"), "jpg"),
            ("gray", _encode(rgb.convert("L"), "PNG"), "png"),
        )
        yield item, ItemOutput(rows=(row,), images=images)
