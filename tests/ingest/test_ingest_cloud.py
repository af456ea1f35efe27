"""End to end: buckets in the emulators (moto S3, fake-gcs, Azurite) staged as presigned references.

The server fetches every presigned URL from the emulator; each staged file's sha256 must equal
the bytes seeded into the bucket.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from batchflow.ingest import IngestOptions, ingest
from tests.emulators import Azurite, FakeGcs, MotoS3, apply_env, unique_name
from tests.ingest.conftest import settings_for, sha256, wait_staged
from tests.server_fixture import ServerHandle

pytestmark = [pytest.mark.anyio, pytest.mark.emulators]


def corpus(count: int, seed: int) -> dict[str, bytes]:
    """Names (relative to ``data/``) in nested folders with repeated basenames -> bodies."""
    rng = random.Random(seed)
    folders = ["", "x", "x/y", "z", "z/w/v", "sp ace"]
    out: dict[str, bytes] = {}
    for i in range(count):
        folder = folders[i % len(folders)]
        base = f"p{i // len(folders):04d}.jpg"
        out[f"{folder}/{base}" if folder else base] = rng.randbytes(rng.randint(1, 400))
    return out


def check_staged(server: ServerHandle, batch_id: str, expected: dict[str, bytes]) -> None:
    staged = wait_staged(server, batch_id, len(expected), timeout=90)
    got = {str(f["fileName"]): f["sha256"] for f in staged}
    assert len(got) == len(staged)  # every name once
    assert got == {name: sha256(body) for name, body in expected.items()}


async def test_s3_bucket_with_glob(
    ingest_server: ServerHandle, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, moto_s3.env)
    bucket = moto_s3.create_bucket()
    files = corpus(300, seed=3)  # moto serves ~30 GETs/s: keep the fetch short
    client = moto_s3.client()
    extra = {"data/x/readme.txt": b"no", "other/p0000.jpg": b"outside", "data.jpg": b"prefix"}
    items = [(f"data/{k}", v) for k, v in files.items()] + list(extra.items())
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items))

    summary = await ingest(
        f"s3://{bucket}/data/**/*.jpg",
        IngestOptions(batch_id="s3-e2e", shard_size=80, concurrency=4),
        settings=settings_for(ingest_server),
    )
    assert summary.mode == "signed-references"
    assert summary.ok, summary.as_dict()
    assert (summary.matched, summary.shards_total, summary.shards_sent) == (300, 4, 4)
    check_staged(ingest_server, "s3-e2e", files)


async def test_gcs_bucket_and_a_resent_shard_is_not_a_conflict(
    ingest_server: ServerHandle, fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, fake_gcs.env)
    monkeypatch.setenv("GCS_HMAC_ACCESS_ID", "GOOG1TESTACCESSID")
    monkeypatch.setenv("GCS_HMAC_SECRET", "dGVzdC1zZWNyZXQ=")
    bucket = fake_gcs.create_bucket()
    files = corpus(60, seed=5)
    for name, body in files.items():
        fake_gcs.put_object(bucket, f"data/{name}", body)
    options = IngestOptions(batch_id="gcs-e2e", shard_size=25)
    settings = settings_for(ingest_server)

    first = await ingest(f"gs://{bucket}/data/", options, settings=settings)
    assert (first.shards_sent, first.files_sent) == (3, 60)
    # --restart ignores the journal: every shard is re-signed (new URLs) and sent again; the
    # server already has each ingest id, so nothing is staged twice and nothing fails.
    again = await ingest(
        f"gs://{bucket}/data/", IngestOptions(batch_id="gcs-e2e", shard_size=25, restart=True),
        settings=settings,
    )  # fmt: skip
    assert (again.shards_sent, again.shards_duplicated, again.shards_failed) == (3, 3, 0)
    assert again.ingest_ids == first.ingest_ids
    check_staged(ingest_server, "gcs-e2e", files)


async def test_azure_container(
    ingest_server: ServerHandle, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, azurite.env)
    container = azurite.create_container(unique_name("az"))
    files = corpus(60, seed=9)
    client = azurite.service().get_container_client(container)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.upload_blob(f"data/{kv[0]}", kv[1]), files.items()))

    summary = await ingest(
        f"az://{container}/data/**",
        IngestOptions(batch_id="az-e2e", shard_size=40, concurrency=2),
        settings=settings_for(ingest_server),
    )
    assert summary.ok, summary.as_dict()
    assert (summary.shards_sent, summary.files_sent) == (2, 60)
    check_staged(ingest_server, "az-e2e", files)


async def test_s3_videos_go_as_video_references(
    ingest_server: ServerHandle, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, moto_s3.env)
    bucket = moto_s3.create_bucket()
    client = moto_s3.client()
    videos = {f"v/{i}.mp4": random.Random(i).randbytes(500) for i in range(4)}
    for name, body in {**videos, "v/still.jpg": b"image"}.items():
        client.put_object(Bucket=bucket, Key=f"clips/{name}", Body=body)

    summary = await ingest(
        f"s3://{bucket}/clips/",
        IngestOptions(batch_id="s3-videos", videos=True),
        settings=settings_for(ingest_server),
    )
    assert summary.ok, summary.as_dict()
    assert (summary.mode, summary.matched, summary.shards_sent) == ("signed-references", 4, 1)
    check_staged(ingest_server, "s3-videos", videos)
