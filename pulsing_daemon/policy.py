"""Restart policies and their arithmetic: backoff, restart window, reset after health.

Pure functions of an injected clock, so the rules are unit-tested without sleeping.

Backoff: the n-th consecutive restart (n = 0, 1, ...) waits
``d = min(max_backoff, min_backoff * 2**n)`` jittered uniformly within
``[max(min_backoff, d / 2), d]`` -- the first restart waits exactly ``min_backoff``,
later ones grow x2 but never fall below ``min_backoff`` nor exceed ``max_backoff``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass


class RestartPolicy(str, enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"

    @classmethod
    def parse(cls, value: str) -> RestartPolicy:
        """Accept ``on_failure``, ``on-failure`` and any case; raise ValueError otherwise."""
        normalised = str(value).strip().lower().replace("-", "_")
        try:
            return cls(normalised)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ValueError(
                f"unknown restart policy {value!r} (expected one of: {choices})"
            ) from None


class ExitKind(str, enum.Enum):
    """How an instance ended, as far as the restart policy cares."""

    FAILURE = "failure"  # an exception escaped, the process died, a deadline kill ...
    EXIT = "exit"  # run() returned normally


def backoff_delay(
    attempt: int, min_backoff: float, max_backoff: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before the ``attempt``-th consecutive restart (0-based), jittered."""
    ceiling = min(max_backoff, min_backoff * (2 ** min(attempt, 62)))
    floor = max(min_backoff, ceiling / 2)
    return floor + (ceiling - floor) * rand()


@dataclass
class RestartDecision:
    restart: bool
    delay: float = 0.0
    reason: str = ""
    exhausted: bool = False  # refused because max_restarts was reached


class RestartTracker:
    """Counts automatic restarts against ``max_restarts`` and picks backoff delays.

    With ``restart_window`` the count is of restarts within the last ``window`` seconds
    (a sliding window); without it, every restart since the last reset counts.
    ``reset_after`` seconds of healthy running start backoff and count over.
    """

    def __init__(
        self,
        policy: RestartPolicy,
        max_restarts: int,
        min_backoff: float,
        max_backoff: float,
        restart_window: float | None = None,
        reset_after: float | None = None,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        import time

        self.policy = policy
        self.max_restarts = max_restarts
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.restart_window = restart_window
        self.reset_after = reset_after
        self.clock = clock or time.monotonic
        self.rand = rand
        # Times of automatic restarts, oldest first (a list: an empty deque is ~0.7 KB,
        # and there is one tracker per actor).
        self._restarts: list[float] = []
        self._consecutive = 0  # drives the backoff exponent
        self._healthy_since: float | None = None

    @property
    def count(self) -> int:
        """Automatic restarts that count against ``max_restarts`` right now."""
        now = self.clock()
        self._apply_reset_after(now)
        self._expire(now)
        return len(self._restarts)

    def _expire(self, now: float) -> None:
        if self.restart_window is not None:
            times, expired = self._restarts, 0
            while expired < len(times) and now - times[expired] > self.restart_window:
                expired += 1
            del times[:expired]

    def mark_running(self) -> None:
        """The instance reached ``running``; healthy time starts now."""
        self._healthy_since = self.clock()

    def _apply_reset_after(self, now: float) -> None:
        if (
            self.reset_after is not None
            and self._healthy_since is not None
            and now - self._healthy_since >= self.reset_after
        ):
            self._consecutive = 0
            if self.restart_window is None:
                self._restarts.clear()

    def on_exit(self, kind: ExitKind) -> RestartDecision:
        """Decide what happens after the instance ended; records the restart if any."""
        now = self.clock()
        self._apply_reset_after(now)
        self._healthy_since = None
        if self.policy is RestartPolicy.NEVER:
            return RestartDecision(False, reason="restart_policy is never")
        if kind is ExitKind.EXIT and self.policy is not RestartPolicy.ALWAYS:
            return RestartDecision(False, reason="run() exited normally")
        self._expire(now)
        if len(self._restarts) >= self.max_restarts:
            window = f" within {self.restart_window:g}s" if self.restart_window else ""
            return RestartDecision(
                False,
                reason=f"gave up after {len(self._restarts)} restarts{window}",
                exhausted=True,
            )
        delay = backoff_delay(self._consecutive, self.min_backoff, self.max_backoff, self.rand)
        self._consecutive += 1
        self._restarts.append(now)
        return RestartDecision(True, delay=delay)

    def reset(self) -> None:
        """An operator restart: count and backoff start over."""
        self._restarts.clear()
        self._consecutive = 0
