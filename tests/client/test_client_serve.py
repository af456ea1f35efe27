"""BatchClient against a real ``batchflow serve`` (data staging half).

Uses the session-wide ``staging_server`` from tests/server_fixture.py (one per catalog backend).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchflow.client import BatchClient
from batchflow.config import ClientSettings, RetryPolicy
from batchflow.errors import AuthError, NotFoundError
from tests.client._origin import run_app
from tests.server_fixture import ServerHandle

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


def client(server: ServerHandle, *, header: bool = True, key: str | None = None) -> BatchClient:
    settings = ClientSettings(
        api_url=server.base_url,
        api_key=key or server.api_key,
        key_in_header=header,
        retry=RetryPolicy(max_attempts=3, base_delay=0.05, deadline=30),
    )
    return BatchClient(settings)


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


@pytest.fixture
def batch_id() -> str:
    return "bc-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    async def image(request: Request) -> Response:
        return Response(IMAGE, media_type="image/jpeg")

    with run_app(Starlette(routes=[Route("/img/{name:path}", image)])) as base:
        yield base


@pytest.mark.anyio
async def test_upload_list_and_download(
    staging_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(IMAGE[::-1])
    async with client(staging_server) as c:
        assert await c.workspace() == staging_server.workspace
        for i in range(4):
            await c.upload_image(batch_id, f"dir/{i}.jpg", IMAGE + bytes([i]))
        await c.upload_image(batch_id, "dir/path.jpg", photo)
        batch = await c.get_batch(batch_id)
        assert batch.batch_id == batch_id
        assert batch.batch_type == "simple-batch"
        assert await c.count(batch_id) == 5
        async with c.iter_files(batch_id, page_size=2) as files:
            listed = [f async for f in files]
        assert sorted(f.file_name for f in listed) == sorted(
            [f"dir/{i}.jpg" for i in range(4)] + ["dir/path.jpg"]
        )
        for meta in listed:
            sink = Sink()
            written = await c.download(meta.download_url, sink)
            assert written == len(sink.data)
            expected = photo.read_bytes() if meta.file_name == "dir/path.jpg" else None
            if expected is not None:
                assert bytes(sink.data) == expected
            if meta.sha256 is not None:
                assert hashlib.sha256(sink.data).hexdigest() == meta.sha256
            # resume from the middle gives the tail
            tail = Sink()
            await c.download(meta.download_url, tail, start=10)
            assert bytes(tail.data) == bytes(sink.data[10:])
        async with c.iter_batches(page_size=1) as batches:
            assert batch_id in [b.batch_id async for b in batches]


@pytest.mark.anyio
async def test_query_auth_and_errors(staging_server: ServerHandle, batch_id: str) -> None:
    async with client(staging_server, header=False) as c:
        assert await c.workspace() == staging_server.workspace
        with pytest.raises(NotFoundError):
            await c.get_batch(batch_id)
        await c.upload_image(batch_id, "q.jpg", IMAGE)
        page = await c.list_files(batch_id)
        sink = Sink()
        await c.download(page.files_metadata[0].download_url, sink)  # signed URL + api_key
        assert bytes(sink.data) == IMAGE
    async with client(staging_server, key="wrong-key") as c:
        with pytest.raises(AuthError):
            await c.workspace()


@pytest.mark.anyio
async def test_references_ingest_is_idempotent(
    staging_server: ServerHandle, batch_id: str, origin: str
) -> None:
    refs = [{"name": f"r/{i}.jpg", "url": f"{origin}/img/{i}.jpg"} for i in range(3)]
    async with client(staging_server) as c:
        first = await c.ingest_image_references(batch_id, refs, ingest_id="ing-1")
        again = await c.ingest_image_references(batch_id, refs, ingest_id="ing-1")
        assert first.ingest_id == again.ingest_id == "ing-1"
        assert again.duplicated is True
        for _ in range(600):  # the ingest is asynchronous: poll the count, at most ~60 s
            if await c.count(batch_id) >= 3:
                break
            await anyio.sleep(0.1)
        async with c.iter_shards(batch_id) as shards:
            assert [s async for s in shards]
        assert await c.count(batch_id) == 3
