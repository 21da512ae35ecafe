"""pulsing_daemon.deadline on a fake clock, and the cell's deadlines on a virtual-time loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rooms import config_with
from test_cell import actor_config
from virtual_time import run_virtual

from pulsing_daemon.cell import ActorCell
from pulsing_daemon.deadline import Deadline, DeadlineWatch, loop_clock
from pulsing_daemon.envelope import Envelope, new_envelope
from pulsing_daemon.exceptions import PulsingError, PulsingTimeoutError
from pulsing_daemon.hosts.registry import make_host
from pulsing_daemon.states import ActorState

REAL_BOUND = 2.0  # real seconds any virtual-time test may take
CHILD_BOUND = 20.0  # real seconds a child process may take to start


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_counts_down_on_its_clock() -> None:
    clock = FakeClock()
    deadline = Deadline.after(2.0, clock)
    assert deadline.at == 102.0
    assert deadline.remaining() == 2.0 and not deadline.expired()
    clock.now = 101.5
    assert deadline.remaining() == 0.5 and not deadline.expired()
    clock.now = 102.0
    assert deadline.remaining() == 0.0 and deadline.expired()
    clock.now = 500.0
    assert deadline.remaining() == 0.0  # never negative
    assert Deadline(102.0, clock).expired()


def test_the_default_clock_is_the_running_loops() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert loop_clock() == loop.time
        deadline = Deadline.after(5.0)
        assert deadline.clock == loop.time
        assert 4.0 < deadline.remaining() <= 5.0

    asyncio.run(main())


def test_without_a_loop_a_clock_must_be_given() -> None:
    with pytest.raises(RuntimeError):
        Deadline(1.0)


def test_on_a_virtual_loop_deadlines_and_timers_agree_without_sleeping() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = Deadline.after(3600.0)
        fired: list[bool] = []
        loop.call_at(deadline.at, lambda: fired.append(deadline.expired()))
        await asyncio.sleep(1800.0)
        assert deadline.remaining() == pytest.approx(1800.0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), deadline.remaining())
        assert deadline.expired()
        await asyncio.sleep(0)
        assert fired == [True]

    started = time.monotonic()
    run_virtual(main())
    assert time.monotonic() - started < REAL_BOUND


def test_a_deadline_watch_expires_each_message_at_its_deadline_on_one_timer() -> None:
    """In deadline order (ties in the order added); dropped ones never; one loop timer
    for any number of messages with later deadlines."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers: list[float] = []
        call_at = loop.call_at

        def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if args and getattr(args[0], "__self__", None) is watch:
                timers.append(when)
            return call_at(when, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        expired: list[tuple[str, float]] = []
        watch = DeadlineWatch(lambda envelope: expired.append((envelope.op, loop.time())))
        envelopes = {
            name: new_envelope(name, [], {}, timeout)
            for name, timeout in (("a", 5.0), ("b", 5.0), ("c", 7.0), ("gone", 6.0), ("d", 9.0))
        }
        for envelope in envelopes.values():
            watch.add(envelope)
            assert envelope.watch is watch
        assert timers == [5.0]  # armed once, at the earliest deadline
        watch.drop(envelopes["gone"])
        assert envelopes["gone"].watch is None and len(watch) == 4
        await asyncio.sleep(10.0)
        assert expired == [("a", 5.0), ("b", 5.0), ("c", 7.0), ("d", 9.0)]
        assert all(envelope.watch is None for envelope in envelopes.values())
        assert timers == [5.0, 7.0, 9.0] and len(watch) == 0

    run_virtual(main())


def test_a_deadline_watch_rearms_for_an_earlier_deadline_and_after_firing_for_nothing() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        expired: list[tuple[str, float]] = []
        watch = DeadlineWatch(lambda envelope: expired.append((envelope.op, loop.time())))
        late = new_envelope("late", [], {}, 30.0)
        early = new_envelope("early", [], {}, 10.0)
        answered = new_envelope("answered", [], {}, 5.0)
        for envelope in (late, early, answered):
            watch.add(envelope)
        watch.drop(answered)  # the timer armed for it fires for nothing, then re-arms
        await asyncio.sleep(40.0)
        assert expired == [("early", 10.0), ("late", 30.0)]

        # An expire that queues another message (a take-back) has it watched too.
        again = new_envelope("again", [], {}, 5.0)

        def expire(envelope: Envelope) -> None:
            expired.append((envelope.op, loop.time()))
            if envelope is first:
                watch.add(again)

        watch = DeadlineWatch(expire)
        first = new_envelope("first", [], {}, 1.0)
        watch.add(first)
        await asyncio.sleep(10.0)
        assert expired[2:] == [("first", 41.0), ("again", 45.0)]

    run_virtual(main())


def test_a_cell_times_out_an_hour_long_op_on_the_virtual_clock(tmp_path: Path) -> None:
    """The mailbox expiry and the running op's deadline are both on the loop's clock."""
    config = config_with(tmp_path, {"w": "cell_actors:Worker"}).actors["w"]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cell = ActorCell(config, make_host, default_timeout=5.0)
        cell.start()
        # The constructor runs on an op thread: run_virtual holds the clock meanwhile.
        await cell.wait_started(2.0)
        assert cell.state is ActorState.RUNNING and loop.time() == 0.0
        running = new_envelope("slow", [3600.0], {}, 30.0)
        queued = new_envelope("slow", [3600.0], {}, 10.0)
        cell.submit(running)
        cell.submit(queued)
        started = loop.time()
        for envelope, after in ((queued, 10.0), (running, 30.0)):
            with pytest.raises(PulsingTimeoutError):
                await envelope.future
            assert loop.time() - started == pytest.approx(after)
        assert queued.executed is False and running.interrupted is True
        await cell.stop()

    started = time.monotonic()
    run_virtual(main())
    assert time.monotonic() - started < REAL_BOUND


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_a_sync_op_ending_past_its_deadline_is_a_timeout_though_the_loop_saw_its_result_first(
    tmp_path: Path, isolation: str
) -> None:
    """The loop held up past both the deadline and the op's end (a long fsync, say):
    the result comes before the deadline in the loop's turn, and the caller still gets
    the timeout its deadline promised; the op counts as executed. Inline, the op thread
    says when the op ended; a child process says it in its answer."""
    config = actor_config(tmp_path, isolation=isolation)

    async def main() -> None:
        cell = ActorCell(config, make_host, default_timeout=5.0)
        cell.start()
        await cell.wait_started(CHILD_BOUND)
        envelope = new_envelope("nap", [0.2], {}, 0.1)
        cell.submit(envelope)
        await _until(lambda: cell.in_flight == 1)  # on its thread, or sent to the child
        time.sleep(0.4)  # the loop held up
        with pytest.raises(PulsingTimeoutError):
            await asyncio.wait_for(envelope.future, REAL_BOUND)
        assert envelope.executed
        ok = new_envelope("nap", [0.0], {}, 1.0)  # the actor still serves
        cell.submit(ok)
        assert await asyncio.wait_for(ok.future, REAL_BOUND) == 0.0
        await cell.stop()

    asyncio.run(main())


async def _until(predicate: Callable[[], bool]) -> None:
    """Wait without a timer (so virtual time stands still), bounded in real time."""
    give_up = time.monotonic() + REAL_BOUND
    while not predicate() and time.monotonic() < give_up:
        await asyncio.sleep(0)
    assert predicate()


def test_backoff_and_status_run_on_the_loops_clock(tmp_path: Path) -> None:
    """The cell's clock is the loop's: backoff, its remaining time in status and the
    restart tracker all follow a virtual loop."""
    config = config_with(tmp_path, {"w": "cell_actors:Worker"}).actors["w"]

    async def main() -> None:
        cell = ActorCell(config, make_host, default_timeout=5.0)
        assert cell.clock == asyncio.get_running_loop().time
        assert cell.tracker.clock == cell.clock
        cell.start()
        await _until(lambda: cell.state is ActorState.RUNNING)
        cell.submit(new_envelope("crash", [], {}, 5.0))
        await _until(lambda: cell.state is ActorState.BACKOFF)
        first = cell.status()["backoff_remaining"]
        assert first > 0
        await asyncio.sleep(first / 2)  # fires before the backoff timer: time jumps to it
        assert cell.status()["backoff_remaining"] == pytest.approx(first / 2, abs=0.002)
        await asyncio.sleep(first)  # past the backoff: time jumps to its timer, then here
        await _until(lambda: cell.state is ActorState.RUNNING)
        assert cell.status()["restarts"] == 1
        await cell.stop()

    started = time.monotonic()
    run_virtual(main())
    assert time.monotonic() - started < REAL_BOUND


def test_an_op_awaited_in_place_meets_its_deadline_whatever_it_does_with_the_cancel(
    tmp_path: Path,
) -> None:
    """The mailbox timer cancels an op awaited in the cell's task at its deadline: the
    caller gets the timeout; an op that swallows the cancel answers with its value, one
    that turns it into its own error answers with that; the cell task's cancel count
    is restored (a later op's own timeout still works) and the actor goes on."""
    config = config_with(tmp_path, {"w": "deadline_actors:Stubborn"}).actors["w"]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cell = ActorCell(config, make_host, default_timeout=5.0)
        cell.start()
        await _until(lambda: cell.state is ActorState.RUNNING)
        cases = [
            ("swallow", 2.0, "kept going"),
            ("convert", 2.0, "cleaned up and gave up"),
            ("timer", 2.0, "own timeout"),  # 1 s timeout inside a 2 s deadline
        ]
        for op, timeout, expected in cases:
            envelope = new_envelope(op, [3600.0 if op != "timer" else 1.0], {}, timeout)
            started = loop.time()
            cell.submit(envelope)
            try:
                outcome = await envelope.future
            except PulsingError as error:
                outcome = error.message
            assert expected in outcome, (op, outcome)
            spent = loop.time() - started
            assert spent == pytest.approx(1.0 if op == "timer" else timeout), op
            assert envelope.interrupted is False
        task = cell._task
        assert task is not None and task.cancelling() == 0
        slow = new_envelope("swallow", [0.5], {}, 2.0)
        cell.submit(slow)
        assert await slow.future == "slept"  # no stale cancel hits a later op
        assert await asyncio.wait_for(_echo(cell, 7), 5.0) == 7
        assert cell.status()["restarts"] == 0
        await cell.stop()

    started = time.monotonic()
    run_virtual(main())
    assert time.monotonic() - started < REAL_BOUND


async def _echo(cell: ActorCell, value: int) -> object:
    envelope = new_envelope("echo", [value], {}, 1.0)
    cell.submit(envelope)
    return await envelope.future


def test_stopping_the_cell_while_an_op_is_past_its_deadline_still_stops_it(
    tmp_path: Path,
) -> None:
    """A shutdown cancel that meets the deadline's cancel is not swallowed by it."""
    config = config_with(tmp_path, {"w": "deadline_actors:Stubborn"}).actors["w"]

    async def main() -> None:
        cell = ActorCell(config, make_host, default_timeout=5.0)
        cell.start()
        await _until(lambda: cell.state is ActorState.RUNNING)
        envelope = new_envelope("sleep", [3600.0], {}, 1.0)
        cell.submit(envelope)
        await asyncio.sleep(0.5)
        assert envelope.runner is not None
        loop = asyncio.get_running_loop()
        loop.call_at(envelope.deadline, lambda: cell._task.cancel())  # same instant
        with pytest.raises(PulsingError) as caught:
            await envelope.future
        assert "shut" in caught.value.message or "stop" in caught.value.message
        await _until(lambda: cell._task is None or cell._task.done())

    started = time.monotonic()
    run_virtual(main())
    assert time.monotonic() - started < REAL_BOUND
