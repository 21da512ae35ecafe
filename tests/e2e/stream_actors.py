"""Actors for the stream, idempotency and client end-to-end tests.

Every execution that matters leaves a line in a file (``effects``/``starts``), so the
tests can count how many times an op really ran, across instance and daemon restarts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from e2e_helpers import bump, lines

from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError


class Producer:
    """Streaming ops. ``starts`` gets one line each time a producer begins running."""

    def __init__(self, starts: str = "") -> None:
        self.starts = starts

    async def count(self, n: int = 5, delay: float = 0.0, tag: str = "") -> AsyncIterator[int]:
        bump(self.starts, f"count {n} {tag}")
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield i

    async def words(self, n: int = 3) -> AsyncIterator[Any]:
        """Strings and objects, to check the plain rendering."""
        bump(self.starts, f"words {n}")
        for i in range(n):
            yield f"word-{i}"
        yield {"done": n}

    def sync_count(self, n: int = 5) -> Iterator[int]:
        bump(self.starts, f"sync_count {n}")
        yield from range(n)

    async def fail_after(self, n: int = 2, delay: float = 0.0) -> AsyncIterator[int]:
        """``n`` chunks, then an unexpected exception (a failure of the instance)."""
        bump(self.starts, f"fail_after {n}")
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield i
        raise RuntimeError("producer exploded")

    async def business_after(self, n: int = 2) -> AsyncIterator[int]:
        bump(self.starts, f"business_after {n}")
        for i in range(n):
            yield i
        raise PulsingBusinessError("out_of_range", "no more items for you", {"n": n})

    async def _secret(self) -> AsyncIterator[str]:
        yield "never callable from outside"

    def ping(self) -> str:
        return "pong"


class Effects:
    """Ops with side effects counted in ``effects``; ``marker`` drives crash-once."""

    def __init__(self, effects: str = "", marker: str = "") -> None:
        self.effects = effects
        self.marker = marker

    def mark(self, tag: str = "x") -> dict[str, Any]:
        bump(self.effects, tag)
        return {"tag": tag, "n": len(lines(self.effects))}

    async def amark(self, tag: str = "x", delay: float = 0.3) -> dict[str, Any]:
        await asyncio.sleep(delay)
        bump(self.effects, tag)
        return {"tag": tag, "n": len(lines(self.effects))}

    def block(self, seconds: float = 1.0, tag: str = "block") -> dict[str, Any]:
        """A blocking sync op: cannot be interrupted at its deadline."""
        bump(self.effects, f"begin {tag}")
        time.sleep(seconds)
        bump(self.effects, tag)
        return {"tag": tag, "slept": seconds}

    def crash_once(self, tag: str = "x") -> dict[str, Any]:
        """Crash the instance on the first execution ever (marker file absent)."""
        if self.marker and not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed\n")
            raise RuntimeError("first execution crashes the actor")
        bump(self.effects, tag)
        return {"tag": tag}

    def business(self, tag: str = "x") -> None:
        bump(self.effects, tag)
        raise PulsingBusinessError("rejected", f"rule violated for {tag}", {"tag": tag})

    def recoverable(self, tag: str = "x") -> None:
        bump(self.effects, tag)
        raise PulsingSystemError("temporarily unavailable", recoverable=True)

    def fatal(self, tag: str = "x") -> None:
        bump(self.effects, tag)
        raise PulsingSystemError("state corrupted", recoverable=False)

    def ping(self) -> str:
        return "pong"


class Kinds:
    """One op per error category, for the client library."""

    def __init__(self) -> None:
        self.calls = 0

    def add(self, x: int = 0, y: int = 0) -> int:
        return x + y

    def business(self) -> None:
        raise PulsingBusinessError("bad_input", "that input is wrong", {"field": "x"})

    def recoverable(self) -> None:
        raise PulsingSystemError("try again later", recoverable=True)

    def fatal(self) -> None:
        raise PulsingSystemError("state corrupted", recoverable=False)

    def crash(self) -> None:
        raise RuntimeError("boom")

    async def slow(self, seconds: float = 2.0) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def flaky(self, failures: int = 2) -> int:
        """Recoverable system error for the first ``failures`` calls, then the call count."""
        self.calls += 1
        if self.calls <= failures:
            raise PulsingSystemError(f"flaky call {self.calls}", recoverable=True)
        return self.calls

    async def count(self, n: int = 5) -> AsyncIterator[int]:
        for i in range(n):
            yield i * 10
