"""Video sampling with PyAV on synthetic clips, and frames through the image workflows."""

from __future__ import annotations

import io
import itertools
import os

import pytest
from PIL import Image

from batchflow.server.workflows import (
    ImageMetadataWorkflow,
    ThumbnailWorkflow,
    WorkflowError,
    WorkItem,
    WorkResult,
    iter_frames,
    process_video,
)


def _video_item(path):
    return WorkItem(path.name, path, "video/mp4")


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_iter_frames_samples_by_timestamp(make_video, codec):
    path = make_video(f"clip-{codec}.mp4", seconds=2, fps=10, codec=codec)

    every = list(iter_frames(path, None))
    assert [index for index, _, _ in every] == list(range(20))
    times = [ts for _, ts, _ in every]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[0] == pytest.approx(0.0, abs=0.01)
    assert times[-1] == pytest.approx(1.9, abs=0.01)
    assert all(img.mode == "RGB" and img.size == (64, 48) for _, _, img in every)

    two = list(iter_frames(path, 2))
    assert [index for index, _, _ in two] == [0, 5, 10, 15]
    assert [ts for _, ts, _ in two] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.01)

    three = [ts for _, ts, _ in iter_frames(path, 3)]
    assert len(three) <= 2 * 3 + 1
    assert all(b - a >= 1 / 3 - 1e-6 for a, b in itertools.pairwise(three))


def test_iter_frames_rejects_bad_rate(make_video):
    with pytest.raises(ValueError, match="max_fps"):
        list(iter_frames(make_video(), 0))
    [error] = process_video(ImageMetadataWorkflow(), _video_item(make_video()), {}, -1)
    assert isinstance(error, WorkflowError)
    assert error.kind == "invalid-params"


def test_process_video_adds_frame_fields_and_names_outputs(make_video):
    item = _video_item(make_video("walk.mp4"))
    rows = list(process_video(ImageMetadataWorkflow(), item, {}, 2))
    assert all(isinstance(r, WorkResult) for r in rows)
    assert [(r.row["file_name"], r.row["frame_index"]) for r in rows] == [
        ("walk.mp4", 0),
        ("walk.mp4", 5),
        ("walk.mp4", 10),
        ("walk.mp4", 15),
    ]
    first = rows[0].row
    assert list(first)[:3] == ["file_name", "frame_index", "timestamp"]
    assert (first["width"], first["height"], first["format"]) == (64, 48, None)

    thumbs = list(process_video(ThumbnailWorkflow(), item, {"max_size": 32}, 2.0))
    names = [out.name for r in thumbs for out in r.images]
    assert names == ["thumbnail-000000", "thumbnail-000005", "thumbnail-000010", "thumbnail-000015"]
    with Image.open(io.BytesIO(thumbs[1].images[0].data)) as img:
        assert img.size == (32, 24)


def test_frame_failures_are_per_frame(make_video):
    class Picky:
        workflow_id = "picky"

        def process_image(self, item, image, params):
            if params["fail_at"] == image.getpixel((1, 1)):
                raise RuntimeError("boom")
            return WorkResult(row={"ok": True})

    item = _video_item(make_video())
    frames = list(iter_frames(item.path, None))
    target = frames[3][2].getpixel((1, 1))
    results = list(process_video(Picky(), item, {"fail_at": target}, None, concurrency=3))
    assert len(results) == 20
    errors = [r for r in results if isinstance(r, WorkflowError)]
    assert [(e.kind, e.frame_index) for e in errors] == [("workflow-failed", 3)]
    assert "boom" in errors[0].message


@pytest.mark.parametrize("damage", ["random", "truncated", "missing"])
def test_corrupt_video_is_one_error(make_video, tmp_path, damage):
    path = tmp_path / "bad.mp4"
    if damage == "random":
        path.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        data = make_video("whole.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    results = list(process_video(ImageMetadataWorkflow(), _video_item(path), {}, None))
    assert len(results) == 1
    [error] = results
    assert isinstance(error, WorkflowError)
    assert error.kind == "corrupt-video"
