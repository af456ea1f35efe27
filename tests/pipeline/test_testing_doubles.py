"""batchflow.testing: the sources are real Sources and the synthetic one stays lazy."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import anyio
import pytest

from batchflow.sources import ObjectRef, Source
from batchflow.testing import MemorySource, SyntheticSource, synthetic_ref


async def _collect(source: MemorySource, buffer: int = 1) -> list[Sequence[ObjectRef]]:
    send, receive = anyio.create_memory_object_stream[Sequence[ObjectRef]](buffer)
    pages: list[Sequence[ObjectRef]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(source.list_pages, send)
        async with receive:
            pages.extend([page async for page in receive])
    return pages


def test_doubles_implement_the_source_protocol() -> None:
    assert isinstance(MemorySource([]), Source)
    assert isinstance(SyntheticSource(3), Source)
    assert SyntheticSource(3).scheme == "memory"
    assert SyntheticSource(3, url_base="http://x").scheme == "references"


@pytest.mark.anyio
async def test_memory_source_pages_and_statistics() -> None:
    refs = [synthetic_ref(i) for i in range(25)]
    source = MemorySource(refs, page_size=10, description="mem:test")
    pages = await _collect(source)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert all(isinstance(p, tuple) for p in pages)
    assert [r for p in pages for r in p] == refs
    stats = source.statistics()
    assert (stats.listed, stats.matched, stats.pages) == (25, 25, 3)
    assert source.description == "mem:test"


@pytest.mark.anyio
async def test_synthetic_source_is_deterministic_and_unique() -> None:
    source = SyntheticSource(3000, url_base="http://blobs.test/b/", page_size=700)
    first = [r for p in await _collect(source) for r in p]
    again = [r for p in await _collect(source) for r in p]
    assert first == again
    assert len({r.name for r in first}) == 3000
    assert first[5].url == f"http://blobs.test/b/{first[5].name}"
    assert first[5].size is not None


@pytest.mark.anyio
async def test_synthetic_source_does_not_materialise() -> None:
    n = 40_000
    source = SyntheticSource(n, page_size=1000)
    send, receive = anyio.create_memory_object_stream[Sequence[ObjectRef]](1)
    count = 0
    tracemalloc.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.list_pages, send)
            async with receive:
                async for page in receive:
                    count += len(page)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # a few pages of refs at a time; 40k materialised refs would take over 10 MB
    assert peak < 3 * 1024 * 1024
