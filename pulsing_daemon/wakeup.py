"""A wake-up flag for the one task that waits on it (the cell's serving task), and
the empty mailbox every cell starts with."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


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


class _NoMail(deque):  # type: ignore[type-arg]
    """The empty mailbox every cell starts with, shared (an empty deque is ~0.7 KB and
    most actors of a big config are idle): reading it is fine, adding to it a bug."""

    def _refuse(self, *_: Any) -> None:
        raise AssertionError("a message put in the shared empty mailbox")

    append = appendleft = extend = extendleft = insert = _refuse


NO_MAIL: deque[Any] = _NoMail()
