"""hosts/threads.py's sync batch machinery on its own: SyncCall, LoopPost, run_sync_batch.

Each test runs its own event loop with ``asyncio.run``; the op thread is the real
thread pool, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError
from pulsing_daemon.hosts.threads import (
    LoopPost,
    SyncCall,
    SyncCallState,
    loop_post,
    run_sync_batch,
)

BOUND = 3.0  # the longest any single wait in these tests may take


def _call(
    loop: asyncio.AbstractEventLoop,
    method: Callable[..., Any],
    *args: Any,
    deadline: float | None = None,
    lock: threading.Lock | None = None,
) -> SyncCall:
    return SyncCall(
        method,
        list(args),
        {},
        time.monotonic() + BOUND if deadline is None else deadline,
        loop.create_future(),
        lock or threading.Lock(),
    )


# ---------------------------------------------------------------------- SyncCall
def test_a_claimed_call_can_neither_expire_nor_be_held() -> None:
    async def main() -> None:
        call = _call(asyncio.get_running_loop(), int)
        assert call.claim() is True
        assert call.state is SyncCallState.STARTED
        assert call.expire() is False  # it runs: the caller gets its answer, not a timeout
        assert call.hold() is False
        assert call.claim() is False  # never twice
        assert call.state is SyncCallState.STARTED

    asyncio.run(main())


def test_an_expired_call_is_never_claimed() -> None:
    async def main() -> None:
        call = _call(asyncio.get_running_loop(), int)
        assert call.expire() is True
        assert call.expire() is True  # asking again gives the same answer
        assert call.claim() is False
        assert call.state is SyncCallState.EXPIRED

    asyncio.run(main())


def test_a_call_past_its_deadline_expires_when_the_thread_reaches_it() -> None:
    async def main() -> None:
        call = _call(asyncio.get_running_loop(), int, deadline=time.monotonic() - 0.001)
        assert call.claim() is False
        assert call.state is SyncCallState.EXPIRED
        assert call.expire() is True  # the loop's timer, arriving later, agrees

    asyncio.run(main())


def test_a_call_is_claimed_against_the_loops_clock() -> None:
    """The op thread reads the deadline on the clock it was set on (a fake one here)."""
    now = [100.0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        on_time = SyncCall(int, [], {}, 100.5, loop.create_future(), lock, lambda: now[0])
        late = SyncCall(int, [], {}, 100.5, loop.create_future(), lock, lambda: now[0])
        assert on_time.claim() is True
        now[0] = 100.5
        assert late.claim() is False and late.state is SyncCallState.EXPIRED

    asyncio.run(main())


def test_a_held_call_goes_back_unstarted() -> None:
    async def main() -> None:
        call = _call(asyncio.get_running_loop(), int)
        assert call.hold() is True
        assert call.state is SyncCallState.HELD
        assert call.claim() is False
        assert call.expire() is False  # held, not expired: the mailbox answers it

    asyncio.run(main())


def test_claim_and_expire_race_one_winner() -> None:
    """The thread's claim and the loop's expiry are exclusive, under many races."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(200):
            call = _call(loop, int)
            claimed: list[bool] = []
            thread = threading.Thread(target=lambda c=call, out=claimed: out.append(c.claim()))
            thread.start()
            expired = call.expire()
            thread.join(BOUND)
            assert claimed[0] != expired, (claimed, expired)

    asyncio.run(main())


# ---------------------------------------------------------------------- LoopPost
def test_posts_from_a_thread_run_in_order_in_one_wake_up() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        post = LoopPost(loop)
        wakes = 0
        real = loop.call_soon_threadsafe

        def counting(callback: Callable[..., Any], *args: Any) -> Any:
            nonlocal wakes
            wakes += callback == post._drain
            return real(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        seen: list[int] = []
        done = loop.create_future()
        posted = threading.Event()

        def burst() -> None:
            for i in range(100):
                post.post(seen.append, i)
            post.post(done.set_result, None)
            posted.set()

        thread = threading.Thread(target=burst)
        thread.start()
        assert posted.wait(BOUND)  # holds the loop: every post lands before a drain runs
        thread.join(BOUND)
        await asyncio.wait_for(done, BOUND)
        assert seen == list(range(100))
        assert wakes == 1

    asyncio.run(main())


def test_a_failing_post_does_not_strand_the_ones_behind_it() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        post = LoopPost(loop)
        done = loop.create_future()

        def boom() -> None:
            raise ValueError("bad call")

        post.post(boom)
        post.post(done.set_result, "after")
        assert await asyncio.wait_for(done, BOUND) == "after"
        assert len(reported) == 1
        assert isinstance(reported[0]["exception"], ValueError)

    asyncio.run(main())


def test_a_post_to_a_closed_loop_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    post = LoopPost(loop)
    loop.close()
    post.post(print, "never")  # no exception: nobody is waiting any more


def test_one_loop_post_per_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert loop_post(loop) is loop_post(loop)

    asyncio.run(main())


# ---------------------------------------------------------------------- run_sync_batch
def test_a_batch_answers_each_call_and_counts_them_all() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        calls = [_call(loop, lambda x: x * 2, n, lock=lock) for n in range(5)]
        progress = 0

        def on_progress() -> None:
            nonlocal progress
            progress += 1

        went_through = await asyncio.wait_for(run_sync_batch(calls, on_progress), BOUND)
        assert went_through == 5
        assert [call.future.result() for call in calls] == [0, 2, 4, 6, 8]
        assert progress == 6  # after each result, and at the end

    asyncio.run(main())


def test_a_batch_runs_its_calls_one_at_a_time_in_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        order: list[tuple[str, int]] = []

        def op(n: int) -> None:
            order.append(("start", n))
            order.append(("end", n))

        calls = [_call(loop, op, n) for n in range(4)]
        await asyncio.wait_for(run_sync_batch(calls), BOUND)
        assert order == [(edge, n) for n in range(4) for edge in ("start", "end")]

    asyncio.run(main())


def test_errors_that_answer_the_caller_do_not_stop_the_batch() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def refuse(n: int) -> int:
            if n == 1:
                raise PulsingBusinessError("no", "not this one")
            if n == 2:
                raise PulsingSystemError("try again", recoverable=True)
            return n

        calls = [_call(loop, refuse, n) for n in range(4)]
        assert await asyncio.wait_for(run_sync_batch(calls), BOUND) == 4
        assert calls[0].future.result() == 0
        with pytest.raises(PulsingBusinessError):
            calls[1].future.result()
        with pytest.raises(PulsingSystemError):
            calls[2].future.result()
        assert calls[3].future.result() == 3

    asyncio.run(main())


def test_a_failure_stops_the_batch_and_leaves_the_rest_unstarted() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ran: list[int] = []

        def crash(n: int) -> int:
            ran.append(n)
            if n == 1:
                raise RuntimeError("the instance is broken")
            return n

        calls = [_call(loop, crash, n) for n in range(4)]
        went_through = await asyncio.wait_for(run_sync_batch(calls), BOUND)
        assert went_through == 2  # calls[2:] go back to the mailbox
        assert ran == [0, 1]
        assert calls[0].future.result() == 0
        with pytest.raises(RuntimeError):
            calls[1].future.result()
        assert not calls[2].future.done() and not calls[3].future.done()
        assert calls[2].state is SyncCallState.WAITING

    asyncio.run(main())


def test_expired_and_held_calls_are_skipped() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ran: list[int] = []
        calls = [_call(loop, ran.append, n) for n in range(4)]
        assert calls[1].expire() and calls[2].hold()
        assert await asyncio.wait_for(run_sync_batch(calls), BOUND) == 4
        assert ran == [0, 3]
        assert not calls[1].future.done() and not calls[2].future.done()  # the cell answers them

    asyncio.run(main())


def test_a_result_is_posted_as_soon_as_its_op_ends() -> None:
    """An early member's answer does not wait for a slow member behind it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        calls = [_call(loop, lambda: "quick"), _call(loop, lambda: release.wait(BOUND))]
        done = run_sync_batch(calls)
        try:
            assert await asyncio.wait_for(calls[0].future, BOUND) == "quick"
            assert not done.done()
        finally:
            release.set()
        assert await asyncio.wait_for(done, BOUND) == 2

    asyncio.run(main())
