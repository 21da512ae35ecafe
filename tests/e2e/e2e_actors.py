"""Actors for end-to-end tests. Side effects go to files so tests can count executions
even across instance restarts and daemon restarts."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from e2e_helpers import bump

from pulsing_daemon import remote
from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError


class Recorder:
    """Counts executions in a file: ``effects`` lines = times an op really ran."""

    def __init__(self, effects: str = "", starts: str = "") -> None:
        self.effects = effects
        bump(starts, f"start {os.getpid()}")

    def mark(self, tag: str = "x") -> str:
        bump(self.effects, tag)
        return tag

    async def amark_after(self, tag: str = "x", delay: float = 0.5) -> str:
        await asyncio.sleep(delay)
        bump(self.effects, tag)
        return tag

    def block(self, seconds: float = 1.0, tag: str = "block") -> str:
        time.sleep(seconds)
        bump(self.effects, tag)
        return tag

    async def sleep(self, seconds: float = 1.0) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def crash(self, message: str = "boom") -> None:
        raise RuntimeError(message)

    def crash_after(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)
        raise RuntimeError("crashed after a while")

    def business(self) -> None:
        raise PulsingBusinessError("bad_input", "that input is wrong", {"field": "x"})

    def recoverable(self) -> None:
        raise PulsingSystemError("try again later", recoverable=True)

    def fatal(self) -> None:
        raise PulsingSystemError("state corrupted", recoverable=False)

    def _secret(self) -> str:
        return "never"

    def pid(self) -> int:
        return os.getpid()


class BadInit:
    def __init__(self) -> None:
        raise ValueError("cannot initialise")

    def ping(self) -> str:
        return "pong"


class BadStart:
    def on_start(self) -> None:
        raise RuntimeError("on_start failed")

    def ping(self) -> str:
        return "pong"


class Looper:
    """``run()`` exits after ``run_for`` seconds, or raises when ``crash`` is set."""

    def __init__(self, run_for: float = 0.2, crash: bool = False, starts: str = "") -> None:
        self.run_for = run_for
        self.crash = crash
        bump(starts, "start")

    async def run(self) -> None:
        await asyncio.sleep(self.run_for)
        if self.crash:
            raise RuntimeError("run() crashed")

    def ping(self) -> str:
        return "pong"


class Raw:
    """Gets every message through ``receive``."""

    def receive(self, msg: dict) -> dict:
        return {"got": msg}


class Hooks:
    def __init__(self, log: str = "") -> None:
        self.log = log

    async def on_start(self) -> None:
        bump(self.log, "on_start")

    def on_stop(self) -> None:
        bump(self.log, "on_stop")

    def ping(self) -> str:
        return "pong"


@remote(restart_policy="never", max_restarts=0)
class NeverRestart:
    def crash(self) -> None:
        raise RuntimeError("down for good")

    def ping(self) -> str:
        return "pong"


class Unserializable:
    def thing(self) -> object:
        return object()


def read_lines(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


class Echo:
    """Returns what it was called with; ``add`` has required parameters."""

    def echo(self, *args: object, **kwargs: object) -> dict:
        return {"args": list(args), "kwargs": kwargs}

    def add(self, a: int, b: int) -> int:
        return a + b

    async def aecho(self, value: object = None) -> object:
        return value


class Raiser:
    """Raises the other error types and exceptions that are not ``Exception``s."""

    def timeout(self) -> None:
        from pulsing_daemon.exceptions import PulsingTimeoutError

        raise PulsingTimeoutError("fetch", 1500)

    def unsupported(self) -> None:
        from pulsing_daemon.exceptions import PulsingUnsupportedError

        raise PulsingUnsupportedError("fetch")

    def sys_exit(self) -> None:
        raise SystemExit(3)

    async def async_sys_exit(self) -> None:
        raise SystemExit(3)

    async def async_keyboard_interrupt(self) -> None:
        raise KeyboardInterrupt

    def ping(self) -> str:
        return "pong"


class ExitInRun:
    """``run()`` raises ``SystemExit``: a failure of the instance, not of the daemon."""

    async def run(self) -> None:
        await asyncio.sleep(0.05)
        raise SystemExit(5)

    def ping(self) -> str:
        return "pong"
