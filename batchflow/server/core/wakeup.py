"""A level-triggered wake-up for background loops: poll on a timer, or sooner when woken."""

from __future__ import annotations

import anyio

__all__ = ["Wakeup"]


class Wakeup:
    """``wake()`` from anywhere in the event loop; ``wait(timeout)`` returns on wake or timeout."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._event.wait()
        self._event = anyio.Event()
