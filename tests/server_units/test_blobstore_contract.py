"""The BlobStore contract: every implementation passes the same tests (add yours to STORES).

Each test uses only the Protocol (plus :func:`open_task_store` on the store's locator, the
worker-process view), so a second backend only has to be added to the ``store`` fixture.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from batchflow.errors import NotFoundError, TooLargeError, UsageError
from batchflow.server.core.blobs import (
    BlobStore,
    BlobWriter,
    LocalBlobStore,
    open_task_store,
    put_stream,
)

pytestmark = pytest.mark.anyio

StoreFactory = Callable[[Path], BlobStore]
STORES: dict[str, StoreFactory] = {"local": lambda root: LocalBlobStore(root / "blobs")}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return STORES[request.param](tmp_path)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: BlobStore, key: str, **kw: int) -> bytes:
    return b"".join([chunk async for chunk in store.open_read(key, **kw)])


async def test_put_then_read_stat_and_info(store: BlobStore) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several write blocks
    info = await put_stream(store, "b1/a", _chunks(data[:10], data[10:]))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await store.stat("b1/a") == len(data)
    assert await _read(store, "b1/a") == data


async def test_ranges_are_end_exclusive(store: BlobStore) -> None:
    await put_stream(store, "b1/r", _chunks(b"0123456789"))
    assert await _read(store, "b1/r", start=2, end=5) == b"234"
    assert await _read(store, "b1/r", start=7) == b"789"
    assert await _read(store, "b1/r", start=0, end=0) == b""


async def _write_then_fail(writer: BlobWriter, data: bytes) -> None:
    async with writer:
        await writer.write(data)
        raise RuntimeError("the source broke")


async def test_a_writer_that_fails_leaves_no_blob_and_keeps_the_old_one(store: BlobStore) -> None:
    await put_stream(store, "b1/k", _chunks(b"old"))
    writer = store.open_write("b1/k")
    with pytest.raises(RuntimeError, match="the source broke"):
        await _write_then_fail(writer, b"half of the new")
    assert await _read(store, "b1/k") == b"old"
    with pytest.raises(RuntimeError, match="not committed"):
        _ = writer.info
    with pytest.raises(RuntimeError, match="the source broke"):
        await _write_then_fail(store.open_write("b1/new"), b"x")
    assert await store.stat("b1/new") is None


async def test_a_commit_replaces_atomically(store: BlobStore) -> None:
    await put_stream(store, "b1/k", _chunks(b"old"))
    writer = store.open_write("b1/k")
    async with writer:
        await writer.write(b"new bytes")
        assert await _read(store, "b1/k") == b"old"  # not visible before the commit
    assert await _read(store, "b1/k") == b"new bytes"
    assert writer.info.size == 9


async def test_max_bytes(store: BlobStore) -> None:
    with pytest.raises(TooLargeError):
        await put_stream(store, "b1/big", _chunks(b"12345", b"678"), max_bytes=6)
    assert await store.stat("b1/big") is None
    assert (await put_stream(store, "b1/ok", _chunks(b"123456"), max_bytes=6)).size == 6


async def test_missing_blobs(store: BlobStore) -> None:
    assert await store.stat("b1/none") is None
    with pytest.raises(NotFoundError):
        await _read(store, "b1/none")
    await store.delete("b1/none")  # deleting nothing is fine


async def test_delete_prefix_and_list_prefix(store: BlobStore) -> None:
    for key in ("b1/x", "b1/sub/y", "b2/x", "b10/z"):
        await put_stream(store, key, _chunks(key.encode()))
    assert sorted([k async for k in store.list_prefix("b1")]) == ["b1/sub/y", "b1/x"]
    await store.delete_prefix("b1")
    assert [k async for k in store.list_prefix("b1")] == []
    assert await store.stat("b2/x") == 4
    assert await store.stat("b10/z") == 5  # a prefix is a folder, never a string prefix
    await store.delete("b2/x")
    assert await store.stat("b2/x") is None


@pytest.mark.parametrize("key", ["", "../x", "b1/../x", "/abs", "b1//x", ".tmp/x", "b1/./x"])
async def test_keys_that_could_escape_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(UsageError):
        store.open_write(key)
    with pytest.raises(UsageError):
        await store.stat(key)


async def test_the_task_view_reads_and_stores_through_the_locator(
    store: BlobStore, tmp_path: Path
) -> None:
    await put_stream(store, "b1/in", _chunks(b"input"))
    source = tmp_path / "out.bin"
    source.write_bytes(b"output bytes")

    def in_worker() -> tuple[bytes, int]:
        task = open_task_store(store.locator)  # what a worker process does
        with task.local_file("b1/in") as path:
            data = path.read_bytes()
        info = task.put_file("b1/out", source)
        return data, info.size

    data, size = await anyio.to_thread.run_sync(in_worker)
    assert (data, size) == (b"input", 12)
    assert await _read(store, "b1/out") == b"output bytes"


async def test_an_unknown_locator_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="unsupported blob store"):
        open_task_store("ftp://somewhere/blobs")
