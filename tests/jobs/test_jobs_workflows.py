"""Jobs through the real workflows package (the default runner bridge), images and videos."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from batchflow.server.jobs._spec import DEFAULT_RUNNER
from batchflow.server.jobs.executors import LocalProcessExecutor

from .conftest import WS, Env, definition, image_bytes, running

pytestmark = pytest.mark.anyio


def _video(path: Path, seconds: float = 1.0, fps: int = 10) -> bytes:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(round(seconds * fps)):
            img = Image.new("RGB", (64, 48), (index * 20 % 256, 100, 50))
            for packet in stream.encode(av.VideoFrame.from_image(img)):  # type: ignore[no-untyped-call]
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


async def _rows(env: Env, job_id: str) -> list[dict[str, Any]]:
    stages = await env.service.list_stages(WS, job_id)
    items = await env.staging.list_items(WS, stages[0].output_batches[0], "results")
    return [json.loads(x) for item in items for x in env.staging.read(item).splitlines()]


async def test_image_metadata_workflow_in_worker_processes(env: Env) -> None:
    inputs = {f"m{i}.jpg": image_bytes(20 + i, 10, seed=i, fmt="JPEG") for i in range(4)}
    inputs["broken.jpg"] = b"\xff\xd8 nope"
    env.staging.add_input(WS, "b1", inputs)
    body = definition(maxImageFailureRate=0.5, spec={"workflowId": "image-metadata"})
    await env.service.create_job(WS, "job-meta", body)
    executor = LocalProcessExecutor(1)
    try:
        async with running(env.scheduler(executor, runner=DEFAULT_RUNNER)):
            job = await env.wait_terminal("job-meta")
    finally:
        await executor.aclose()
    assert not job.error
    rows = {r["file_name"]: r for r in await _rows(env, "job-meta")}
    assert set(rows) == set(inputs)
    for name, data in inputs.items():
        if name == "broken.jpg":
            assert rows[name]["error"]["kind"] == "corrupt-image"
        else:
            assert rows[name]["sha256"] == hashlib.sha256(data).hexdigest()
            assert rows[name]["width"] == Image.open(io.BytesIO(data)).width


async def test_video_job_samples_frames_and_persists_thumbnails(env: Env, tmp_path: Path) -> None:
    env.staging.add_input(
        WS, "v1", {"clip.mp4": _video(tmp_path / "clip.mp4")},
        content_type="video/mp4", batch_content_type="videos",
    )  # fmt: skip
    body = definition(
        "v1",
        type="simple-video-processing-v1",
        spec={
            "workflowId": "thumbnail",
            "maxVideoFPS": 2,
            "persistImagesOutputs": True,
            "imagesOutputsToBePersisted": ["thumbnail"],
        },
    )
    await env.service.create_job(WS, "job-vid", body)
    async with running(env.scheduler(runner=DEFAULT_RUNNER)):
        job = await env.wait_terminal("job-vid")
    assert not job.error
    rows = await _rows(env, "job-vid")
    assert [r["frame_index"] for r in rows] == [0, 5]  # 10 fps sampled at 2 fps
    assert all(r["file_name"] == "clip.mp4" for r in rows)
    stages = await env.service.list_stages(WS, "job-vid")
    images = await env.staging.list_items(WS, stages[0].output_batches[0], "images")
    assert sorted(i.name for i in images) == [
        "images/clip.mp4/thumbnail-000000.jpg",
        "images/clip.mp4/thumbnail-000005.jpg",
    ]
