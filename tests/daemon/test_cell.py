"""pulsing_daemon.cell.ActorCell driven directly: mailbox, supervision, deadlines (CONTRACT §2-4).

Every test runs on a virtual clock (virtual_time.py): backoffs, deadlines and async
ops take no real time, and a bound on a wait is a bound in virtual time (it fires only
when nothing else can happen, so a stuck wait fails at once). A sync op that must take
a while waits at a gate the test opens. Each run is also bounded in real time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from virtual_time import gate, run_virtual

from pulsing_daemon.cell import ActorCell
from pulsing_daemon.config import ActorConfig, parse_config
from pulsing_daemon.envelope import Envelope, new_envelope
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)
from pulsing_daemon.hosts.registry import make_host
from pulsing_daemon.states import ActorState

HERE = Path(__file__).resolve().parent
BOUND = 3.0  # the longest any single wait in these tests may take (virtual seconds)


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a config prepends its pythonpath to sys.path; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def actor_config(tmp_path: Path, cls: str = "cell_actors:Worker", **keys: Any) -> ActorConfig:
    settings = {"class": cls, "min_backoff": 0.01, "max_backoff": 0.02, **keys}
    table = "\n".join(f"{key} = {_toml(value)}" for key, value in settings.items())
    text = (
        "[daemon]\n"
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        f"pythonpath = [{json.dumps(str(HERE))}]\n"
        "\n[actors.w]\n"
        f"{table}\n"
    )
    config = parse_config(text, tmp_path / "pulsing.toml", import_classes=True)
    return config.actors["w"]


def ran() -> list[str]:
    """Tokens of the ops that really ran (cell_actors is importable once a config is read)."""
    return importlib.import_module("cell_actors").RAN


Scenario = Callable[[ActorCell], Awaitable[Any]]

# Set on every state change of a watched cell (through its event hook).
_state_changed: weakref.WeakKeyDictionary[ActorCell, asyncio.Event] = weakref.WeakKeyDictionary()


def watch(cell: ActorCell) -> asyncio.Event:
    """An event set on each state change of ``cell`` (hooked into its ``emit`` once)."""
    changed = _state_changed.get(cell)
    if changed is None:
        changed = _state_changed[cell] = asyncio.Event()
        inner = cell.emit

        def emit(kind: str, actor: str | None = None, **fields: Any) -> None:
            inner(kind, actor, **fields)
            if kind == "state":
                changed.set()

        cell.emit = emit
    return changed


def new_cell(config: ActorConfig) -> ActorCell:
    """A cell whose state changes wake wait_for_state (no polling)."""
    cell = ActorCell(config, make_host, default_timeout=5.0)
    watch(cell)
    return cell


def run_cell(config: ActorConfig, scenario: Scenario, *, timeout: float = 8.0) -> Any:
    """Start a cell on a fresh virtual-time loop, run ``scenario(cell)``, then stop the
    cell (all bounded)."""

    async def main() -> Any:
        cell = new_cell(config)
        cell.start()
        try:
            await asyncio.wait_for(cell.wait_started(2.0), BOUND)
            return await asyncio.wait_for(scenario(cell), timeout)
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    return run_virtual(main())


def now() -> float:
    """The loop's (virtual) time."""
    return asyncio.get_running_loop().time()


def send(cell: ActorCell, op: str, *args: Any, timeout: float = 2.0, **kwargs: Any) -> Envelope:
    envelope = new_envelope(op, list(args), kwargs, timeout)
    cell.submit(envelope)
    return envelope


async def answer(envelope: Envelope) -> Any:
    return await asyncio.wait_for(envelope.future, BOUND)


async def failure(envelope: Envelope) -> PulsingError:
    """The error an envelope was answered with (fails the test if it succeeded)."""
    try:
        value = await answer(envelope)
    except PulsingError as error:
        return error
    raise AssertionError(f"{envelope.op} succeeded with {value!r}; expected an error")


async def wait_for_state(cell: ActorCell, *states: ActorState, timeout: float = BOUND) -> None:
    changed = watch(cell)

    async def reached() -> None:
        while cell.state not in states:
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(reached(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"state {cell.state} never became one of {states}") from None


async def wait_until(predicate: Callable[[], bool], timeout: float = BOUND) -> None:
    """Poll on the virtual clock (a step of it passes only while nothing else can happen)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


# ----------------------------------------------------------------- asks
def test_ask_ok(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        assert cell.state is ActorState.RUNNING
        assert await answer(send(cell, "echo", x={"a": [1, 2]})) == {"a": [1, 2]}
        assert await answer(send(cell, "echo", 5)) == 5
        assert await answer(send(cell, "sync_echo", x="s")) == "s"
        assert cell.counts["ok"] == 3
        assert cell.tracker.count == 0
        assert cell.in_flight == 0
        assert cell.queued == 0

    run_cell(actor_config(tmp_path), scenario)


def test_asks_served_in_mailbox_order(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        envelopes = [send(cell, "mark", f"order-{tmp_path.name}-{i}") for i in range(10)]
        await asyncio.wait_for(asyncio.gather(*(e.future for e in envelopes)), BOUND)
        mine = [t for t in ran() if t.startswith(f"order-{tmp_path.name}-")]
        assert mine == [f"order-{tmp_path.name}-{i}" for i in range(10)]

    run_cell(actor_config(tmp_path), scenario)


def test_caller_errors_do_not_fail_the_instance(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        first = await answer(send(cell, "whoami"))
        business = await failure(send(cell, "reject", x=99))
        assert isinstance(business, PulsingBusinessError)
        assert business.code == "out_of_range"
        assert business.details == {"max": 10}
        assert (business.actor, business.state) == ("w", "running")
        bad_args = await failure(send(cell, "echo", nope=1))
        assert isinstance(bad_args, PulsingBusinessError)
        for op in ("nope", "_private", "__init__", "on_start"):
            unsupported = await failure(send(cell, op))
            assert isinstance(unsupported, PulsingUnsupportedError), op
        transient = await failure(send(cell, "transient"))
        assert isinstance(transient, PulsingSystemError)
        assert transient.recoverable is True
        # none of these was a failure: same instance, no restart
        assert await answer(send(cell, "whoami")) == first
        assert cell.tracker.count == 0
        assert cell.total_restarts == 0
        assert cell.counts["business"] == 2
        assert cell.counts["unsupported"] == 4
        assert cell.counts["system"] == 1

    run_cell(actor_config(tmp_path), scenario)


def test_async_op_past_deadline_times_out_and_actor_goes_on(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        token = f"late-{tmp_path.name}"
        sent = now()
        error = await failure(send(cell, "slow", 1.0, token=token, timeout=0.05))
        assert now() - sent == pytest.approx(0.05)  # answered at its deadline
        assert isinstance(error, PulsingTimeoutError)
        assert error.operation == "slow"
        assert error.extra.get("executed") is True
        assert await answer(send(cell, "echo", 1)) == 1
        assert token not in ran()  # the async op was cancelled at its deadline
        assert cell.state is ActorState.RUNNING

    run_cell(actor_config(tmp_path), scenario)


def test_blocking_sync_op_does_not_stall_the_loop(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        held = gate("stall")
        blocked = send(cell, "block", "stall")
        await wait_until(lambda: held.waiting == 1)  # the op blocks on its thread...
        ticked = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, ticked.set_result, "tick")
        assert await asyncio.wait_for(ticked, BOUND) == "tick"  # ...and the loop goes on:
        assert held.waiting == 1 and not blocked.future.done()  # timers, other tasks
        held.open()  # (an op blocking the loop would hold it in gate.wait: no tick)
        assert await answer(blocked) == "stall"

    run_cell(actor_config(tmp_path), scenario)


def test_a_batched_result_is_not_held_back_by_the_slow_op_behind_it(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        held = gate("slow")
        fast = send(cell, "sync_echo", "quick")  # queued together: one batch
        slow = send(cell, "block", "slow")
        # Answered while the slow op still runs (held back, it would wait out BOUND).
        assert await answer(fast) == "quick"
        assert not slow.future.done()
        held.open()
        assert await answer(slow) == "slow"

    run_cell(actor_config(tmp_path), scenario)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least two CPUs",
)
def test_sync_ops_follow_the_loops_cpu_until_one_is_heavy(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        home = sorted(os.sched_getaffinity(0))
        assert await answer(send(cell, "affinity")) == home  # a lone ask: any CPU
        both = [send(cell, "affinity"), send(cell, "affinity")]  # one batch: busy
        for envelope in both:
            following = await answer(envelope)
            assert len(following) == 1 and following[0] in home
        heavy = send(cell, "burn", 0.01)  # over host.HEAVY_OP of CPU
        after = send(cell, "affinity")  # the rest of the batch runs anywhere
        await answer(heavy)
        assert await answer(after) == home
        both = [send(cell, "affinity"), send(cell, "affinity")]
        for envelope in both:  # the actor does not follow for a while
            assert await answer(envelope) == home

    run_cell(actor_config(tmp_path), scenario)


def test_nonblocking_sync_op_runs_on_the_loop_others_on_a_thread(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        loop_thread = threading.current_thread().name
        assert await answer(send(cell, "on_loop")) == loop_thread
        assert await answer(send(cell, "on_thread")) != loop_thread

    run_cell(actor_config(tmp_path), scenario)


def test_a_nonblocking_op_that_blocks_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real time by nature: the report is of how long the loop was really held (hog
    # sleeps 30 ms on the loop thread, twice), whatever the loop's clock says.
    async def scenario(cell: ActorCell) -> None:
        for _ in range(2):
            assert await answer(send(cell, "hog", 0.03)) == 0.03

    with caplog.at_level(logging.WARNING, logger="pulsing"):
        run_cell(actor_config(tmp_path), scenario)
    warnings = [r for r in caplog.records if r.getMessage() == "blocked_loop"]
    assert len(warnings) == 1, caplog.text
    fields = warnings[0].fields  # type: ignore[attr-defined]
    assert fields["actor"] == "w" and fields["op"] == "hog" and fields["ms"] >= 30
    assert "hog is marked @nonblocking" in fields["msg"]


# ----------------------------------------------------------------- crashes and restarts
def test_crash_backoff_then_running(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        first = await answer(send(cell, "whoami"))
        crash = send(cell, "crash")
        behind = send(cell, "whoami")
        also_behind = send(cell, "echo", x="still here")
        error = await failure(crash)
        assert isinstance(error, PulsingSystemError)
        assert error.recoverable is True
        assert error.state == "backoff"
        assert error.actor == "w"
        assert error.restarts == 1
        assert error.max_restarts == 5
        assert error.type == "ZeroDivisionError"
        assert "boom" in error.message
        # the queued asks are served by the restarted instance
        second = await answer(behind)
        assert second != first
        assert await answer(also_behind) == "still here"
        assert cell.state is ActorState.RUNNING
        status = cell.status()
        assert status["restarts"] == 1
        assert status["counts"]["system"] == 1
        assert status["counts"]["ok"] == 3
        assert status["last_error"]["category"] == "system"
        assert status["last_error"]["type"] == "ZeroDivisionError"
        assert status["last_failure"]["type"] == "ZeroDivisionError"

    run_cell(actor_config(tmp_path, max_restarts=5), scenario)


def test_non_recoverable_system_error_is_a_failure_with_restart(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        first = await answer(send(cell, "whoami"))
        error = await failure(send(cell, "fatal"))
        assert isinstance(error, PulsingSystemError)
        assert "disk gone" in error.message
        assert error.recoverable is True  # a restart is scheduled, so retrying can succeed
        assert error.state == "backoff"
        assert await answer(send(cell, "whoami")) != first

    run_cell(actor_config(tmp_path), scenario)


def test_never_policy_fails_at_once(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        crash = send(cell, "crash")
        queued = send(cell, "echo", 1)
        error = await failure(crash)
        assert isinstance(error, PulsingSystemError)
        assert error.recoverable is False
        assert error.state == "failed"
        drained = await failure(queued)
        assert type(drained) is PulsingRuntimeError
        assert cell.state is ActorState.FAILED
        assert cell.total_restarts == 0

    run_cell(actor_config(tmp_path, restart_policy="never"), scenario)


def test_max_restarts_then_failed(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        token = f"after-fail-{tmp_path.name}"
        first_crash = send(cell, "crash")
        second_crash = send(cell, "crash")
        queued = send(cell, "mark", token)
        first = await failure(first_crash)
        assert first.recoverable is True
        assert first.state == "backoff"
        second = await failure(second_crash)
        assert isinstance(second, PulsingSystemError)
        assert second.recoverable is False  # past max_restarts: no restart follows
        assert second.state == "failed"
        assert (second.restarts, second.max_restarts) == (1, 1)
        drained = await failure(queued)
        assert type(drained) is PulsingRuntimeError
        assert drained.recoverable is False
        assert drained.state == "failed"
        assert "not executed" in drained.message
        assert token not in ran()
        assert cell.state is ActorState.FAILED
        with pytest.raises(PulsingRuntimeError) as info:
            send(cell, "echo", 1)
        assert "failed" in info.value.message
        assert "pulsing restart w" in info.value.extra.get("hint", "")
        assert info.value.state == "failed"
        assert cell.status()["state"] == "failed"

    run_cell(actor_config(tmp_path, max_restarts=1), scenario)


def _run_failing_start(tmp_path: Path, queue_an_ask: bool) -> None:
    async def main() -> None:
        config = actor_config(tmp_path, cls="cell_actors:FailsToStart", max_restarts=2)
        cell = new_cell(config)
        cell.start()
        try:
            if queue_an_ask:
                await wait_for_state(cell, ActorState.STARTING, ActorState.BACKOFF)
                queued = send(cell, "echo", 1)  # accepted while (re)starting
                error = await failure(queued)
                assert type(error) is PulsingRuntimeError
                assert error.state == "failed"
            await wait_for_state(cell, ActorState.FAILED)
            assert cell.total_restarts == 2
            assert cell.tracker.count == 2
            assert cell.last_failure is not None
            assert cell.last_failure["where"] == "start"
            assert cell.last_failure["type"] == "RuntimeError"
            assert "no config" in cell.last_failure["message"]
            status = cell.status()
            assert status["last_failure"]["type"] == "RuntimeError"
            if not queue_an_ask:  # no ask carried the failure: it is the last error
                assert status["last_error"]["type"] == "RuntimeError"
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    run_virtual(asyncio.wait_for(main(), 8.0))


def test_start_failure_counts_and_gives_up(tmp_path: Path) -> None:
    _run_failing_start(tmp_path, queue_an_ask=False)


def test_ask_queued_during_failing_starts_is_answered(tmp_path: Path) -> None:
    _run_failing_start(tmp_path, queue_an_ask=True)


def test_queued_ask_keeps_its_deadline_across_a_restart(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        token = f"deadline-{tmp_path.name}"
        crash = send(cell, "crash")
        queued = send(cell, "mark", token, timeout=0.1)  # expires during the 0.3s backoff
        sent = now()
        await failure(crash)
        error = await failure(queued)
        assert now() - sent == pytest.approx(0.1)
        assert cell.state is ActorState.BACKOFF
        assert isinstance(error, PulsingTimeoutError)
        assert error.extra.get("executed") is False
        await wait_for_state(cell, ActorState.RUNNING)
        assert await answer(send(cell, "echo", 1)) == 1
        assert token not in ran()

    run_cell(actor_config(tmp_path, min_backoff=0.3, max_backoff=0.3), scenario)


def test_during_restart_queue_accepts_asks_in_backoff(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        assert cell.state is ActorState.BACKOFF
        later = send(cell, "echo", "served")
        assert await answer(later) == "served"

    run_cell(actor_config(tmp_path, min_backoff=0.1, max_backoff=0.1), scenario)


# ----------------------------------------------------------------- deadlines in the mailbox
def test_expired_in_mailbox_is_never_run(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        token = f"expired-{tmp_path.name}"
        busy = send(cell, "slow", 0.3)
        queued = send(cell, "mark", token, timeout=0.05)
        started = now()
        error = await failure(queued)
        assert now() - started == pytest.approx(0.05)  # answered at its deadline, not after busy
        assert not busy.future.done()
        assert isinstance(error, PulsingTimeoutError)
        assert error.operation == "mark"
        assert error.extra.get("executed") is False
        assert "never executed" in error.message
        assert error.actor == "w"
        assert await answer(busy) == 0.3
        assert await answer(send(cell, "echo", 1)) == 1  # the mailbox moved past it
        assert token not in ran()
        assert cell.counts["timeout"] == 1
        assert cell.queued == 0

    run_cell(actor_config(tmp_path), scenario)


def test_submit_past_deadline_raises_timeout(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        envelope = new_envelope("mark", ["x"], {}, 0.0)
        with pytest.raises(PulsingTimeoutError):
            cell.submit(envelope)

    run_cell(actor_config(tmp_path), scenario)


# ----------------------------------------------------------------- stop / restart
def test_stop_finishes_current_and_drains_queue(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        token = f"drained-{tmp_path.name}"
        current = send(cell, "slow", 0.2)
        await wait_until(lambda: cell.in_flight == 1)
        queued = [send(cell, "mark", f"{token}-{i}") for i in range(3)]
        await asyncio.wait_for(cell.stop(), BOUND)
        assert cell.state is ActorState.STOPPED
        assert await answer(current) == 0.2  # the message being served finished
        for envelope in queued:
            error = await failure(envelope)
            assert type(error) is PulsingRuntimeError
            assert "not executed" in error.message
        assert not any(t.startswith(token) for t in ran())
        assert cell.queued == 0
        with pytest.raises(PulsingRuntimeError) as info:
            send(cell, "echo", 1)
        assert "stopped" in info.value.message
        assert cell.total_restarts == 0  # a manual stop never triggers a restart
        # and it can be started again
        cell.start()
        await asyncio.wait_for(cell.wait_started(2.0), BOUND)
        assert await answer(send(cell, "echo", 2)) == 2

    run_cell(actor_config(tmp_path), scenario)


def test_stop_during_backoff_does_not_restart(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        assert cell.state is ActorState.BACKOFF
        started = now()
        await asyncio.wait_for(cell.stop(), BOUND)
        assert now() - started < 1.0  # not waiting out the 2s backoff
        assert cell.state is ActorState.STOPPED

    run_cell(actor_config(tmp_path, min_backoff=2.0, max_backoff=2.0), scenario)


def test_operator_restart_resets_count(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        await wait_for_state(cell, ActorState.RUNNING)
        assert cell.tracker.count == 1
        before = await answer(send(cell, "whoami"))
        await asyncio.wait_for(cell.restart(), BOUND)
        await asyncio.wait_for(cell.wait_started(2.0), BOUND)
        assert cell.state is ActorState.RUNNING
        assert cell.tracker.count == 0
        assert cell.operator_restarts == 1
        status = cell.status()
        assert status["restarts"] == 0
        assert status["operator_restarts"] == 1
        assert await answer(send(cell, "whoami")) != before

    run_cell(actor_config(tmp_path), scenario)


def test_operator_restart_keeps_queued_asks(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        current = send(cell, "slow", 0.1)
        await wait_until(lambda: cell.in_flight == 1)
        queued = send(cell, "echo", "kept")
        await asyncio.wait_for(cell.restart(), BOUND)
        assert await answer(current) == 0.1
        assert await answer(queued) == "kept"

    run_cell(actor_config(tmp_path), scenario)


def test_restarts_count_within_the_window_on_the_loops_clock(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        await wait_for_state(cell, ActorState.RUNNING)
        assert cell.tracker.count == 1
        await asyncio.sleep(9.0)
        assert cell.tracker.count == 1
        await asyncio.sleep(2.0)  # past the window: the restart no longer counts
        assert cell.tracker.count == 0
        assert cell.total_restarts == 1

    config = actor_config(tmp_path, restart_window=10.0, reset_after=3600.0)
    run_cell(config, scenario, timeout=30.0)


def test_operator_restart_revives_failed_actor(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        await failure(send(cell, "crash"))
        await wait_for_state(cell, ActorState.FAILED)
        assert cell.tracker.count == 1
        await asyncio.wait_for(cell.restart(), BOUND)
        await asyncio.wait_for(cell.wait_started(2.0), BOUND)
        assert cell.state is ActorState.RUNNING
        assert cell.tracker.count == 0
        assert cell.operator_restarts == 1
        assert await answer(send(cell, "echo", "back")) == "back"
        # the budget is whole again: one more crash is restarted
        error = await failure(send(cell, "crash"))
        assert error.recoverable is True
        assert error.state == "backoff"

    run_cell(actor_config(tmp_path, max_restarts=1), scenario)


# ----------------------------------------------------------------- admission
def test_mailbox_full_raises_runtime_error(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        current = send(cell, "slow", 0.2)
        await wait_until(lambda: cell.in_flight == 1)
        queued = send(cell, "echo", "fits")
        with pytest.raises(PulsingRuntimeError) as info:
            send(cell, "echo", "overflow")
        error = info.value
        assert error.category == "runtime"
        assert "full" in error.message
        assert error.recoverable is True
        assert error.retry_after is not None and error.retry_after > 0
        assert error.actor == "w"
        assert await answer(current) == 0.2
        assert await answer(queued) == "fits"
        assert await answer(send(cell, "echo", "room again")) == "room again"

    run_cell(actor_config(tmp_path, mailbox_size=1), scenario)


def test_fail_fast_during_restart(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        await failure(send(cell, "crash"))
        assert cell.state is ActorState.BACKOFF
        with pytest.raises(PulsingSystemError) as info:
            send(cell, "echo", 1)
        error = info.value
        assert error.recoverable is True
        assert error.category == "system"
        assert error.retry_after is not None
        assert 0 < error.retry_after <= 0.3
        assert error.state == "backoff"
        assert error.http_status == 503
        await wait_for_state(cell, ActorState.RUNNING)
        assert await answer(send(cell, "echo", 2)) == 2

    config = actor_config(tmp_path, during_restart="fail_fast", min_backoff=0.3, max_backoff=0.3)
    run_cell(config, scenario)


# ----------------------------------------------------------------- status
STATUS_KEYS = {
    "name", "state", "policy", "restarts", "max_restarts", "operator_restarts",
    "backoff_remaining", "mailbox", "in_flight", "counts", "last_error", "uptime",
}  # fmt: skip
COUNT_KEYS = {"ok", "business", "system", "timeout", "unsupported"}


def test_status_keys_and_values(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        status = cell.status()
        assert set(status) >= STATUS_KEYS
        assert set(status["counts"]) >= COUNT_KEYS
        assert status["name"] == "w"
        assert status["state"] == "running"
        assert status["policy"] == "on_failure"
        assert status["restarts"] == 0
        assert status["max_restarts"] == 3
        assert status["operator_restarts"] == 0
        assert status["backoff_remaining"] is None
        assert status["mailbox"] == 0
        assert status["in_flight"] == 0
        assert status["last_error"] is None
        assert isinstance(status["uptime"], float)
        json.dumps(status)  # the status is plain JSON

        await failure(send(cell, "crash"))
        during = cell.status()
        assert during["state"] == "backoff"
        assert during["backoff_remaining"] is not None
        assert 0 <= during["backoff_remaining"] <= 0.2
        assert during["restarts"] == 1
        assert during["uptime"] is None

        await wait_for_state(cell, ActorState.RUNNING)
        after = cell.status()
        assert after["backoff_remaining"] is None
        assert after["restarts"] == 1
        # the last failure stays visible after the actor recovered
        assert after["last_error"]["category"] == "system"
        assert after["last_error"]["type"] == "ZeroDivisionError"
        assert "at" in after["last_error"]
        json.dumps(after)

    run_cell(actor_config(tmp_path, max_restarts=3, min_backoff=0.2, max_backoff=0.2), scenario)


def test_status_counts_mailbox_and_in_flight(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        current = send(cell, "slow", 0.2)
        await wait_until(lambda: cell.in_flight == 1)
        queued = [send(cell, "echo", i) for i in range(3)]
        status = cell.status()
        assert status["in_flight"] == 1
        assert status["mailbox"] == 3
        await answer(current)
        for envelope in queued:
            await answer(envelope)
        assert cell.status()["counts"]["ok"] == 4

    run_cell(actor_config(tmp_path), scenario)


# ----------------------------------------------------------------- run() loops
def _run_until(config: ActorConfig, *states: ActorState) -> tuple[ActorCell, ActorState]:
    """Run until the cell reaches one of ``states``; returns it and the state it reached."""

    async def main() -> tuple[ActorCell, ActorState]:
        cell = new_cell(config)
        cell.start()
        try:
            await wait_for_state(cell, ActorState.RUNNING)
            await wait_for_state(cell, *states)
            await asyncio.sleep(0.05)  # nothing else happens after the final state
            return cell, cell.state
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    return run_virtual(asyncio.wait_for(main(), 8.0))


def test_run_exit_under_on_failure_stops(tmp_path: Path) -> None:
    config = actor_config(tmp_path, cls="cell_actors:Returns", restart_policy="on_failure")
    cell, state = _run_until(config, ActorState.STOPPED)
    assert state is ActorState.STOPPED
    assert cell.total_restarts == 0
    assert cell.last_failure is None


def test_run_exit_under_always_restarts(tmp_path: Path) -> None:
    config = actor_config(
        tmp_path, cls="cell_actors:Returns", restart_policy="always", max_restarts=2
    )
    cell, _ = _run_until(config, ActorState.FAILED, ActorState.STOPPED)
    assert cell.total_restarts == 2
    assert cell.last_failure is None  # normal exits are not failures


def test_always_past_max_restarts_is_failed(tmp_path: Path) -> None:
    config = actor_config(
        tmp_path, cls="cell_actors:Returns", restart_policy="always", max_restarts=2
    )
    _, state = _run_until(config, ActorState.FAILED, ActorState.STOPPED)
    assert state is ActorState.FAILED


def test_run_crash_is_a_failure(tmp_path: Path) -> None:
    config = actor_config(tmp_path, cls="cell_actors:RunCrashes", max_restarts=1)
    cell, state = _run_until(config, ActorState.FAILED)
    assert state is ActorState.FAILED
    assert cell.total_restarts == 1
    assert cell.last_failure is not None
    assert cell.last_failure["where"] == "run"
    assert cell.last_failure["type"] == "KeyError"
    assert cell.last_error is not None
    assert cell.last_error["type"] == "KeyError"


# ------------------------------------------------------------------ sync batches
# Sync asks queued behind each other run in one trip to the op thread
# (batching.run_batch): order, deadlines of members still waiting in the batch,
# and a failure mid-batch.
def submit_all(cell: ActorCell, calls: list[tuple[str, dict, float]]) -> list:
    envelopes = [new_envelope(op, [], kwargs, timeout) for op, kwargs, timeout in calls]
    for envelope in envelopes:
        cell.submit(envelope)  # all queued before the cell's task runs: one batch
    return envelopes


def test_batch_answers_in_mailbox_order(tmp_path: Path) -> None:
    config = actor_config(tmp_path, "cell_actors:SyncWorker")
    ran().clear()

    async def scenario(cell: ActorCell) -> list:
        envelopes = submit_all(cell, [("mark", {"token": f"t{i}"}, 5.0) for i in range(20)])
        return await asyncio.wait_for(asyncio.gather(*(e.future for e in envelopes)), BOUND)

    assert run_cell(config, scenario) == [f"t{i}" for i in range(20)]
    assert ran() == [f"t{i}" for i in range(20)]


def test_member_expires_at_its_deadline_and_never_runs(tmp_path: Path) -> None:
    config = actor_config(tmp_path, "cell_actors:SyncWorker")
    ran().clear()

    async def scenario(cell: ActorCell) -> tuple[float, bool, object, str]:
        held = gate("blocker")
        blocker, short, after = submit_all(
            cell,
            [
                ("block", {"name": "blocker", "token": "blocker"}, 5.0),
                ("mark", {"token": "short"}, 0.15),
                ("mark", {"token": "after"}, 5.0),
            ],
        )
        started = now()
        with pytest.raises(PulsingTimeoutError) as caught:
            await asyncio.wait_for(short.future, BOUND)
        answered_after = now() - started
        blocker_running = held.waiting == 1 and not blocker.future.done()
        held.open()
        assert await asyncio.wait_for(after.future, BOUND) == "after"
        await asyncio.wait_for(blocker.future, BOUND)
        return answered_after, blocker_running, caught.value.extra.get("executed"), cell.queued

    answered_after, blocker_running, executed, queued = run_cell(config, scenario)
    assert answered_after == pytest.approx(0.15)  # at its own deadline,
    assert blocker_running  # not when the blocker finished
    assert executed is False
    assert queued == 0
    assert ran() == ["blocker", "after"]


def test_failure_mid_batch_requeues_the_rest(tmp_path: Path) -> None:
    config = actor_config(tmp_path, "cell_actors:SyncWorker")
    ran().clear()

    async def scenario(cell: ActorCell) -> list:
        first, crash, rest = submit_all(
            cell,
            [
                ("mark", {"token": "first"}, 5.0),
                ("boom", {"token": "crash"}, 5.0),
                ("mark", {"token": "rest"}, 5.0),
            ],
        )
        assert await asyncio.wait_for(first.future, BOUND) == "first"
        with pytest.raises(PulsingSystemError) as caught:
            await asyncio.wait_for(crash.future, BOUND)
        assert caught.value.recoverable is True  # a restart is scheduled
        assert await asyncio.wait_for(rest.future, BOUND) == "rest"
        return [cell.tracker.count, cell.queued]

    restarts, queued = run_cell(config, scenario)
    assert restarts == 1
    assert queued == 0
    assert ran() == ["first", "crash", "rest"]  # "rest" ran once, on the new instance


def test_stop_during_a_batch_drains_the_members_not_started(tmp_path: Path) -> None:
    config = actor_config(tmp_path, "cell_actors:SyncWorker")
    ran().clear()

    async def scenario(cell: ActorCell) -> list:
        held = gate("first")
        envelopes = submit_all(
            cell,
            [("block", {"name": "first", "token": "first"}, 5.0)]
            + [("mark", {"token": f"q{i}"}, 5.0) for i in range(5)],
        )
        await wait_until(lambda: held.waiting == 1)  # the batch is running its first op
        asyncio.get_running_loop().call_later(0.1, held.open)  # it ends while stop waits
        await asyncio.wait_for(cell.stop(), BOUND)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(e.future for e in envelopes), return_exceptions=True), BOUND
        )
        return [type(o).__name__ if isinstance(o, BaseException) else o for o in outcomes]

    outcomes = run_cell(config, scenario)
    assert outcomes[0] == "first"
    assert outcomes[1:] == ["PulsingRuntimeError"] * 5
    assert ran() == ["first"]


def test_an_op_that_cannot_start_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    config = actor_config(tmp_path, "cell_actors:Broken")

    async def scenario(cell: ActorCell) -> tuple[bool, str, str]:
        broken = new_envelope("ping", [], {}, 5.0)
        cell.submit(broken)
        with pytest.raises(PulsingSystemError) as caught:
            await asyncio.wait_for(broken.future, BOUND)
        fine = new_envelope("ok", [], {}, 5.0)
        cell.submit(fine)  # queued behind the restart, served by the new instance
        return caught.value.recoverable, await asyncio.wait_for(fine.future, BOUND), cell.state

    recoverable, result, state = run_cell(config, scenario)
    assert recoverable is True
    assert result == "ok"
    assert state == ActorState.RUNNING
