"""pulsing_cli.client retry rules: is_retryable, retry_delay, retry (CONTRACT §4)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulsing_cli import client
from pulsing_cli.client import is_retryable, retry, retry_delay
from pulsing_daemon.exceptions import (
    PulsingActorError,
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
    from_wire,
)


# ----------------------------------------------------------------- is_retryable
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PulsingBusinessError("bad", "no"), False),
        (PulsingBusinessError("bad", "no", recoverable=True), False),
        (PulsingUnsupportedError("frob"), False),
        (PulsingSystemError("boom", recoverable=True), True),
        (PulsingSystemError("boom", recoverable=False), False),
        (PulsingTimeoutError("op", 100), True),
        (PulsingTimeoutError("op", 100, executed=True), True),
        (PulsingRuntimeError("unreachable", recoverable=True), True),
        (PulsingRuntimeError("unknown actor", recoverable=False), False),
        (PulsingRuntimeError("stopped"), False),
        (ValueError("not ours"), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda v: repr(v) if not isinstance(v, bool) else str(v),
)
def test_is_retryable(error: BaseException, expected: bool) -> None:
    assert is_retryable(error) is expected


@pytest.mark.parametrize("recoverable", [True, False])
@pytest.mark.parametrize("category", ["business", "system", "unsupported", "runtime", "timeout"])
def test_is_retryable_from_wire(category: str, recoverable: bool) -> None:
    """Rules hold for errors as the client really gets them: decoded from the wire."""
    error = from_wire({"error": {"category": category, "message": "m", "recoverable": recoverable}})
    expected = {
        "business": False,
        "unsupported": False,
        "system": recoverable,
        "runtime": recoverable,
        "timeout": True,
    }[category]
    assert is_retryable(error) is expected


def test_actor_error_base_is_not_retryable() -> None:
    assert is_retryable(PulsingActorError("x")) is False


# ----------------------------------------------------------------- retry_delay
@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
def test_retry_delay_bounds(attempt: int, base: float, cap: float, r: float) -> None:
    delay = retry_delay(attempt, base, cap, lambda: r)
    assert 0.0 <= delay <= cap
    assert delay <= base * 2 ** min(attempt, 30) * (1 + 1e-12)


@given(st.integers(min_value=0, max_value=40))
def test_retry_delay_full_jitter_extremes(attempt: int) -> None:
    assert retry_delay(attempt, 0.2, 5.0, lambda: 0.0) == 0.0
    assert retry_delay(attempt, 0.2, 5.0, lambda: 1.0) == pytest.approx(min(5.0, 0.2 * 2**attempt))


def test_retry_delay_default_rand() -> None:
    for attempt in range(10):
        assert 0.0 <= retry_delay(attempt, 0.1, 1.0) <= min(1.0, 0.1 * 2**attempt)


# ----------------------------------------------------------------- retry
class Script:
    """An async callable that raises the scripted errors in turn, then returns."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "done"
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the delays retry() waits instead of sleeping."""
    recorded: list[float] = []

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        recorded.append(delay)
        return result

    monkeypatch.setattr(client.asyncio, "sleep", fake_sleep)
    return recorded


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 5.0)

    return asyncio.run(bounded())


def test_retry_success_first_time(sleeps: list[float]) -> None:
    call = Script("ok")
    assert run(retry(call, 3)) == "ok"
    assert call.calls == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        PulsingBusinessError("bad", "no"),
        PulsingUnsupportedError("frob"),
        PulsingSystemError("fatal", recoverable=False),
        PulsingRuntimeError("unknown actor"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retry_stops_at_once_on_non_retryable(sleeps: list[float], error: PulsingError) -> None:
    call = Script(error, "never reached")
    with pytest.raises(type(error)) as info:
        run(retry(call, 5))
    assert info.value is error
    assert call.calls == 1
    assert sleeps == []


def test_retry_does_not_catch_foreign_exceptions(sleeps: list[float]) -> None:
    call = Script(ValueError("bug"), "never reached")
    with pytest.raises(ValueError):
        run(retry(call, 5))
    assert call.calls == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda i: PulsingTimeoutError("op", 10, message=f"t{i}"),
        lambda i: PulsingSystemError(f"s{i}", recoverable=True),
        lambda i: PulsingRuntimeError(f"r{i}", recoverable=True),
    ],
    ids=["timeout", "system", "runtime"],
)
def test_retry_gives_up_after_n_and_raises_last(
    sleeps: list[float], make: Callable[[int], PulsingError]
) -> None:
    errors = [make(i) for i in range(10)]
    call = Script(*errors)
    with pytest.raises(PulsingError) as info:
        run(retry(call, 3, base_delay=0.01, max_delay=0.05))
    assert call.calls == 4  # 1 + retries
    assert info.value is errors[3]  # the last error, not the first
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.0 <= delay <= min(0.05, 0.01 * 2**attempt) + 1e-12


def test_retry_zero_retries(sleeps: list[float]) -> None:
    error = PulsingTimeoutError("op", 1)
    call = Script(error)
    with pytest.raises(PulsingTimeoutError):
        run(retry(call, 0))
    assert call.calls == 1
    assert sleeps == []


def test_retry_succeeds_after_transient_errors(sleeps: list[float]) -> None:
    call = Script(
        PulsingRuntimeError("unreachable", recoverable=True),
        PulsingTimeoutError("op", 5),
        {"result": 7},
    )
    assert run(retry(call, 3, base_delay=0.01)) == {"result": 7}
    assert call.calls == 3
    assert len(sleeps) == 2


def test_retry_stops_when_error_turns_non_retryable(sleeps: list[float]) -> None:
    fatal = PulsingSystemError("gave up", recoverable=False)
    call = Script(PulsingSystemError("restarting", recoverable=True), fatal, "x")
    with pytest.raises(PulsingSystemError) as info:
        run(retry(call, 5, base_delay=0.01))
    assert info.value is fatal
    assert call.calls == 2
    assert len(sleeps) == 1


def test_retry_after_is_a_minimum_delay(sleeps: list[float]) -> None:
    call = Script(
        PulsingRuntimeError("mailbox full", recoverable=True, retry_after=2.5),
        PulsingSystemError("restarting", recoverable=True, retry_after=0.75),
        "ok",
    )
    assert run(retry(call, 3, base_delay=0.01, max_delay=0.02)) == "ok"
    assert sleeps[0] >= 2.5
    assert sleeps[1] >= 0.75
    assert sleeps == pytest.approx([2.5, 0.75])


def test_retry_after_does_not_shorten_backoff(sleeps: list[float], monkeypatch) -> None:
    monkeypatch.setattr(client, "retry_delay", lambda attempt, base, cap: 3.0)
    call = Script(PulsingRuntimeError("x", recoverable=True, retry_after=0.1), "ok")
    assert run(retry(call, 1)) == "ok"
    assert sleeps == [3.0]


def test_retry_after_from_wire_is_honoured(sleeps: list[float]) -> None:
    error = from_wire(
        {"error": {"category": "system", "message": "restarting", "recoverable": True,
                   "retry_after": 1.5}}
    )  # fmt: skip
    call = Script(error, "ok")
    assert run(retry(call, 2, base_delay=0.001)) == "ok"
    assert sleeps[0] >= 1.5


def test_on_retry_called_before_each_retry(sleeps: list[float]) -> None:
    errors = [PulsingTimeoutError("op", 1, message=f"t{i}") for i in range(3)]
    call = Script(*errors, "ok")
    seen: list[tuple[int, PulsingError, float]] = []
    result = run(retry(call, 5, base_delay=0.01, on_retry=lambda n, e, d: seen.append((n, e, d))))
    assert result == "ok"
    assert [n for n, _, _ in seen] == [1, 2, 3]
    assert [e for _, e, _ in seen] == errors
    assert [d for _, _, d in seen] == sleeps


def test_on_retry_not_called_without_retry(sleeps: list[float]) -> None:
    seen: list[Any] = []
    call = Script(PulsingBusinessError("bad", "no"))
    with pytest.raises(PulsingBusinessError):
        run(retry(call, 3, on_retry=lambda *a: seen.append(a)))
    assert seen == []
    call = Script(PulsingTimeoutError("op", 1))
    with pytest.raises(PulsingTimeoutError):
        run(retry(call, 0, on_retry=lambda *a: seen.append(a)))
    assert seen == []
