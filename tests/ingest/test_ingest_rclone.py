"""End to end on an S3 server that verifies every signature: a few thousand objects.

``rclone serve s3`` checks SigV4 on each presigned GET, so every file the server stages here
was fetched through a URL our signer made; moto accepts any signature and serves a few dozen
GETs a second, rclone serves a folder on disk (seeded instantly) much faster.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchflow.ingest import IngestOptions, ingest
from tests._procs import ManagedProcess, free_port, wait_http
from tests.ingest.conftest import settings_for
from tests.ingest.test_ingest_cloud import check_staged, corpus
from tests.server_fixture import ServerHandle

pytestmark = [pytest.mark.anyio, pytest.mark.emulators]

AK, SK = "RCLONEKEY", "rclone/secret+key"
BUCKET = "photos"
FILES = corpus(2400, seed=11)  # nested folders, repeated basenames, a folder with a space
OUTSIDE = {"data/x/readme.txt": b"not an image", "other/p0000.jpg": b"outside the prefix"}


@pytest.fixture(scope="module")
def rclone_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rclone-ingest")
    data = root / "data"
    for key, body in [*((f"data/{k}", v) for k, v in FILES.items()), *OUTSIDE.items()]:
        path = data / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    rclone = shutil.which("rclone") or str(Path(sys.executable).with_name("rclone"))
    port = free_port()
    argv = [rclone, "serve", "s3", str(data), "--addr", f"127.0.0.1:{port}"]
    argv += ["--auth-key", f"{AK},{SK}", "--config", str(root / "rclone.conf")]
    proc = ManagedProcess(argv=argv, log_path=root / "rclone.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=30, alive=proc.alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


async def test_thousands_of_objects_staged_through_verified_signatures(
    ingest_server: ServerHandle, rclone_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_ENDPOINT_URL", rclone_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    summary = await ingest(
        f"s3://{BUCKET}/data/**/*.jpg",
        IngestOptions(batch_id="rclone-e2e", shard_size=500, concurrency=4),
        settings=settings_for(ingest_server),
    )
    assert summary.ok, summary.as_dict()
    assert (summary.matched, summary.shards_total) == (len(FILES), 5)
    check_staged(ingest_server, "rclone-e2e", FILES)  # every sha256 equals its source
