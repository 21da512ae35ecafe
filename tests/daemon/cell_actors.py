"""Small actor classes for tests/daemon/test_cell.py (imported through ``pythonpath``).

The tests run on a virtual clock (virtual_time.py): async ops sleep on it, and a sync
op that must take a while waits at a gate the test opens instead of sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

from virtual_time import gate

from pulsing_daemon import nonblocking
from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError

# Ops record what really ran here (tokens), so tests can prove an op never executed.
RAN: list[str] = []
_instances = itertools.count(1)


class Worker:
    def __init__(self, scale: int = 1) -> None:
        self.scale = scale
        self.instance = next(_instances)

    async def echo(self, x: object) -> object:
        return x

    def sync_echo(self, x: object) -> object:
        return x

    @nonblocking
    def on_loop(self) -> str:
        """The thread it ran on: the event loop's, since it is @nonblocking."""
        return threading.current_thread().name

    def on_thread(self) -> str:
        return threading.current_thread().name

    def affinity(self) -> list[int]:
        """The CPUs the op thread may run on."""
        return sorted(os.sched_getaffinity(0))

    def burn(self, seconds: float) -> float:
        """Spend ``seconds`` of CPU (a heavy op)."""
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        return seconds

    def nap(self, seconds: float) -> float:
        """A sync op that takes ``seconds`` on its thread."""
        time.sleep(seconds)
        return seconds

    @nonblocking
    def hog(self, delay: float) -> float:
        """Breaks its @nonblocking promise: holds the loop ``delay`` real seconds."""
        time.sleep(delay)
        return delay

    async def whoami(self) -> int:
        return self.instance

    async def mark(self, token: str) -> str:
        RAN.append(token)
        return token

    async def slow(self, delay: float, token: str = "") -> float:
        await asyncio.sleep(delay)
        if token:
            RAN.append(token)
        return delay

    def block(self, name: str) -> str:
        """A sync op that takes until the test opens the gate ``name``."""
        gate(name).wait()
        return name

    async def crash(self) -> None:
        raise ZeroDivisionError("boom")

    async def fatal(self) -> None:
        raise PulsingSystemError("disk gone", recoverable=False)

    async def transient(self) -> None:
        raise PulsingSystemError("try again", recoverable=True)

    async def reject(self, x: int) -> None:
        raise PulsingBusinessError("out_of_range", f"x={x} too big", {"max": 10})

    def _private(self) -> str:
        return "secret"


class FailsToStart:
    def __init__(self) -> None:
        raise RuntimeError("no config")

    async def echo(self, x: object) -> object:
        return x


class Returns:
    """A background loop that ends normally soon after start."""

    async def run(self) -> None:
        await asyncio.sleep(0.02)

    async def echo(self, x: object) -> object:
        return x


class RunCrashes:
    """A background loop that crashes soon after start."""

    async def run(self) -> None:
        await asyncio.sleep(0.02)
        raise KeyError("loop broke")

    async def echo(self, x: object) -> object:
        return x


class SyncWorker:
    """Sync ops only, so queued asks are taken into batches (batching.run_batch)."""

    def mark(self, token: str) -> str:
        RAN.append(token)
        return token

    def block(self, name: str, token: str = "") -> str:
        """A sync op that takes until the test opens the gate ``name``."""
        gate(name).wait()
        if token:
            RAN.append(token)
        return name

    def boom(self, token: str = "") -> None:
        RAN.append(token)
        raise RuntimeError("boom")


class Broken:
    """An instance whose op cannot even be looked up: starting the op fails."""

    def ping(self) -> str:
        return "pong"

    def ok(self) -> str:
        return "ok"

    def __getattribute__(self, name: str) -> object:
        if name == "ping":
            raise RuntimeError("instance is broken")
        return object.__getattribute__(self, name)
