"""Demo actors shipped with pulsing, so ``pulsing.toml.example`` runs on a fresh clone.

Each one shows a feature: plain ops (``Echo``, whose ops are ``@nonblocking``, and
``Counter``), failures and restarts (``Worker``, ``Flaky``), deadlines (``Slow``),
streaming ops (``Streamer``) and a background loop (``Ticker``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError
from pulsing_daemon.remote import nonblocking, remote

__all__ = ["Counter", "Echo", "Flaky", "Slow", "Streamer", "Ticker", "Worker"]


class Echo:
    """Returns what it is given (@nonblocking: on the event loop, no thread hop)."""

    @nonblocking
    def echo(self, *args: Any, **kwargs: Any) -> Any:
        """A single positional argument comes back as is; anything else as args/kwargs."""
        if len(args) == 1 and not kwargs:
            return args[0]
        return {"args": list(args), "kwargs": kwargs}

    @nonblocking
    def ping(self) -> str:
        return "pong"


class Counter:
    """An integer that survives between asks (but not a restart)."""

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.value = start

    def incr(self, by: int = 1) -> int:
        """Add ``by`` and return the new value."""
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value

    def reset(self) -> int:
        """Go back to ``start`` and return it."""
        self.value = self.start
        return self.value


@remote(restart_policy="on_failure", max_restarts=5, min_backoff=0.2, max_backoff=10.0)
class Worker:
    """The seed's worker: ``work(x=0)`` crashes it, which triggers a restart."""

    def __init__(self, scale: int = 1) -> None:
        self.scale = scale

    def work(self, x: int) -> int:
        """``100 // x * scale``; x=0 raises ZeroDivisionError, a failure of the instance."""
        return 100 // x * self.scale

    def divide(self, a: float, b: float) -> float:
        return a / b

    def validate(self, x: Any) -> Any:
        """Return ``x``; a negative one is a business error (never retried)."""
        if x < 0:
            raise PulsingBusinessError("negative", "x must be >= 0", {"x": x})
        return x


class Flaky:
    """Fails in each of the ways the error categories tell apart."""

    def __init__(self, fail_every: int = 2) -> None:
        self.fail_every = fail_every  # < 1 means call() never fails
        self.calls = 0

    def call(self) -> int:
        """The call number, except every ``fail_every``-th call: a recoverable system error."""
        self.calls += 1
        if self.fail_every >= 1 and self.calls % self.fail_every == 0:
            raise PulsingSystemError("upstream unavailable, try again", recoverable=True)
        return self.calls

    def process(self, data: Any) -> dict[str, Any]:
        """Like ``call``, for the reliability page's ``process_with_retry`` example."""
        self.call()
        return {"processed": data, "call": self.calls}

    def crash(self) -> None:
        """An unexpected exception: a failure of the instance."""
        raise RuntimeError("flaky crashed")

    def fatal(self) -> None:
        """A non-recoverable system error: also a failure of the instance."""
        raise PulsingSystemError("corrupted state", recoverable=False)


class Slow:
    """Takes its time, politely (``sleep``) or not (``block``)."""

    async def sleep(self, seconds: float = 1.0) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def block(self, seconds: float = 1.0) -> float:
        """A blocking sync op: it must not stall the daemon or the other actors."""
        time.sleep(seconds)
        return seconds


class Streamer:
    """Streaming ops: every chunk yielded is journaled and gets a ``seq``."""

    async def count(self, n: int = 10, delay: float = 0.0) -> AsyncIterator[dict[str, int]]:
        """``{"i": 0}`` ... ``{"i": n - 1}``, ``delay`` seconds apart."""
        for i in range(n):
            if delay > 0 and i > 0:
                await asyncio.sleep(delay)
            yield {"i": i}

    def lines(self, text: str) -> Iterator[str]:
        """Each line of ``text`` (a sync generator)."""
        yield from text.splitlines()

    async def fail_after(self, n: int = 3) -> AsyncIterator[dict[str, int]]:
        """``n`` chunks, then a RuntimeError: the stream ends with an error record."""
        for i in range(n):
            yield {"i": i}
        raise RuntimeError(f"failed after {n} chunks")


class Ticker:
    """A background loop owned by the actor: ``run()`` ticks every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.ticks = 0
        self.started = False
        self.stopped = False

    def on_start(self) -> None:
        self.started = True

    def on_stop(self) -> None:
        self.stopped = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.ticks += 1

    def ticks_so_far(self) -> int:
        return self.ticks
