"""One deadline on one clock: the event loop's.

Every per-request deadline in the daemon is a point on ``loop.time()``, the clock
asyncio schedules its timers on (``call_at``, ``wait_for``, ``sleep``), so a deadline
and the timer that enforces it always agree. With the default loop that clock is
``time.monotonic()``, which may also be read from an op thread.

What reads it: the mailbox expiry (a cell's :class:`DeadlineWatch`, one ``call_at``),
an async op's deadline (:func:`deadline_scope`), a batched sync op claimed on its
thread (``hosts.threads.SyncCall`` reads ``loop.time``), the cell's backoff, uptime
and restart window (``ActorCell.clock``), and idempotency's wait for a running key.

An envelope's deadline is a plain float on this clock (what ``Deadline.at`` holds),
not a ``Deadline``: the ask path reads it as a number -- the watch's timer for the
mailbox expiry, ``deadline - loop.time()`` for the op's timeout, the claim of a batched call
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
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pulsing_daemon.envelope import Envelope

Clock = Callable[[], float]  # seconds; only differences between readings mean anything

_DEADLINE = operator.attrgetter("deadline")


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


class DeadlineWatch:
    """The deadlines of one cell's messages, enforced by one loop timer.

    A message joins the watch when it is queued (``add``) and leaves it when it is
    answered or taken to run without it (``drop``): a dict entry each way. One
    ``call_at`` timer is armed at the earliest deadline the watch holds; when it fires,
    the messages due by then leave the watch and go to ``expire`` (the cell's: answer a
    queued one, cancel an op awaited in place), in deadline order, and the timer is
    armed again at the earliest deadline left. A message that leaves before its
    deadline, as almost every one does, costs no timer work: the timer then fires for
    nothing, once, and re-arms. (A uvloop timer made and cancelled per message costs
    several times the two dict operations: benchmarks/README.md, "Instructions per
    request".)
    """

    __slots__ = ("_at", "_expire", "_handle", "_watched")

    def __init__(self, expire: Callable[[Envelope], None]) -> None:
        self._expire = expire
        # in the order added: messages with one deadline expire in that order
        self._watched: dict[Envelope, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires (inf: not armed)

    def add(self, envelope: Envelope) -> None:
        """Watch ``envelope``'s deadline (``envelope.watch`` is this watch until it leaves)."""
        self._watched[envelope] = None
        envelope.watch = self
        if envelope.deadline < self._at:
            self._arm(envelope.deadline)

    def drop(self, envelope: Envelope) -> None:
        """Stop watching ``envelope``."""
        envelope.watch = None
        self._watched.pop(envelope, None)

    def __len__(self) -> int:
        return len(self._watched)

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = at
        self._handle = asyncio.get_running_loop().call_at(at, self._fire)

    def _fire(self) -> None:
        # Due: every deadline up to the one the timer was armed for (a loop may run a
        # timer a little before its time, as it would have run a message's own timer).
        due_by = max(self._at, asyncio.get_running_loop().time())
        self._handle = None
        self._at = math.inf
        due = sorted(
            (envelope for envelope in self._watched if envelope.deadline <= due_by),
            key=_DEADLINE,
        )
        for envelope in due:
            self.drop(envelope)
        for envelope in due:
            self._expire(envelope)
        if self._watched:
            earliest = min(envelope.deadline for envelope in self._watched)
            if earliest < self._at:  # (expire may have added one and armed for it)
                self._arm(earliest)


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
