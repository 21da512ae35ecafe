"""pulsing_daemon.policy: backoff arithmetic and the restart tracker, on a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulsing_daemon.policy import (
    ExitKind,
    RestartPolicy,
    RestartTracker,
    backoff_delay,
)

FAILURE, EXIT = ExitKind.FAILURE, ExitKind.EXIT


class FakeClock:
    """A mutable float standing in for time.monotonic."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tracker(
    policy: RestartPolicy = RestartPolicy.ON_FAILURE,
    *,
    max_restarts: int = 5,
    min_backoff: float = 1.0,
    max_backoff: float = 100.0,
    restart_window: float | None = None,
    reset_after: float | None = None,
    rand: float = 1.0,
) -> tuple[RestartTracker, FakeClock]:
    clock = FakeClock()
    t = RestartTracker(
        policy,
        max_restarts,
        min_backoff,
        max_backoff,
        restart_window=restart_window,
        reset_after=reset_after,
        clock=clock,
        rand=lambda: rand,
    )
    return t, clock


# ----------------------------------------------------------------- backoff_delay
backoffs = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)
factors = st.floats(min_value=1.0, max_value=10_000.0, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
attempts = st.integers(min_value=0, max_value=200)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@given(backoffs, factors, unit)
def test_first_delay_is_exactly_min_backoff(min_backoff: float, factor: float, r: float) -> None:
    max_backoff = min_backoff * factor
    assert backoff_delay(0, min_backoff, max_backoff, lambda: r) == min_backoff


@given(backoffs, factors, attempts, unit)
def test_delay_within_jitter_bounds(
    min_backoff: float, factor: float, attempt: int, r: float
) -> None:
    max_backoff = min_backoff * factor
    delay = backoff_delay(attempt, min_backoff, max_backoff, lambda: r)
    ceiling = min(max_backoff, min_backoff * 2**attempt)
    floor = max(min_backoff, ceiling / 2)
    assert floor - 1e-9 * max(1.0, floor) <= delay <= ceiling + 1e-9 * max(1.0, ceiling)
    # never below min_backoff, never above max_backoff
    assert delay >= min_backoff or close(delay, min_backoff)
    assert delay <= max_backoff or close(delay, max_backoff)


@given(backoffs, factors, attempts)
def test_delay_grows_x2_until_capped(min_backoff: float, factor: float, attempt: int) -> None:
    max_backoff = min_backoff * factor
    top = backoff_delay(attempt, min_backoff, max_backoff, lambda: 1.0)
    nxt = backoff_delay(attempt + 1, min_backoff, max_backoff, lambda: 1.0)
    assert close(nxt, min(max_backoff, 2 * top))


@given(backoffs, factors, attempts)
def test_delay_is_monotonic_in_attempt(min_backoff: float, factor: float, attempt: int) -> None:
    max_backoff = min_backoff * factor
    for r in (0.0, 0.5, 1.0):
        a = backoff_delay(attempt, min_backoff, max_backoff, lambda r=r: r)
        b = backoff_delay(attempt + 1, min_backoff, max_backoff, lambda r=r: r)
        assert b >= a or close(a, b)


def test_backoff_concrete_sequence() -> None:
    ceilings = [backoff_delay(n, 0.2, 10.0, lambda: 1.0) for n in range(8)]
    assert ceilings == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
    floors = [backoff_delay(n, 0.2, 10.0, lambda: 0.0) for n in range(8)]
    assert floors == pytest.approx([0.2, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10_000, 0.2, 10.0, lambda: 1.0) == pytest.approx(10.0)


def test_backoff_default_rand_within_bounds() -> None:
    for _ in range(200):
        d = backoff_delay(3, 0.1, 10.0)
        assert 0.4 <= d <= 0.8


# ----------------------------------------------------------------- policies
def test_never_does_not_restart() -> None:
    t, _ = tracker(RestartPolicy.NEVER)
    for kind in (FAILURE, EXIT):
        decision = t.on_exit(kind)
        assert decision.restart is False
        assert "never" in decision.reason
    assert t.count == 0


def test_on_failure_restarts_after_failure_only() -> None:
    t, _ = tracker(RestartPolicy.ON_FAILURE, min_backoff=0.5)
    decision = t.on_exit(FAILURE)
    assert decision.restart is True
    assert decision.delay == 0.5
    assert t.count == 1
    exit_decision = t.on_exit(EXIT)
    assert exit_decision.restart is False
    assert exit_decision.reason
    assert t.count == 1  # a normal exit is not a restart


def test_always_restarts_after_exit_and_failure() -> None:
    t, _ = tracker(RestartPolicy.ALWAYS)
    assert t.on_exit(EXIT).restart is True
    assert t.on_exit(FAILURE).restart is True
    assert t.count == 2


@pytest.mark.parametrize("policy", [RestartPolicy.ON_FAILURE, RestartPolicy.ALWAYS])
def test_gives_up_past_max_restarts(policy: RestartPolicy) -> None:
    t, clock = tracker(policy, max_restarts=3)
    for _ in range(3):
        assert t.on_exit(FAILURE).restart is True
        clock.advance(1.0)
    decision = t.on_exit(FAILURE)
    assert decision.restart is False
    assert "3" in decision.reason
    assert t.count == 3
    # without a window, time alone does not re-allow restarts
    clock.advance(10_000.0)
    assert t.on_exit(FAILURE).restart is False


def test_max_restarts_zero_never_restarts() -> None:
    t, _ = tracker(max_restarts=0)
    assert t.on_exit(FAILURE).restart is False


def test_delays_grow_between_consecutive_restarts() -> None:
    t, clock = tracker(min_backoff=1.0, max_backoff=5.0, max_restarts=10)
    delays = []
    for _ in range(5):
        delays.append(t.on_exit(FAILURE).delay)
        clock.advance(0.1)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


# ----------------------------------------------------------------- sliding window
def test_restart_window_expiry_re_allows_restarts() -> None:
    t, clock = tracker(max_restarts=2, restart_window=10.0)
    assert t.on_exit(FAILURE).restart is True  # t=0
    clock.advance(1.0)
    assert t.on_exit(FAILURE).restart is True  # t=1
    clock.advance(1.0)
    decision = t.on_exit(FAILURE)  # t=2: two within the window
    assert decision.restart is False
    assert "10s" in decision.reason
    assert t.count == 2
    clock.advance(8.5)  # t=10.5: the restart at t=0 has left the window
    assert t.count == 1
    assert t.on_exit(FAILURE).restart is True
    assert t.count == 2
    clock.advance(100.0)
    assert t.count == 0


def test_restart_window_slides() -> None:
    t, clock = tracker(max_restarts=3, restart_window=5.0)
    allowed = []
    for _ in range(20):  # one failure every 2s: at most 3 restarts in any 5s
        allowed.append(t.on_exit(FAILURE).restart)
        assert t.count <= 3
        clock.advance(2.0)
    assert all(allowed)  # 2s apart, at most 3 fall within 5s


# ----------------------------------------------------------------- reset_after
def test_reset_after_healthy_running_resets_backoff_and_count() -> None:
    t, clock = tracker(max_restarts=3, reset_after=5.0)
    assert [t.on_exit(FAILURE).delay for _ in range(3)] == [1.0, 2.0, 4.0]
    assert t.count == 3
    t.mark_running()
    clock.advance(5.0)
    decision = t.on_exit(FAILURE)
    assert decision.restart is True  # count started over, so not given up
    assert decision.delay == 1.0  # exponent started over
    assert t.count == 1


def test_short_running_does_not_reset() -> None:
    t, clock = tracker(max_restarts=10, reset_after=5.0)
    assert t.on_exit(FAILURE).delay == 1.0
    t.mark_running()
    clock.advance(4.9)
    assert t.on_exit(FAILURE).delay == 2.0
    assert t.count == 2


def test_reset_after_needs_mark_running() -> None:
    """Time spent failing to start (never reaching running) is not healthy time."""
    t, clock = tracker(max_restarts=10, reset_after=5.0)
    t.mark_running()
    clock.advance(1.0)
    assert t.on_exit(FAILURE).delay == 1.0
    clock.advance(100.0)  # never marked running again
    assert t.on_exit(FAILURE).delay == 2.0
    assert t.count == 2


def test_reset_after_none_never_resets() -> None:
    t, clock = tracker(max_restarts=10, reset_after=None)
    t.on_exit(FAILURE)
    t.mark_running()
    clock.advance(1e9)
    assert t.on_exit(FAILURE).delay == 2.0
    assert t.count == 2


def test_reset_after_with_window_resets_exponent() -> None:
    t, clock = tracker(max_restarts=10, restart_window=1000.0, reset_after=5.0)
    t.on_exit(FAILURE)
    t.on_exit(FAILURE)
    t.mark_running()
    clock.advance(5.0)
    assert t.on_exit(FAILURE).delay == 1.0


# ----------------------------------------------------------------- operator reset
def test_operator_reset_clears_count_and_backoff() -> None:
    t, _ = tracker(max_restarts=2)
    t.on_exit(FAILURE)
    t.on_exit(FAILURE)
    assert t.on_exit(FAILURE).restart is False
    t.reset()
    assert t.count == 0
    decision = t.on_exit(FAILURE)
    assert decision.restart is True
    assert decision.delay == 1.0


def test_default_clock_is_usable() -> None:
    t = RestartTracker(RestartPolicy.ON_FAILURE, 1, 0.01, 0.02)
    assert t.on_exit(FAILURE).restart is True
    assert t.count == 1


# ----------------------------------------------------------------- parse
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on_failure", RestartPolicy.ON_FAILURE),
        ("on-failure", RestartPolicy.ON_FAILURE),
        ("ON_FAILURE", RestartPolicy.ON_FAILURE),
        ("On-Failure", RestartPolicy.ON_FAILURE),
        ("never", RestartPolicy.NEVER),
        ("NEVER", RestartPolicy.NEVER),
        ("always", RestartPolicy.ALWAYS),
        (" Always ", RestartPolicy.ALWAYS),
    ],
)
def test_parse_accepts(text: str, expected: RestartPolicy) -> None:
    assert RestartPolicy.parse(text) is expected


@pytest.mark.parametrize("junk", ["sometimes", "", "on failure", "onfailure", "1"])
def test_parse_rejects_junk_clearly(junk: str) -> None:
    with pytest.raises(ValueError) as info:
        RestartPolicy.parse(junk)
    message = str(info.value)
    assert repr(junk) in message
    for choice in ("never", "on_failure", "always"):
        assert choice in message


def test_policy_values_are_the_toml_spelling() -> None:
    assert {p.value for p in RestartPolicy} == {"never", "on_failure", "always"}
