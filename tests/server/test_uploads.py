"""Direct image uploads, signed video/tar PUTs, tar safety, blob downloads and signatures."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tarfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import httpx
import pytest

from batchflow.errors import ConflictError, TransientError
from batchflow.server.app import open_services
from batchflow.server.core.settings import ServerSettings
from tests.server._helpers import image_bytes, run_receiver, shards_done, wait_for
from tests.server_fixture import ServerHandle


def _upload_image(
    client: httpx.Client, server: ServerHandle, batch_id: str, name: str, data: bytes, **params: str
) -> httpx.Response:
    return client.post(
        f"{server.ds}/batches/{batch_id}/upload/image",
        params={"fileName": name, **params},
        files={name: (name, data, "image/jpeg")},  # the reference client names the part
    )


def test_upload_image_then_download_with_range(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    data = image_bytes("one")
    answer = _upload_image(client, staging_server, batch_id, "one.jpg", data, displayName="D")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    # the same bytes again are a no-op, other bytes under the same name a conflict
    assert _upload_image(client, staging_server, batch_id, "one.jpg", data).status_code == 200
    clash = _upload_image(client, staging_server, batch_id, "one.jpg", image_bytes("two"))
    assert clash.status_code == 409
    batch = client.get(f"{staging_server.ds}/batches/{batch_id}").json()["batch"]
    assert (batch["batchType"], batch["batchContentType"], batch["displayName"]) == (
        "simple-batch",
        "images",
        "D",
    )
    files = client.get(f"{staging_server.ds}/batches/{batch_id}/list").json()["filesMetadata"]
    assert len(files) == 1
    url = files[0]["downloadURL"]
    with httpx.Client(trust_env=False) as anon:  # signed URLs need no API key
        full = anon.get(url)
        assert full.status_code == 200
        assert full.content == data
        part = anon.get(url, headers={"Range": "bytes=2-11"})
        assert part.status_code == 206
        assert part.content == data[2:12]
        assert part.headers["content-range"] == f"bytes 2-11/{len(data)}"


def test_concurrent_first_uploads_into_a_new_batch_all_land(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    # several requests race to create the batch; none may delete another's fresh batch
    names = [f"race-{i}.jpg" for i in range(8)]
    with httpx.Client(headers=client.headers, timeout=30, trust_env=False) as other:

        def send(name: str) -> int:
            return _upload_image(
                other, staging_server, batch_id, name, image_bytes(name)
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, names))
    assert statuses == [200] * len(names)
    count = client.get(f"{staging_server.ds}/batches/{batch_id}/count").json()
    assert count == {"count": len(names)}


def test_signed_url_tampering_and_expiry(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    assert _upload_image(client, staging_server, batch_id, "a.png", image_bytes("a")).is_success
    url = client.get(f"{staging_server.ds}/batches/{batch_id}/list").json()["filesMetadata"][0][
        "downloadURL"
    ]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    secret = (staging_server.data_dir / "url_secret").read_text().strip().encode()
    past = str(int(time.time()) - 10)
    expired_sig = hmac.new(secret, f"GET\n{parts.path}\n{past}".encode(), hashlib.sha256)
    with httpx.Client(trust_env=False) as anon:
        cases = {
            "flipped sig": {
                **query,
                "sig": query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1"),
            },
            "later expiry": {**query, "expires": str(int(query["expires"]) + 1000)},
            "no sig": {"expires": query["expires"]},
            "expired": {"expires": past, "sig": expired_sig.hexdigest()},
        }
        for label, params in cases.items():
            answer = anon.get(base, params=params)
            assert answer.status_code == 403, label
            assert "error" in answer.json()
        other_path = base.rsplit("/", 1)[0] + "/other"
        assert anon.get(other_path, params=query).status_code == 403
        assert anon.get(base, params=query).status_code == 200


def test_upload_image_limits_and_mixing(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    big = b"\xff\xd8" + b"\0" * (20 * 1024 * 1024)
    answer = _upload_image(client, staging_server, batch_id, "big.jpg", big)
    assert answer.status_code == 413
    assert "error" in answer.json()
    two_parts = client.post(
        f"{staging_server.ds}/batches/{batch_id}/upload/image",
        params={"fileName": "a.jpg"},
        files=[("a", ("a.jpg", b"1")), ("b", ("b.jpg", b"2"))],
    )
    assert two_parts.status_code == 400
    not_image = _upload_image(client, staging_server, batch_id, "notes.txt", b"hello")
    assert not_image.status_code == 400
    assert _upload_image(client, staging_server, batch_id, "ok.jpg", image_bytes("ok")).is_success
    bulk = client.post(f"{staging_server.ds}/batches/{batch_id}/bulk-upload/image-files")
    assert bulk.status_code == 409
    refs = {"imageReferences": [{"name": "r.jpg", "url": "http://127.0.0.1:1/r.jpg"}]}
    bulk_refs = client.post(
        f"{staging_server.ds}/batches/{batch_id}/bulk-upload/image-references", json=refs
    )
    assert bulk_refs.status_code == 409
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 1}


def test_video_upload_via_signed_put(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    answer = client.post(
        f"{staging_server.ds}/batches/{batch_id}/upload/video", params={"fileName": "clip.mp4"}
    )
    assert answer.status_code == 200, answer.text
    details = answer.json()["signedURLDetails"]
    assert details["extensionHeaders"] == {}
    video = b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 100
    with httpx.Client(trust_env=False) as anon:
        bad = anon.put(details["uploadURL"].replace("sig=", "sig=0"), content=video)
        assert bad.status_code == 403
        put = anon.put(details["uploadURL"], content=video, headers=details["extensionHeaders"])
        assert put.status_code == 200, put.text
        # a re-send of the same bytes (its first answer lost) is a no-op; other bytes are not
        again = anon.put(details["uploadURL"], content=video)
        assert again.status_code == 200, again.text
        other = anon.put(details["uploadURL"], content=video[:-1] + b"x")
        assert other.status_code == 409, other.text
        assert "other content" in other.json()["error"]
        longer = anon.put(details["uploadURL"], content=video + b"x")
        assert longer.status_code == 409, longer.text
    files = client.get(f"{staging_server.ds}/batches/{batch_id}/list").json()["filesMetadata"]
    assert [(f["fileName"], f["size"], f["contentType"]) for f in files] == [
        ("clip.mp4", len(video), "video/mp4")
    ]
    assert httpx.get(files[0]["downloadURL"]).content == video
    batch = client.get(f"{staging_server.ds}/batches/{batch_id}").json()["batch"]
    assert (batch["batchType"], batch["batchContentType"]) == ("simple-batch", "videos")


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _put_tar(client: httpx.Client, server: ServerHandle, batch_id: str, body: bytes) -> None:
    answer = client.post(f"{server.ds}/batches/{batch_id}/bulk-upload/image-files")
    assert answer.status_code == 200, answer.text
    url = answer.json()["signedURLDetails"]["uploadURL"]
    put = httpx.put(url, content=body, timeout=60)
    assert put.status_code == 200, put.text


def test_tar_upload_extracts_safely(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    with run_receiver() as receiver:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            config = {"ingestId": f"tar-{batch_id}", "notificationsURL": receiver.url}
            _add(tar, "notification_config.json", json.dumps(config).encode())
            _add(tar, "a.jpg", image_bytes("a"))
            _add(tar, "sub/b.png", image_bytes("b", "PNG"))
            _add(tar, "../x.jpg", image_bytes("x"))
            _add(tar, "/abs.jpg", image_bytes("abs"))
            _add(tar, "link.jpg", type=tarfile.SYMTYPE, linkname="a.jpg")
            _add(tar, "hard.jpg", type=tarfile.LNKTYPE, linkname="a.jpg")
            _add(tar, "fifo.jpg", type=tarfile.FIFOTYPE)
            _add(tar, "dev.jpg", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
            _add(tar, "notes.txt", b"not an image")
            _add(tar, "huge.jpg", b"\0" * (20 * 1024 * 1024 + 1))
        _put_tar(client, staging_server, batch_id, buffer.getvalue())
        wait_for(lambda: shards_done(client, staging_server.ds, batch_id), timeout=60)
        note = wait_for(
            lambda: [
                b
                for b in receiver.delivered()
                if b["notification"]["type"] == "ingest-files-status-notification-v1"
            ]
        )[0]
    assert note["ingest_id"] == f"tar-{batch_id}"
    assert sorted(note["notification"]["ingested_files"]) == ["a.jpg", "sub/b.png"]
    failures = {f["file_name"]: f["type"] for f in note["notification"]["failed_files"]}
    unsafe = [n for n, t in failures.items() if t == "unsafe-archive-member"]
    assert len(unsafe) == 6, failures
    assert {"link.jpg", "hard.jpg", "fifo.jpg", "dev.jpg"} <= set(unsafe)
    assert failures["notes.txt"] == "unsupported-file-type"
    assert failures["huge.jpg"] == "file-size-limit-exceeded"
    files = client.get(f"{staging_server.ds}/batches/{batch_id}/list").json()["filesMetadata"]
    by_name = {f["fileName"]: f for f in files}
    assert set(by_name) == {"a.jpg", "sub/b.png"}
    assert httpx.get(by_name["sub/b.png"]["downloadURL"]).content == image_bytes("b", "PNG")
    shards = client.get(f"{staging_server.ds}/batches/{batch_id}/shards").json()["shards"]
    assert [(s["statusName"], s["shardObjectsCount"]) for s in shards] == [("completed", 10)]
    # nothing escaped the blob store
    assert not (staging_server.data_dir / "x.jpg").exists()
    assert not (staging_server.data_dir.parent / "x.jpg").exists()


def test_tar_resend_is_a_duplicate_and_garbage_fails(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "notification_config.json", json.dumps({"ingestId": "same"}).encode())
        _add(tar, "a.jpg", image_bytes("a"))
    body = buffer.getvalue()
    _put_tar(client, staging_server, batch_id, body)
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id))
    _put_tar(client, staging_server, batch_id, body)
    garbage_batch = batch_id + "-g"
    _put_tar(client, staging_server, garbage_batch, b"this is not a tar" * 100)
    wait_for(lambda: shards_done(client, staging_server.ds, garbage_batch))
    shards = client.get(f"{staging_server.ds}/batches/{garbage_batch}/shards").json()["shards"]
    assert [(s["statusName"], s["statusType"]) for s in shards] == [("failed", "error")]
    # tars are extracted in upload order: the re-sent one was handled before the garbage
    shards = client.get(f"{staging_server.ds}/batches/{batch_id}/shards").json()["shards"]
    assert len(shards) == 1
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 1}


def test_tar_over_500_members_fails_the_extra_ones(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for index in range(501):
            _add(tar, f"m{index:03d}.jpg", b"x")
    _put_tar(client, staging_server, batch_id, buffer.getvalue())
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id), timeout=60)
    shard = client.get(f"{staging_server.ds}/batches/{batch_id}/shards").json()["shards"][0]
    assert shard["shardObjectsCount"] == 501
    assert shard["statusMetadata"]["stagedFiles"] == 500
    assert shard["statusMetadata"]["failedFiles"] == 1
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 500}


@pytest.mark.anyio
async def test_a_put_while_another_is_receiving_the_upload_is_told_to_retry(
    tmp_path: Path,
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data", api_keys=("k",), public_url="http://127.0.0.1:1",
        workspace="ws-test",
    )  # fmt: skip
    video = b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 10
    reading, release = anyio.Event(), anyio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        reading.set()  # the server reads a body only once it has claimed the upload
        yield video[:10]
        await release.wait()
        yield video[10:]

    async def once() -> AsyncIterator[bytes]:
        yield video

    async with open_services(settings) as ctx:
        answer = await ctx.uploads.start("b-busy", "video", "clip.mp4", None)
        upload_id = unquote(urlsplit(answer.signed_url_details.upload_url).path.split("/")[-1])
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctx.uploads.receive, upload_id, slow_body())
            await reading.wait()  # the first PUT holds the upload, mid-body
            with pytest.raises(TransientError) as info:
                await ctx.uploads.receive(upload_id, once())
            assert info.value.retry_after is not None
            release.set()
        await ctx.uploads.receive(upload_id, once())  # done now: the same bytes are a no-op
        with pytest.raises(ConflictError):
            await ctx.uploads.receive(upload_id, _chunks(video[:-1], b"x"))
        rows = [row async for row in ctx.staging.iter_files("b-busy")]
        assert [(r.name, r.size) for r in rows] == [("clip.mp4", len(video))]


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
