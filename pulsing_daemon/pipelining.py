"""Asks sent ahead to a host that runs them in order (``ActorHost.pipelines``).

A remote instance (the Ray host) costs a round trip per ask. Its cell sends the plain
asks queued right behind the one running, up to ``PIPELINE``, so the round trip is paid
once for all of them. What a single ask promises holds for each: mailbox order, one op
at a time (the host runs them in the order it got them), its own deadline (an ask whose
deadline passes before its turn is taken back unstarted and answered as never executed;
one whose op ended past its deadline, by the instance's clock, answers the deadline even
when its answer came first: ``ActorHost.ended_late``), and after a failure of the
instance the asks behind it go back to the mailbox for the next instance. A keyed ask or
a stream is never sent ahead: it waits for the window to empty, and then runs alone.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import TYPE_CHECKING, Any

from pulsing_daemon.envelope import (
    Ended,
    Envelope,
    EnvelopeState,
    classify,
    shut_down_while_running,
)
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingSystemError,
    PulsingUnsupportedError,
)
from pulsing_daemon.handover import hand_over, lost_error
from pulsing_daemon.hosts.base import ActorHost, NotStarted, call_deadline
from pulsing_daemon.running import NOT_STARTED, answer_late, due, past_deadline, start_op

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell

# Most asks sent ahead, and how long asks sent ahead may take to confirm that they
# were taken back unstarted.
PIPELINE = 32
TAKE_BACK_WAIT = 5.0

Window = collections.deque[tuple[Envelope, asyncio.Future[Any]]]


async def execute_pipelined(cell: ActorCell, host: ActorHost, first: Envelope) -> Ended | None:
    """Run ``first`` on ``host`` and the plain asks queued behind it, sent ahead."""
    loop = asyncio.get_running_loop()
    if not due(cell, first):
        return None
    if first.handover is not None and not first.handed and not await hand_over(cell, first):
        return None
    running, ended = start_op(
        cell, first, lambda: host.invoke(first.op, first.args, first.kwargs)
    )
    if running is NOT_STARTED:
        return ended
    window: Window = collections.deque()
    window.append((first, running))
    timers: list[asyncio.TimerHandle] = []
    cell.in_flight += 1
    try:
        while window:
            if not cell.stop_requested:
                _send_ahead(cell, host, window, timers)
            envelope, running = window[0]
            if not running.done():
                host.send_now()
                remaining = envelope.deadline - loop.time()
                await asyncio.wait((running,), timeout=max(0.0, remaining))
            if not running.done():  # the op outlived its deadline
                envelope.executed = True
                ended = await past_deadline(cell, host, envelope, running)
                window.popleft()
                cell.in_flight -= 1
                if ended is not None:
                    await _take_back(cell, host, window)
                    return ended
                continue
            window.popleft()
            cell.in_flight -= 1
            exc = None if running.cancelled() else running.exception()
            if isinstance(exc, NotStarted):
                if envelope.state is not EnvelopeState.DONE:
                    if exc.expired:
                        cell.answer(envelope, error=cell.expired_error(envelope))
                    else:  # a failure before it was seen first; it goes back
                        window.appendleft((envelope, running))
                        cell.in_flight += 1
                        await _take_back(cell, host, window)
                        return None
                continue
            envelope.executed = True
            if host.ended_late(running):  # its answer and its deadline came in one turn
                ended = await answer_late(cell, envelope, running)
                if ended is not None:
                    await _take_back(cell, host, window)
                    return ended
            else:
                value, error, failure = classify(running)
                if failure is not None:
                    await _take_back(cell, host, window)
                    return Ended.of_failure(failure, envelope)
                cell.answer(envelope, value, error)
            if cell.stop_requested and window:
                await _take_back(cell, host, window)  # stop after the current message
                return None
        return None
    except asyncio.CancelledError:  # daemon shutdown past the grace period
        for envelope, running in window:
            host.withdraw(running, expired=False)
            if not envelope.future.done():
                cell.answer(envelope, error=shut_down_while_running(envelope))
        raise
    finally:
        for timer in timers:
            timer.cancel()
        cell.in_flight -= len(window)


def _send_ahead(
    cell: ActorCell, host: ActorHost, window: Window, timers: list[asyncio.TimerHandle]
) -> None:
    """Send the plain asks right behind the window to the host, in mailbox order."""
    loop = asyncio.get_running_loop()
    mailbox = cell.mailbox
    while len(window) < PIPELINE and mailbox:
        nxt = mailbox[0]
        if nxt.state is not EnvelopeState.QUEUED:
            mailbox.popleft()
            continue
        if nxt.sink is not None or nxt.handover is not None:
            return  # a stream or a keyed ask runs alone, after the window
        if nxt.deadline <= loop.time():
            return  # the deadline watch answers it
        token = call_deadline.set(nxt.deadline)
        try:
            running = host.invoke(nxt.op, nxt.args, nxt.kwargs)
        except (PulsingBusinessError, PulsingUnsupportedError) as exc:
            cell.pop()
            cell.answer(nxt, error=exc)
            continue
        except Exception:
            return  # it fails the instance when it is reached, as the first ask
        finally:
            call_deadline.reset(token)
        cell.pop()  # nxt: out of the mailbox and the deadline watch
        nxt.state = EnvelopeState.RUNNING
        assert isinstance(running, asyncio.Future)
        running.add_done_callback(functools.partial(_settled_ahead, cell, nxt))
        timers.append(loop.call_at(nxt.deadline, host.withdraw, running, True))
        window.append((nxt, running))
        cell.in_flight += 1


def _settled_ahead(cell: ActorCell, envelope: Envelope, running: asyncio.Future[Any]) -> None:
    """An ask sent ahead expired before its turn: answer it now, not when the ops
    before it are done."""
    if running.cancelled() or envelope.state is EnvelopeState.DONE:
        return
    exc = running.exception()
    if isinstance(exc, NotStarted) and exc.expired:
        cell.answer(envelope, error=cell.expired_error(envelope))


async def _take_back(cell: ActorCell, host: ActorHost, window: Window) -> None:
    """Asks sent ahead that have not started go back to the mailbox front, in order.

    The host answers each (NotStarted) once taken back; one that did run after all
    is answered as usual."""
    for _, running in window:
        host.withdraw(running, expired=False)
    if window:
        await asyncio.wait([running for _, running in window], timeout=TAKE_BACK_WAIT)
    back = []
    while window:
        envelope, running = window.popleft()
        cell.in_flight -= 1
        if envelope.state is EnvelopeState.DONE:
            continue
        exc = None if not running.done() or running.cancelled() else running.exception()
        if isinstance(exc, NotStarted) and not exc.expired:
            envelope.state = EnvelopeState.QUEUED
            cell.watch_deadline(envelope)
            back.append(envelope)
        elif isinstance(exc, NotStarted):
            cell.answer(envelope, error=cell.expired_error(envelope))
        elif not running.done():  # no word from the host: it may have run
            envelope.executed = True
            cell.answer(
                envelope,
                error=PulsingSystemError(
                    f"{envelope.op} was sent to the instance, which did not answer",
                    recoverable=False,
                ),
            )
        else:
            envelope.executed = True
            if host.ended_late(running):
                # As in the run: the caller gets its deadline, ``on_late`` the real
                # outcome (a keyed ask's record). Being taken back, the actor is
                # stopping or failing already: a crash here is no new failure.
                await answer_late(cell, envelope, running)
                continue
            value, error, failure = classify(running)
            if failure is not None:
                error = lost_error(envelope, failure) or PulsingSystemError(
                    f"{envelope.op} crashed: {type(failure).__name__}: {failure}"
                )
            cell.answer(envelope, value, error)
    cell.mailbox.extendleft(reversed(back))
    cell.queued += len(back)
    if back:
        cell.wake()
