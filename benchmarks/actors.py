"""Actor classes hosted by the benchmark daemons (configs put this directory on
``pythonpath`` and name them ``actors:Class``). Each op is as trivial as possible so
what is measured is pulsing's own overhead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pulsing_daemon import nonblocking


class Trivial:
    """The JSON round trip of the bare echo server: return the keyword arguments."""

    def echo(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    async def aecho(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    @nonblocking
    def necho(self, **kwargs: Any) -> dict[str, Any]:
        """``echo`` declared non-blocking: it runs on the event loop, not a thread."""
        return kwargs


class Echo:
    """``pulsing ask echo ping`` (CLI start-up benchmark)."""

    def ping(self) -> str:
        return "pong"


class Streamer:
    async def chunks(self, n: int = 100_000) -> AsyncIterator[dict[str, int]]:
        """``{"i": 0}`` .. ``{"i": n-1}`` as fast as the daemon takes them (never awaits)."""
        for i in range(n):
            yield {"i": i}

    async def chunks_yielding(
        self, n: int = 100_000, every: int = 512
    ) -> AsyncIterator[dict[str, int]]:
        """The same, giving the event loop a turn every ``every`` chunks (a workaround
        for, and a preview of, a daemon that yields after each journal commit)."""
        for i in range(n):
            yield {"i": i}
            if i % every == every - 1:
                await asyncio.sleep(0)

    def sync_chunks(self, n: int = 1000) -> Iterator[dict[str, int]]:
        """The same from a plain (sync) generator."""
        for i in range(n):
            yield {"i": i}

    async def paced(
        self, n: int = 2000, batch: int = 50, delay: float = 0.005
    ) -> AsyncIterator[dict[str, int]]:
        """``n`` chunks, pausing ``delay`` s after every ``batch`` (a live, ongoing stream)."""
        for i in range(n):
            yield {"i": i}
            if i % batch == batch - 1:
                await asyncio.sleep(delay)


class Crasher:
    """``crash`` is a failure of the instance (restart); ``ok`` succeeds."""

    async def crash(self) -> None:
        raise RuntimeError("benchmark crash")

    async def ok(self) -> str:
        return "ok"


class Idle:
    """The 10,000-actor scale benchmark: an instance with no state."""

    def ping(self) -> str:
        return "pong"


_logger = logging.getLogger("bench.chatty")


class _Discard(logging.Handler):
    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        return True


# The floor of capturing a logging call: Python's logging makes the record and hands
# it to a handler, which here does nothing (and it goes nowhere else).
_floor = logging.getLogger("bench.floor")
_floor.setLevel(logging.INFO)
_floor.addHandler(_Discard())
_floor.propagate = False


class Chatty:
    """One line of output per ask (the per-actor logs benchmark), and the same ops quiet."""

    async def quiet(self, x: object = None) -> object:
        return x

    async def logged(self, x: object = None) -> object:
        _logger.info("handled ask %s", x)
        return x

    async def logged_floor(self, x: object = None) -> object:
        _floor.info("handled ask %s", x)
        return x

    async def printed(self, x: object = None) -> object:
        print("handled ask", x)
        return x

    async def typed(self, x: int = 0) -> int:
        """An annotated parameter: its argument is checked before the op runs."""
        return x
