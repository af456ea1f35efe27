"""Test doubles users can import: a fake clock and in-memory / synthetic sources.

``FakeClock`` implements :class:`batchflow.pipeline.retry.Clock` and ``SyncClock`` without real
sleeping.
``MemorySource`` and ``SyntheticSource`` implement :class:`batchflow.sources.Source`:
``list_pages(send)`` sends tuples of ``ObjectRef`` into a stream and closes it.
``SyntheticSource`` never materialises its listing (a 10M-object run holds one page at a time).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence

import anyio
import anyio.lowlevel
from anyio.abc import ObjectSendStream

from batchflow.sources import DEFAULT_PAGE_SIZE, ObjectRef, Scope, SourceStatistics

__all__ = ["FakeClock", "MemorySource", "SyntheticSource", "synthetic_key", "synthetic_ref"]


class FakeClock:
    """A deterministic clock for tests.

    With ``auto_advance=True`` (default) ``sleep(s)`` moves time forward by ``s`` at once, so
    backoff loops run instantly and ``sleeps`` records every requested delay. With
    ``auto_advance=False`` sleepers wait until :meth:`advance` moves time past their wake-up.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = True) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.sleeps.append(seconds)
        if self.auto_advance:
            self._now += seconds
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._waiters, (self._now + seconds, next(self._seq), event))
        if seconds == 0.0:
            self._wake()
        await event.wait()

    def sleep_sync(self, seconds: float) -> None:
        """The blocking sleep of ``SyncClock``: recorded, and time moves on at once (always)."""
        seconds = max(seconds, 0.0)
        self.sleeps.append(seconds)
        self._now += seconds
        self._wake()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        self._wake()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting in :meth:`sleep` (manual mode)."""
        return len(self._waiters)

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._now:
            heapq.heappop(self._waiters)[2].set()


class MemorySource:
    """A Source-compatible listing over any iterable of ``ObjectRef`` (re-iterated per call)."""

    def __init__(
        self,
        refs: Iterable[ObjectRef],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        description: str = "memory:",
        scheme: str = "memory",
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self._refs = refs
        self.page_size = page_size
        self._description = description
        self._scheme = scheme
        self._listed = 0
        self._pages = 0

    @property
    def scheme(self) -> str:
        return self._scheme

    @property
    def bucket(self) -> str:
        return ""

    @property
    def description(self) -> str:
        return self._description

    @property
    def scope(self) -> Scope:
        return Scope(where=self._description)

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(listed=self._listed, matched=self._listed, pages=self._pages)

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        """Send the refs in tuples of ``page_size``; close ``send`` when done."""
        async with send:
            page: list[ObjectRef] = []
            for ref in self._refs:
                page.append(ref)
                if len(page) >= self.page_size:
                    await self._send(send, page)
                    page = []
            if page:
                await self._send(send, page)

    async def _send(
        self, send: ObjectSendStream[Sequence[ObjectRef]], page: list[ObjectRef]
    ) -> None:
        await send.send(tuple(page))
        self._listed += len(page)
        self._pages += 1


def synthetic_key(index: int) -> str:
    """The ``index``-th synthetic object name: spread over 1000 folders, a ``.jpg`` name."""
    return f"d{index % 1000:03d}/img-{index:010d}.jpg"


def synthetic_ref(index: int, *, url_base: str | None = None) -> ObjectRef:
    """The ``index``-th synthetic ``ObjectRef`` (deterministic name, size and etag)."""
    name = synthetic_key(index)
    return ObjectRef(
        key=f"synthetic/{name}",
        name=name,
        size=1024 + index % 4096,
        etag=f"{index:x}",
        url=f"{url_base.rstrip('/')}/{name}" if url_base else None,
    )


class SyntheticSource(MemorySource):
    """``n`` generated refs, made lazily page by page (a 10M listing never sits in memory).

    With ``url_base`` every ref carries ``url=<url_base>/<name>`` and the scheme is
    ``references`` (already addressable, nothing to sign); otherwise the scheme is ``memory``.
    """

    def __init__(
        self,
        n: int,
        *,
        url_base: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        description: str | None = None,
    ) -> None:
        super().__init__(
            _LazyRefs(n, url_base),
            page_size=page_size,
            description=description or f"synthetic:{n}",
            scheme="references" if url_base else "memory",
        )
        self.n = n


class _LazyRefs:
    """A re-iterable ``map(synthetic_ref, range(n))``."""

    __slots__ = ("_n", "_url_base")

    def __init__(self, n: int, url_base: str | None) -> None:
        self._n = n
        self._url_base = url_base

    def __iter__(self) -> Iterator[ObjectRef]:
        base = self._url_base
        return (synthetic_ref(i, url_base=base) for i in range(self._n))
