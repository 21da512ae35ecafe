"""One deadline on one clock: the event loop's.

Every per-request deadline in the daemon is a point on ``loop.time()``, the clock
asyncio schedules its timers on (``call_at``, ``wait_for``, ``sleep``), so a deadline
and the timer that enforces it always agree. With the default loop that clock is
``time.monotonic()``, which may also be read from an op thread.

What reads it: the mailbox expiry (``loop.call_at`` at an envelope's ``deadline``),
an async op's deadline (:func:`deadline_scope`), a batched sync op claimed on its
thread (``hosts.threads.SyncCall`` reads ``loop.time``), the cell's backoff, uptime
and restart window (``ActorCell.clock``), and idempotency's wait for a running key.

An envelope's deadline is a plain float on this clock (what ``Deadline.at`` holds),
not a ``Deadline``: the ask path reads it as a number -- ``call_at`` for the mailbox
expiry, ``deadline - loop.time()`` for the op's timeout, the claim of a batched call
on its thread -- and a ``Deadline`` per ask would put one more object and its clock
lookup on the hottest path for nothing those readers use. Where a countdown helps,
``Deadline(envelope.deadline)`` wraps it (idempotency's wait for a running key).

Tests inject a clock by running a loop whose ``time()`` they drive (a virtual-time
loop: timers fire as soon as nothing else can happen, with no real sleep), or by
handing ``Deadline`` a clock function directly.

Durable timestamps (when a stream or a keyed ask was recorded, what retention
prunes) are wall-clock time instead: they must mean the same after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]  # seconds; only differences between readings mean anything


def loop_clock() -> Clock:
    """The running event loop's clock."""
    return asyncio.get_running_loop().time


class Deadline:
    """A point in time on a clock, by default the running loop's.

    ``Deadline.after(2.0)`` is two seconds from now; ``Deadline(at)`` wraps a time
    already read from the loop's clock (an envelope's ``deadline``).
    """

    __slots__ = ("at", "clock")

    def __init__(self, at: float, clock: Clock | None = None) -> None:
        self.at = at
        self.clock = clock if clock is not None else loop_clock()

    @classmethod
    def after(cls, seconds: float, clock: Clock | None = None) -> Deadline:
        clock = clock if clock is not None else loop_clock()
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """True once the clock has reached the deadline."""
        return self.clock() >= self.at

    def __repr__(self) -> str:
        return f"Deadline(at={self.at!r}, remaining={self.remaining():.3f})"


def deadline_scope(seconds: float) -> Any:
    """Cancel the current task ``seconds`` from now, reported as ``TimeoutError``:
    ``asyncio.timeout`` (Python >= 3.11), or a shim with the same ``expired()``."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is not None:
        return timeout(seconds)
    return _TimeoutShim(seconds)


class _TimeoutShim:
    """Python 3.10: cancel the current task at the deadline, report it as TimeoutError."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None

    def expired(self) -> bool:
        return self._expired

    def _fire(self, task: asyncio.Task[Any]) -> None:
        self._expired = True
        task.cancel()

    async def __aenter__(self) -> _TimeoutShim:
        task = asyncio.current_task()
        assert task is not None
        self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire, task)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return False
