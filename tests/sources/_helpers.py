"""Helpers for source tests: drain a Source through a bounded stream, as the pipeline does."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from batchflow.sources import ObjectRef, Source


async def collect(source: Source, buffer: int = 2) -> list[Sequence[ObjectRef]]:
    """Run ``source.list_pages`` as a producer task and gather every page it sends."""
    send, recv = anyio.create_memory_object_stream[Sequence[ObjectRef]](buffer)
    pages: list[Sequence[ObjectRef]] = []
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(source.list_pages, send)
                async with recv:
                    pages.extend([page async for page in recv])
    except BaseExceptionGroup as group:  # surface the one error the producer raised
        if len(group.exceptions) == 1:
            inner = group.exceptions[0]
            raise inner from inner.__cause__
        raise
    return pages


async def list_names(source: Source) -> list[str]:
    return [ref.name for page in await collect(source) for ref in page]
