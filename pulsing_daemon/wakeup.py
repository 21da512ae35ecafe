"""A wake-up flag for the one task that waits on it: the cell's serving task."""

from __future__ import annotations

import asyncio


class Wakeup:
    """``asyncio.Event`` for the one task that waits on it (the cell's), without the
    Event's deque of waiters (~0.7 KB per cell)."""

    __slots__ = ("flag", "waiter")

    def __init__(self) -> None:
        self.flag = False
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.flag = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self.flag = False

    async def wait(self) -> None:
        if self.flag:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
