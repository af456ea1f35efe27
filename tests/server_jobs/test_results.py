"""Jobs end to end over real HTTP: staged -> processed -> exported, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import httpx
from PIL import Image

from batchflow.samples import make_image_bytes, make_video
from tests.server_fixture import ServerHandle

from ._helpers import (
    bp,
    create_job,
    definition,
    download_files,
    result_rows,
    stages,
    tasks,
    untar,
    upload_images,
    upload_tar,
    upload_video,
    wait_terminal,
)
from .conftest import new_id


def _check_export(
    client: httpx.Client, server: ServerHandle, job_id: str, processing: dict[str, bytes]
) -> None:
    """The export stage's archives hold exactly the processing stage's files, byte for byte."""
    export = stages(client, server, job_id)["export"]
    assert export["statusType"] == "succeeded"
    [export_batch] = export["outputBatches"]
    archives = download_files(client, server, export_batch)
    assert archives
    assert all(name.endswith(".tar.gz") for name in archives)
    members: dict[str, bytes] = {}
    for data in archives.values():
        members.update(untar(data))
    assert members == processing


def test_image_job_end_to_end(staging_server: ServerHandle) -> None:
    server = staging_server
    batch, job_id = new_id("img"), new_id("job")
    inputs = {f"img-{i}.jpg": make_image_bytes(i, size=(40 + i, 30)) for i in range(5)}
    with server.client() as client:
        upload_images(client, server, batch, inputs)
        body = definition(batch, workspace=server.workspace)
        create_job(client, server, job_id, body)
        create_job(client, server, job_id, body)  # same definition again: idempotent
        other = client.post(f"{bp(server)}/jobs/{job_id}", json={**body, "maxParallelTasks": 3})
        assert other.status_code == 409, other.text
        job = wait_terminal(client, server, job_id)
        assert job["error"] is False, job
        assert job["jobDefinition"] == body
        found = stages(client, server, job_id)
        assert list(found) == ["processing", "export"]
        processing = found["processing"]
        assert processing["statusType"] == "succeeded"
        assert processing["tasksNumber"] == len(tasks(client, server, job_id)) == 2
        [out_batch] = processing["outputBatches"]
        files = download_files(client, server, out_batch)
        assert sorted(files) == ["00000.jsonl", "00001.jsonl"]
        rows = result_rows(files)
        assert sorted(row["file_name"] for row in rows) == sorted(inputs)  # one row per image
        for row in rows:
            data = inputs[row["file_name"]]
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
            assert row["byte_size"] == len(data)
            assert (row["width"], row["height"]) == Image.open(io.BytesIO(data)).size
        _check_export(client, server, job_id, files)


def test_persisted_thumbnails(job_server: ServerHandle, client: httpx.Client) -> None:
    batch, job_id = new_id("thumb"), new_id("job")
    inputs = {f"t-{i}.jpg": make_image_bytes(i, size=(300, 200)) for i in range(3)}
    upload_images(client, job_server, batch, inputs)
    spec = {"persistImagesOutputs": True, "imagesOutputsToBePersisted": ["thumbnail"]}
    create_job(client, job_server, job_id, definition(batch, "thumbnail", spec=spec))
    job = wait_terminal(client, job_server, job_id)
    assert not job["error"], job
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    thumbs = download_files(client, job_server, out_batch, "images")
    assert sorted(thumbs) == sorted(f"images/{name}/thumbnail.jpg" for name in inputs)
    rows = {
        row["file_name"]: row
        for row in result_rows(download_files(client, job_server, out_batch, "results"))
    }
    assert sorted(rows) == sorted(inputs)
    for name, data in thumbs.items():
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG"
        row = rows[name.split("/")[1]]
        assert (row["width"], row["height"]) == (300, 200)
        assert image.size == (row["thumb_width"], row["thumb_height"])
        assert max(image.size) < 300
    _check_export(client, job_server, job_id, download_files(client, job_server, out_batch))


def test_csv_results_from_a_bulk_tar(job_server: ServerHandle, client: httpx.Client) -> None:
    batch, job_id = new_id("tar"), new_id("job")
    inputs = {f"d/p-{i}.png": make_image_bytes(i, size=(24, 16 + i), fmt="PNG") for i in range(4)}
    upload_tar(client, job_server, batch, inputs)
    body = definition(batch, spec={"aggregationFormat": "csv"})
    create_job(client, job_server, job_id, body)
    job = wait_terminal(client, job_server, job_id)
    assert not job["error"]
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    files = download_files(client, job_server, out_batch)
    assert sorted(files) == ["00000.csv", "00001.csv"]
    header = files["00000.csv"].decode().splitlines()[0].split(",")
    assert header[0] == "file_name"
    rows = result_rows(files)
    assert sorted(row["file_name"] for row in rows) == sorted(inputs)
    for row in rows:
        image = Image.open(io.BytesIO(inputs[row["file_name"]]))
        assert row["sha256"] == hashlib.sha256(inputs[row["file_name"]]).hexdigest()
        assert (int(row["width"]), int(row["height"])) == image.size
        assert row["format"] == "PNG"
    _check_export(client, job_server, job_id, files)


def test_video_job_rows_per_sampled_frame(
    job_server: ServerHandle, client: httpx.Client, tmp_path: Path
) -> None:
    batch, job_id = new_id("vid"), new_id("job")
    clip = make_video(tmp_path / "clip.mp4", seconds=2.0, fps=10)
    upload_video(client, job_server, batch, "clip.mp4", clip.read_bytes())
    body = definition(
        batch,
        type="simple-video-processing-v1",
        spec={"maxVideoFPS": 2},
    )
    create_job(client, job_server, job_id, body)
    job = wait_terminal(client, job_server, job_id)
    assert not job["error"], job
    [out_batch] = stages(client, job_server, job_id)["processing"]["outputBatches"]
    files = download_files(client, job_server, out_batch)
    rows = result_rows(files)
    assert rows
    assert {row["file_name"] for row in rows} == {"clip.mp4"}
    indexes = [row["frame_index"] for row in rows]
    assert indexes == sorted(set(indexes))
    times = [row["timestamp"] for row in rows]
    assert 3 <= len(rows) <= 5  # 2 s at 2 fps out of 10 fps
    assert times == sorted(times)
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(times))
    assert all(row["width"] == 96 and row["height"] == 64 for row in rows)
    _check_export(client, job_server, job_id, files)
