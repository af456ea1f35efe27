"""Exception groups from task groups, collapsed back to the one error that matters; ``peek``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from anyio.abc import ObjectReceiveStream

__all__ = ["collapse_errors", "peek"]

T = TypeVar("T")


async def peek(receive: ObjectReceiveStream[T]) -> T | None:
    """The first item of a stream, or None when it ends without one.

    Lets a consumer learn that a listing is empty before it creates anything, while holding
    only that one item: the rest stays in the stream, produced under backpressure.
    """
    try:
        return await receive.receive()
    except anyio.EndOfStream:
        return None


@asynccontextmanager
async def collapse_errors() -> AsyncIterator[None]:
    """Re-raise a task group's only real error as itself, not wrapped in exception groups.

    ``BrokenResourceError`` leaves are the echo of a consumer that died first (its streams
    closed under a sender), so they are ignored when another error explains them.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        primary = [e for e in leaves if not isinstance(e, anyio.BrokenResourceError)]
        if primary:
            leaves = primary
        if len(leaves) != 1:
            raise
        single = leaves[0]
        context = single.__context__
        try:
            raise single  # keep the error's own cause/context, drop the wrapper
        finally:
            single.__context__ = context


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
