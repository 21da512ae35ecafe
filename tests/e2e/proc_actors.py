"""Actors for the ``isolation = "process"`` end-to-end tests (tests/e2e/test_process.py).

Every execution that matters leaves a line in a file, so tests can count runs across
instances, processes and restarts. The same class serves both isolation modes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

from e2e_helpers import bump

from pulsing_daemon.exceptions import PulsingBusinessError


class Worker:
    """A representative actor: plain, async, failing, streaming and dying ops."""

    def __init__(self, effects: str = "", hooks: str = "") -> None:
        self.effects = effects
        self.hooks = hooks
        self.calls = 0

    # ------------------------------------------------------------ lifecycle hooks
    def on_start(self) -> None:
        bump(self.hooks, f"on_start {os.getpid()}")

    def on_stop(self) -> None:
        bump(self.hooks, f"on_stop {os.getpid()}")

    # ------------------------------------------------------------ ordinary ops
    def hello(self, name: str = "world") -> dict:
        self.calls += 1
        return {"hello": name, "calls": self.calls}

    def pid(self) -> int:
        return os.getpid()

    def mark(self, tag: str = "x") -> str:
        bump(self.effects, tag)
        return tag

    def business(self) -> None:
        raise PulsingBusinessError("bad_input", "that input is wrong", {"field": "x"})

    def crash(self, message: str = "boom") -> None:
        raise RuntimeError(message)

    def block_then_crash(self, seconds: float = 0.5) -> None:
        time.sleep(seconds)
        raise RuntimeError("crashed after a while")

    def block(self, seconds: float = 0.5) -> float:
        time.sleep(seconds)
        return seconds

    async def nap(self, seconds: float = 5.0, tag: str = "nap") -> float:
        await asyncio.sleep(seconds)
        bump(self.effects, tag)  # only reached when not cancelled
        return seconds

    async def count(self, n: int = 5) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    def unserializable(self) -> object:
        return object()

    # ------------------------------------------------------------ process facts
    def env(self, name: str) -> str | None:
        return os.environ.get(name)

    def cwd(self) -> str:
        return os.getcwd()

    def say(self, text: str = "hello") -> str:
        print(text, flush=True)
        return text

    # ------------------------------------------------------------ hard deaths
    def exit(self, code: int = 3) -> None:
        os._exit(code)

    def block_then_exit(self, seconds: float = 0.5, code: int = 3) -> None:
        time.sleep(seconds)
        os._exit(code)

    def segfault(self) -> None:
        import ctypes

        ctypes.string_at(0)

    def hog(self, mb: int = 1024) -> int:
        blob = bytearray(mb * 1024 * 1024)
        return len(blob)

    def spin(self, seconds: float = 10.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    def hang(self, seconds: float = 30.0) -> float:
        time.sleep(seconds)
        bump(self.effects, "hang finished")
        return seconds


class Echo:
    """An inline bystander that must keep answering while a process actor dies."""

    def echo(self, value: object = None) -> object:
        return value
