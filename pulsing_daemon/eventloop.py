"""Which event loop the daemon runs on.

uvloop (libuv under asyncio's interface) when it is installed -- a dependency of
pulsing on Linux and macOS -- else asyncio's own. ``PULSING_EVENT_LOOP=asyncio``
picks asyncio's loop anyway (a diagnostic switch; pulsing-daemon(1), ENVIRONMENT).

Why: on this stack most of an ask's CPU time is the event loop's (socket reads and
writes, callbacks, timers), and uvloop does that work in C. Measured same-run on a
2-vCPU VM, daemon CPU per async ask at 64 connections: ~85 -> ~70 us
(benchmarks/README.md, "Performance tricks").

Two differences matter to pulsing's code: uvloop's ``loop.time()`` is libuv's
cached clock in whole milliseconds (CLOCK_MONOTONIC, the clock of ``time.monotonic``),
and reading it updates loop state, so another thread must not call it
(:func:`thread_clock`); durations under a millisecond are measured with
``time.perf_counter`` instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

ENV = "PULSING_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


class LoopChoiceError(Exception):
    """``PULSING_EVENT_LOOP`` names a loop that cannot be used."""


def choose() -> str:
    """The loop to run on: ``uvloop`` when installed (or asked for), else ``asyncio``.

    Raises LoopChoiceError for an unknown ``PULSING_EVENT_LOOP`` or an explicit
    ``uvloop`` that is not installed.
    """
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", *CHOICES):
        choices = ", ".join(CHOICES)
        raise LoopChoiceError(
            f"{ENV}={os.environ[ENV]!r} is not a known event loop (use one of: {choices})"
        )
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise LoopChoiceError(
                f"{ENV}=uvloop but uvloop is not installed (pip install uvloop)"
            ) from None
        return "asyncio"
    return "uvloop"


def run(main: Any, choice: str) -> Any:
    """``asyncio.run(main)`` on the loop ``choose`` picked."""
    if choice == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio`` (for the start-up log line)."""
    return "uvloop" if _is_uvloop(loop) else "asyncio"


def thread_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """A clock other threads may read that agrees with ``loop.time()``: asyncio's
    loops read theirs without side effects (``time.monotonic``, or a test's virtual
    clock); uvloop's is ``time.monotonic`` cut to the millisecond, and reading it
    updates libuv's cached time, so threads read ``time.monotonic`` itself (at most
    1 ms ahead of the loop's reading: a deadline seen from a thread may pass up to
    1 ms early)."""
    return time.monotonic if _is_uvloop(loop) else loop.time


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")
