"""Actors for the reload tests: an in-memory counter shows which instances survived."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator


class Counter:
    """``n`` lives in memory only: it survives a reload exactly when the instance does."""

    def __init__(self, scale: int = 1) -> None:
        self.scale = scale
        self.n = 0
        self.instance = uuid.uuid4().hex[:8]

    def incr(self) -> dict:
        self.n += self.scale
        return {"n": self.n, "instance": self.instance}

    def get(self) -> dict:
        return {"n": self.n, "instance": self.instance, "scale": self.scale}

    async def slow(self, seconds: float = 0.5, tag: str = "") -> dict:
        await asyncio.sleep(seconds)
        self.n += self.scale
        return {"n": self.n, "instance": self.instance, "tag": tag}

    def block(self, seconds: float = 0.5) -> dict:
        time.sleep(seconds)
        self.n += self.scale
        return {"n": self.n, "instance": self.instance}

    async def ticks(self, n: int = 10, delay: float = 0.02) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(delay)
            yield i
