"""Deterministic shards and ingest ids: the same listing always gives the same shards.

A stream of items is cut into shards of ``size`` items in listing order. Each shard carries a
content digest (sha256 over its items' names, identities and sizes) and gets an ingest id derived
from (batch, source, shard index, digest): re-running the same command re-derives the same ids,
so the journal can skip acknowledged shards and the server answers re-sends as duplicates.

Feed the digest stable identities (object key, etag, size), never presigned URLs: those change
on every run and would make every shard look new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "ContentDigest",
    "Identity",
    "Shard",
    "ShardBuilder",
    "ShardKey",
    "chunk_pages",
    "derive_ingest_id",
    "iter_shards",
]

T = TypeVar("T")

Identity = tuple[str, str, int | None]
"""What the digest sees of one item: ``(name, stable identity, size or None)``."""

_INGEST_ID_LEN = 32


def _field(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return str(len(data)).encode() + b":" + data


def derive_ingest_id(batch_id: str, source_desc: str, shard_index: int, content_digest: str) -> str:
    """A stable, short (32 hex chars) ingest id for one shard of one ingest."""
    h = hashlib.sha256(b"batchflow-ingest-v1")
    for part in (batch_id, source_desc, str(shard_index), content_digest):
        h.update(_field(part))
    return h.hexdigest()[:_INGEST_ID_LEN]


class ContentDigest:
    """An incremental sha256 over a shard's items (length-prefixed, so unambiguous)."""

    __slots__ = ("_hash", "count")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"batchflow-shard-v1")
        self.count = 0

    def update(self, name: str, identity: str = "", size: int | None = None) -> None:
        self._hash.update(
            _field(name) + _field(identity) + _field("" if size is None else str(size))
        )
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True, slots=True)
class ShardKey:
    """Where a shard sits in an ingest; ``ingest_id`` is also its journal key."""

    batch_id: str
    source: str
    index: int
    digest: str

    @property
    def ingest_id(self) -> str:
        return derive_ingest_id(self.batch_id, self.source, self.index, self.digest)


@dataclass(frozen=True, slots=True)
class Shard(Generic[T]):
    """``items`` (in listing order) forming shard number ``index``, with their digest."""

    index: int
    items: tuple[T, ...]
    digest: str

    def key(self, batch_id: str, source: str) -> ShardKey:
        return ShardKey(batch_id=batch_id, source=source, index=self.index, digest=self.digest)


class ShardBuilder(Generic[T]):
    """Cuts items into shards of ``size``; holds at most one shard's items."""

    def __init__(self, size: int, identify: Callable[[T], Identity]) -> None:
        if size < 1:
            raise ValueError("shard size must be >= 1")
        self.size = size
        self._identify = identify
        self._index = 0
        self._items: list[T] = []
        self._digest = ContentDigest()

    def add(self, item: T) -> Shard[T] | None:
        """Add one item; return the shard it completed, if any."""
        self._items.append(item)
        self._digest.update(*self._identify(item))
        if len(self._items) >= self.size:
            return self._cut()
        return None

    def flush(self) -> Shard[T] | None:
        """The last, partial shard (``None`` if empty)."""
        return self._cut() if self._items else None

    def _cut(self) -> Shard[T]:
        shard = Shard(index=self._index, items=tuple(self._items), digest=self._digest.hexdigest())
        self._index += 1
        self._items = []
        self._digest = ContentDigest()
        return shard


def iter_shards(
    items: Iterable[T], size: int, identify: Callable[[T], Identity]
) -> Iterator[Shard[T]]:
    """Shards of ``items`` (a plain iterator; for listings use :func:`chunk_pages`)."""
    builder = ShardBuilder(size, identify)
    for item in items:
        shard = builder.add(item)
        if shard is not None:
            yield shard
    last = builder.flush()
    if last is not None:
        yield last


async def chunk_pages(
    receive: MemoryObjectReceiveStream[Sequence[T]],
    send: MemoryObjectSendStream[Shard[T]],
    *,
    size: int,
    identify: Callable[[T], Identity],
) -> None:
    """A pipeline stage: pages of items in, shards of ``size`` out. Owns and closes both streams."""
    builder: ShardBuilder[T] = ShardBuilder(size, identify)
    with receive, send:
        async for page in receive:
            for item in page:
                shard = builder.add(item)
                if shard is not None:
                    await send.send(shard)
        last = builder.flush()
        if last is not None:
            await send.send(last)
