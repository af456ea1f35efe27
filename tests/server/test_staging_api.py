"""The internal staging API the job engine uses, then the same data seen over HTTP (parts)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from batchflow.errors import ConflictError, NotFoundError, UsageError
from batchflow.server.app import open_services
from batchflow.server.core.blobs import BlobStore, open_task_store
from batchflow.server.core.settings import ServerSettings
from batchflow.server.jobs.ports import OutputBlob
from tests.server_fixture import ServerHandle


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.open_read(key)])


async def _populate(data_dir: Path, source: Path) -> None:
    settings = ServerSettings(
        data_dir=data_dir, api_keys=("k",), public_url="http://127.0.0.1:1", workspace="ws-test"
    )
    async with open_services(settings) as ctx:
        staging = ctx.staging
        with pytest.raises(NotFoundError):
            await staging.add_file("out", "x.json", source)
        batch = await staging.create_batch("out", "multipart-batch", "mixed", "Job output")
        assert (batch.batch_type, batch.content_type) == ("multipart-batch", "mixed")
        assert (await staging.create_batch("out", "multipart-batch", "mixed")).pk == batch.pk
        csv = await staging.add_file("out", "results/part-0.csv", source, "text/csv", "results")
        assert await anyio.Path(source).exists()  # copied, not moved
        js = await staging.add_file(
            "out", "rows.jsonl", _chunks(b'{"a":', b"1}\n"), "application/x-ndjson", "jsonl"
        )
        again = await staging.add_file("out", "rows.jsonl", _chunks(b'{"a":1}\n'), None, "jsonl")
        assert again.pk == js.pk
        with pytest.raises(ConflictError):
            await staging.add_file("out", "rows.jsonl", _chunks(b"other"), None, "jsonl")
        with pytest.raises(UsageError):
            await staging.add_file("out", "../escape.txt", source)
        seen = [row async for row in staging.iter_files("out", page_size=1)]
        assert [(r.name, r.part_name, r.size) for r in seen] == [
            ("results/part-0.csv", "results", 8),
            ("rows.jsonl", "jsonl", 8),
        ]
        assert await _read(ctx.blobs, seen[0].blob_key) == b"a,b\n1,2\n"
        assert seen[0].sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest() == csv.sha256
        only = [row async for row in staging.iter_files("out", part_name="jsonl")]
        assert [r.name for r in only] == ["rows.jsonl"]


def test_staging_service_then_http(
    tmp_path: Path, server_factory: Callable[..., ServerHandle]
) -> None:
    source = tmp_path / "result.csv"
    source.write_bytes(b"a,b\n1,2\n")
    # the first server_factory server uses this data dir
    anyio.run(_populate, tmp_path / "srv0", source)
    server = server_factory()
    with server.client() as client:
        parts = client.get(f"{server.ds}/batches/out/parts").json()["batchParts"]
        assert parts == [
            {"partName": "jsonl", "partType": "files", "contentType": "application/x-ndjson"},
            {"partName": "results", "partType": "files", "contentType": "text/csv"},
        ]
        count = client.get(f"{server.ds}/batches/out/count", params={"partName": "results"})
        assert count.json() == {"count": 1}
        listing = client.get(f"{server.ds}/batches/out/list", params={"partName": "jsonl"})
        files = listing.json()["filesMetadata"]
        assert [(f["fileName"], f["partName"]) for f in files] == [("rows.jsonl", "jsonl")]
        assert httpx.get(files[0]["downloadURL"]).content == b'{"a":1}\n'
        batch = client.get(f"{server.ds}/batches/out").json()["batch"]
        assert batch["displayName"] == "Job output"


@pytest.mark.anyio
async def test_job_engine_ports(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from batchflow.server.core.outbox import CatalogOutbox
    from batchflow.server.staging.port import CatalogStagingPort, OutboxNotifier

    settings = ServerSettings(
        data_dir=tmp_path / "d", api_keys=("k",), public_url="http://127.0.0.1:1", workspace="ws"
    )
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    await anyio.Path(first).write_bytes(b"one\n")
    await anyio.Path(second).write_bytes(b"two, longer\n")
    async with open_services(settings) as ctx:
        port = CatalogStagingPort(ctx.staging)
        assert not await port.batch_exists("ws", "out")
        await port.create_output_batch("ws", "out", content_type="mixed", display_name="Out")
        await port.create_output_batch("ws", "out", content_type="mixed", display_name="Out")
        assert await port.batch_exists("ws", "out")
        with pytest.raises(NotFoundError):
            await port.batch_exists("other", "out")
        prefix = await port.output_prefix("ws", "out")
        store = open_task_store(port.blob_store)
        for index, source in enumerate((first, second)):  # a task run twice: new key, new bytes
            key = f"{prefix}/t{index}/r.csv"
            info = store.put_file(key, source)
            blob = OutputBlob("r.csv", "results", key, info.size, info.sha256, "text/csv")
            await port.add_output_blob("ws", "out", blob)
        items = await port.list_items("ws", "out", None)
        assert [(i.name, i.size, i.content_type) for i in items] == [("r.csv", 12, "text/csv")]
        assert await _read(ctx.blobs, items[0].key) == b"two, longer\n"
        assert await port.list_items("ws", "out", "other") == []
        blob_files = [
            p async for p in anyio.Path(ctx.blobs.root).rglob("*") if ".tmp" not in p.parts
        ]
        stored = [p for p in blob_files if await p.is_file()]
        assert len(stored) == 1  # the replaced blob is gone
        assert stored[0].parent.name == "t1"  # the key the task chose

        woken: list[bool] = []
        notifier = OutboxNotifier(ctx.staging, ctx.publishable_key, lambda: woken.append(True))
        await notifier.job_finished("job-1", "http://127.0.0.1:9/hook", success=False)
        due = await CatalogOutbox(ctx.engine).due(datetime.now(UTC) + timedelta(seconds=1), 10)
        assert woken == [True]
        assert len(due) == 1
        assert due[0].url == "http://127.0.0.1:9/hook"
        assert due[0].authorization == ctx.publishable_key
        assert due[0].body["job_id"] == "job-1"
        assert due[0].body["job_state"] == "fail"
        assert "delivery_attempt" not in due[0].body
