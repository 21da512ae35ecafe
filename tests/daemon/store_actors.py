"""Small actor classes for the StreamManager and IdempotencyStore unit tests
(imported through ``pythonpath``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError

# How many times each op really ran, by token: proves an op ran at most once.
RUNS: dict[str, int] = {}


def _ran(token: str) -> None:
    RUNS[token] = RUNS.get(token, 0) + 1


class Store:
    async def put(self, token: str, value: object = None) -> object:
        _ran(token)
        return value

    def put_sync(self, token: str, value: object = None) -> object:
        _ran(token)
        return value

    async def wait(self, token: str, seconds: float) -> str:
        _ran(token)
        await asyncio.sleep(seconds)
        return token

    async def refuse(self, token: str) -> None:
        _ran(token)
        raise PulsingBusinessError("refused", f"{token} is refused", {"token": token})

    async def flaky(self, token: str) -> None:
        _ran(token)
        raise PulsingSystemError(f"{token}: try again", recoverable=True)

    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    def count_sync(self, n: int) -> Iterator[int]:
        yield from range(n)

    async def count_then_fail(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise PulsingBusinessError("ran_dry", "no more")

    async def unencodable(self) -> AsyncIterator[object]:
        yield 1
        yield object()

    async def count_then_refuse(self, n: int, message: str) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise PulsingBusinessError("refused", message, {"why": message})

    async def nan(self) -> float:
        return float("nan")
