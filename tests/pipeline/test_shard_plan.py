"""Shard plans: every item in exactly one shard, ids stable and content-sensitive."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from batchflow.pipeline import (
    ContentDigest,
    Shard,
    ShardKey,
    chunk_pages,
    derive_ingest_id,
    iter_shards,
)


def ident(item: str) -> tuple[str, str, int | None]:
    return (item, f"s3://b/{item}", len(item))


names = st.lists(st.text(min_size=1, max_size=8), max_size=200)


async def _chunk(pages: Sequence[Sequence[str]], size: int) -> list[Shard[str]]:
    send_pages, receive_pages = anyio.create_memory_object_stream[Sequence[str]](2)
    send_shards, receive_shards = anyio.create_memory_object_stream[Shard[str]](2)
    shards: list[Shard[str]] = []

    async def produce() -> None:
        async with send_pages:
            for page in pages:
                await send_pages.send(page)

    async def consume() -> None:
        async with receive_shards:
            shards.extend([shard async for shard in receive_shards])

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        tg.start_soon(consume)
        tg.start_soon(lambda: chunk_pages(receive_pages, send_shards, size=size, identify=ident))
    return shards


@settings(max_examples=60, deadline=None)
@given(items=names, size=st.integers(1, 30), page=st.integers(1, 50))
def test_every_item_lands_in_exactly_one_shard(items: list[str], size: int, page: int) -> None:
    pages = [items[i : i + page] for i in range(0, len(items), page)]
    shards = anyio.run(_chunk, pages, size)
    flat = [item for shard in shards for item in shard.items]
    assert flat == items  # exactly once each, in listing order
    assert [s.index for s in shards] == list(range(len(shards)))
    assert all(len(s.items) == size for s in shards[:-1])
    if shards:
        assert 1 <= len(shards[-1].items) <= size
    # page boundaries do not matter: the same as the plain iterator
    assert shards == list(iter_shards(items, size, ident))


@settings(max_examples=60, deadline=None)
@given(items=names, size=st.integers(1, 30), batch=st.text(max_size=10))
def test_ingest_ids_are_stable_short_hex(items: list[str], size: int, batch: str) -> None:
    first = [s.key(batch, "src").ingest_id for s in iter_shards(items, size, ident)]
    second = [s.key(batch, "src").ingest_id for s in iter_shards(list(items), size, ident)]
    assert first == second
    assert len(set(first)) == len(first)
    assert all(re.fullmatch(r"[0-9a-f]{1,64}", i) for i in first)


@given(a=names, b=names)
def test_digest_changes_with_content(a: list[str], b: list[str]) -> None:
    da, db = ContentDigest(), ContentDigest()
    for x in a:
        da.update(*ident(x))
    for x in b:
        db.update(*ident(x))
    assert (da.hexdigest() == db.hexdigest()) == (a == b)


def test_digest_is_unambiguous_about_field_boundaries() -> None:
    one, two = ContentDigest(), ContentDigest()
    one.update("ab", "c")
    two.update("a", "bc")
    assert one.hexdigest() != two.hexdigest()
    three = ContentDigest()
    three.update("x", "", None)
    four = ContentDigest()
    four.update("x", "", 0)
    assert three.hexdigest() != four.hexdigest()


def test_ingest_id_depends_on_every_part() -> None:
    base: tuple[Any, ...] = ("b1", "s3://x/", 0, "d" * 64)
    ids = {derive_ingest_id(*base)}
    for position, value in enumerate(("b2", "s3://y/", 1, "e" * 64)):
        changed = list(base)
        changed[position] = value
        ids.add(derive_ingest_id(*changed))
    assert len(ids) == 5
    key = ShardKey("b1", "s3://x/", 0, "d" * 64)
    assert key.ingest_id == derive_ingest_id(*base)
    assert len(key.ingest_id) == 32
