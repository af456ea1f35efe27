"""References ingests: staging, pagination, idempotency, failed-file types, webhooks."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.server._helpers import (
    Origin,
    Receiver,
    image_bytes,
    run_receiver,
    shards_done,
    wait_for,
)
from tests.server_fixture import ServerHandle


def _ingest(
    client: httpx.Client,
    server: ServerHandle,
    batch_id: str,
    body: dict[str, object],
    kind: str = "image-references",
) -> httpx.Response:
    return client.post(f"{server.ds}/batches/{batch_id}/bulk-upload/{kind}", json=body)


def _all_files(client: httpx.Client, server: ServerHandle, batch_id: str, size: int) -> list[dict]:
    items: list[dict] = []
    token = None
    for _ in range(100):
        params: dict[str, object] = {"pageSize": size}
        if token:
            params["nextPageToken"] = token
        page = client.get(f"{server.ds}/batches/{batch_id}/list", params=params).json()
        items += page["filesMetadata"]
        assert len(page["filesMetadata"]) <= size
        token = page.get("nextPageToken")
        if not token:
            return items
    raise AssertionError("pagination did not end")


def test_reference_ingest_stages_lists_and_paginates(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    names = [f"dir{i % 3}/img{i:03d}.jpg" for i in range(25)]
    refs = [{"name": n, "url": origin.url(f"/img/{n}")} for n in names]
    answer = _ingest(client, staging_server, batch_id, {"imageReferences": refs})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ingestId"]
    assert len(body["shardIds"]) == 3  # the session servers use --shard-size 10
    assert "duplicated" not in body
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id))

    batch = client.get(f"{staging_server.ds}/batches/{batch_id}").json()["batch"]
    assert batch["batchType"] == "sharded-batch"
    assert batch["batchContentType"] == "images"
    assert batch["createdDate"] < batch["expiryDate"]
    count = client.get(f"{staging_server.ds}/batches/{batch_id}/count").json()
    assert count == {"count": 25}

    files = _all_files(client, staging_server, batch_id, size=10)
    assert sorted(f["fileName"] for f in files) == sorted(names)
    assert {f["shardId"] for f in files} == set(body["shardIds"])
    first = files[0]
    data = httpx.get(first["downloadURL"], timeout=10).content
    assert data == image_bytes(first["fileName"])
    assert first["sha256"] == hashlib.sha256(data).hexdigest()
    assert first["size"] == len(data)
    assert first["contentType"] == "image/jpeg"

    shards = client.get(
        f"{staging_server.ds}/batches/{batch_id}/shards", params={"pageSize": 2}
    ).json()
    assert len(shards["shards"]) == 2
    rest = client.get(
        f"{staging_server.ds}/batches/{batch_id}/shards",
        params={"pageSize": 2, "nextPageToken": shards["nextPageToken"]},
    ).json()
    all_shards = shards["shards"] + rest["shards"]
    assert "nextPageToken" not in rest
    assert [s["shardId"] for s in all_shards] == body["shardIds"]
    assert [s["shardObjectsCount"] for s in all_shards] == [10, 10, 5]
    assert all(s["statusName"] == "completed" and s["statusType"] for s in all_shards)
    parts = client.get(f"{staging_server.ds}/batches/{batch_id}/parts").json()
    assert parts == {"batchParts": []}


def test_batches_listing_paginates(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    for i in range(3):
        refs = [{"name": "a.jpg", "url": origin.url("/img/a.jpg")}]
        assert _ingest(
            client, staging_server, f"{batch_id}-{i}", {"imageReferences": refs}
        ).is_success
    seen: list[str] = []
    token = None
    for _ in range(1000):
        params: dict[str, object] = {"pageSize": 1}
        if token:
            params["nextPageToken"] = token
        page = client.get(f"{staging_server.ds}/batches", params=params).json()
        assert len(page["batches"]) <= 1
        seen += [b["batchId"] for b in page["batches"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert {f"{batch_id}-{i}" for i in range(3)} <= set(seen)
    assert len(seen) == len(set(seen))


def test_idempotent_reingest_and_conflict(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    refs = [{"name": f"{i}.jpg", "url": origin.url(f"/img/{i}.jpg")} for i in range(4)]
    body = {"imageReferences": refs, "ingestId": "ingest-one"}
    first = _ingest(client, staging_server, batch_id, body).json()
    again = _ingest(client, staging_server, batch_id, body).json()
    assert again == {**first, "duplicated": True}
    # a client resuming after a crash signs its URLs again: only the query string differs
    resigned = [
        {**ref, "url": ref["url"] + "?X-Amz-Signature=other&X-Amz-Date=later"} for ref in refs
    ]
    again_signed = _ingest(client, staging_server, batch_id, {**body, "imageReferences": resigned})
    assert again_signed.json() == {**first, "duplicated": True}
    other = _ingest(client, staging_server, batch_id, {**body, "imageReferences": refs[:2]})
    assert other.status_code == 409
    assert "ingest-one" in other.json()["error"]
    # without an ingestId the id is derived from the content: a retry is a duplicate too
    derived = _ingest(client, staging_server, batch_id + "x", {"imageReferences": refs}).json()
    derived_again = _ingest(client, staging_server, batch_id + "x", {"imageReferences": refs})
    assert derived_again.json() == {**derived, "duplicated": True}
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id))
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 4}


def test_failed_file_types_and_files_webhook(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    with run_receiver() as receiver:
        refs = [
            {"name": "ok.jpg", "url": origin.url("/img/ok.jpg")},
            {"name": "ok.jpg", "url": origin.url("/img/other.jpg")},
            {"name": "../evil.jpg", "url": origin.url("/img/x.jpg")},
            {"name": "big.jpg", "url": origin.url("/big.jpg")},
            {"name": "gone.jpg", "url": origin.url("/missing.jpg")},
            {"name": "meta.jpg", "url": "http://169.254.169.254/latest/meta-data"},
            {"name": "private.jpg", "url": "http://10.0.0.1/a.jpg"},
            {"name": "ftp.jpg", "url": "ftp://127.0.0.1/a.jpg"},
        ]
        answer = _ingest(
            client,
            staging_server,
            batch_id,
            {"imageReferences": refs, "notificationsURL": receiver.url},
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: shards_done(client, staging_server.ds, batch_id))
        notes = wait_for(lambda: _notes(receiver, "ingest-files-status-notification-v1"))
        note = notes[0]
    assert note["batch_id"] == batch_id
    assert note["ingest_id"] == answer.json()["ingestId"]
    assert note["notification"]["ingested_files"] == ["ok.jpg"]
    assert note["notification"]["success"] is False
    failures = {f["file_name"]: f["type"] for f in note["notification"]["failed_files"]}
    assert failures == {
        "ok.jpg": "duplicate-file-name",
        "../evil.jpg": "invalid-file-name",
        "big.jpg": "file-size-limit-exceeded",
        "gone.jpg": "download-failed",
        "meta.jpg": "unsafe-url-detected",
        "private.jpg": "unsafe-url-detected",
        "ftp.jpg": "unsafe-url-detected",
    }
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 1}
    shard = client.get(f"{staging_server.ds}/batches/{batch_id}/shards").json()["shards"][0]
    assert shard["statusMetadata"] == {
        "ingestId": answer.json()["ingestId"],
        "stagedFiles": 1,
        "failedFiles": 7,
        "pendingFiles": 0,
    }
    # a name already staged in the batch is a duplicate for a later ingest too
    later = _ingest(
        client,
        staging_server,
        batch_id,
        {"imageReferences": [{"name": "ok.jpg", "url": origin.url("/img/ok2.jpg")}]},
    )
    assert later.status_code == 200
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id))
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 1}


def _notes(receiver: Receiver, kind: str) -> list[dict]:
    return [b for b in receiver.delivered() if b["notification"]["type"] == kind]


def test_webhook_retries_keep_event_id(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    with run_receiver(fail_first=2) as receiver:
        refs = [{"name": "a.jpg", "url": origin.url("/img/a.jpg")}]
        body = {
            "imageReferences": refs,
            "notificationsURL": receiver.url,
            "notificationCategories": ["ingest-status"],
        }
        assert _ingest(client, staging_server, batch_id, body).status_code == 200
        wait_for(receiver.delivered, timeout=30)
        calls = receiver.all()
    assert [status for _, _, status in calls] == [500, 500, 200]
    bodies = [body for body, _, _ in calls]
    assert [b["delivery_attempt"] for b in bodies] == [1, 2, 3]
    assert len({b["event_id"] for b in bodies}) == 1
    final = bodies[-1]
    assert final["type"] == "roboflow-data-staging-notification-v1"
    assert final["notification"] == {"type": "ingest-status-notification-v1", "success": True}
    assert final["shard_id"] is not None
    headers = {k.lower(): v for k, v in calls[-1][1].items()}
    publishable = staging_server.data_dir / f"publishable_key.{staging_server.workspace}"
    assert headers["authorization"] == publishable.read_text().strip()
    assert staging_server.api_key not in json.dumps(calls[-1][1])


def test_references_from_a_jsonl_url_and_videos(
    client: httpx.Client, staging_server: ServerHandle, origin: Origin, batch_id: str
) -> None:
    lines = [{"name": f"v{i}.jpg", "url": origin.url(f"/img/v{i}.jpg")} for i in range(3)]
    origin.files[f"{batch_id}.jsonl"] = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    answer = _ingest(
        client,
        staging_server,
        batch_id,
        {"imageReferencesURL": origin.url(f"/files/{batch_id}.jsonl")},
    )
    assert answer.status_code == 200, answer.text
    wait_for(lambda: shards_done(client, staging_server.ds, batch_id))
    assert client.get(f"{staging_server.ds}/batches/{batch_id}/count").json() == {"count": 3}

    origin.files["clip.mp4"] = b"\0\0\0\x18ftypmp42" + b"v" * 1000
    video_batch = batch_id + "-v"
    answer = _ingest(
        client,
        staging_server,
        video_batch,
        {"videoReferences": [{"name": "clip.mp4", "url": origin.url("/files/clip.mp4")}]},
        kind="video-references",
    )
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"ingestId"}
    wait_for(lambda: shards_done(client, staging_server.ds, video_batch))
    batch = client.get(f"{staging_server.ds}/batches/{video_batch}").json()["batch"]
    assert batch["batchContentType"] == "videos"
    files = client.get(f"{staging_server.ds}/batches/{video_batch}/list").json()["filesMetadata"]
    assert [(f["fileName"], f["contentType"], f["size"]) for f in files] == [
        ("clip.mp4", "video/mp4", 1012)
    ]
    # an images ingest into the videos batch is a conflict
    conflict = _ingest(client, staging_server, video_batch, {"imageReferences": lines})
    assert conflict.status_code == 409
