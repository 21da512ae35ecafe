"""Sync asks in batches: the asks queued behind a sync ask go to the op thread with it.

For a host that ``runs_sync_batches`` (the inline host), a sync ask and the sync asks
right behind it in the mailbox run back to back in one trip to the op thread pool
(``ActorHost.run_batch``; the thread side is ``hosts.threads.run_sync_batch``).
Mailbox order, one op at a time and every deadline hold as for single asks: members
are awaited in order, each answered as its op ends or its deadline passes; members
not started yet still count as queued and stay in the cell's deadline watch, and a
stop request or a failure puts them back in the mailbox, unstarted.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from pulsing_daemon.envelope import (
    Ended,
    Envelope,
    EnvelopeState,
    classify,
    not_run_at_shutdown,
    shut_down_while_running,
)
from pulsing_daemon.eventloop import thread_clock
from pulsing_daemon.exceptions import PulsingRuntimeError
from pulsing_daemon.handover import hand_over
from pulsing_daemon.hosts.base import ActorHost
from pulsing_daemon.hosts.threads import HEAVY_FOR, SYNC_BATCH, SyncCall, SyncCallState
from pulsing_daemon.running import NOT_STARTED, answer_late, due, execute, start_op

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell


async def run_batch(cell: ActorCell, host: ActorHost, first: Envelope) -> Ended | None:
    """Run the ask ``first`` -- with the sync asks queued right behind it when it is a
    sync one -- and answer each (or return the end of a failed instance)."""
    loop = asyncio.get_running_loop()
    prepared, ended = start_op(
        cell, first, lambda: host.prepare(first.op, first.args, first.kwargs)
    )
    if prepared is not NOT_STARTED and prepared.is_async:
        # Resolved and bound once: start it from here, its mailbox deadline still watched.
        return await execute(cell, host, first, prepared.start)
    if first.watch is not None:  # popped with its deadline kept for an async op
        first.watch.drop(first)
    if prepared is NOT_STARTED:
        return ended
    if not due(cell, first):
        return None
    if first.handover is not None and not first.handed and not await hand_over(cell, first):
        return None
    lock = threading.Lock()
    members = [(first, prepared)]
    mailbox = cell.mailbox
    while len(members) < SYNC_BATCH and mailbox:
        nxt = mailbox[0]
        if nxt.state is not EnvelopeState.QUEUED:
            mailbox.popleft()
            continue
        if nxt.sink is not None or (nxt.handover is not None and not nxt.handed):
            break  # a keyed ask not handed over yet starts the next batch
        try:
            call = host.prepare(nxt.op, nxt.args, nxt.kwargs)
        except Exception:
            break  # answered when it is reached, in order
        if call.is_async:
            break
        mailbox.popleft()
        nxt.state = EnvelopeState.BATCHED  # still queued: counted, deadline watched
        members.append((nxt, call))
    clock = thread_clock(loop)  # read on the op thread
    for envelope, bound in members:
        envelope.call = SyncCall(
            bound.method,
            bound.args,
            bound.kwargs,
            envelope.deadline,
            loop.create_future(),
            lock,
            clock,
        )
    first.state = EnvelopeState.RUNNING
    batch = SyncBatch(cell, [envelope for envelope, _ in members])
    return await batch.run(host)


def hold_waiting(envelopes: list[Envelope]) -> None:
    """A stop request: the batch members not started yet never will be.

    Last first, so the op thread (which goes in order) can never skip a held member
    and start a later one.
    """
    for envelope in reversed(envelopes[1:]):
        if envelope.call is not None:
            envelope.call.hold()


class SyncBatch:
    """One trip of sync asks to the op thread, as the cell's task waits for it."""

    __slots__ = ("cell", "envelopes", "waiter")

    def __init__(self, cell: ActorCell, envelopes: list[Envelope]) -> None:
        self.cell = cell
        self.envelopes = envelopes
        # The future of the member being waited for; resolved by progress().
        self.waiter: asyncio.Future[None] | None = None

    async def run(self, host: ActorHost) -> Ended | None:
        cell = self.cell
        envelopes = self.envelopes
        first = envelopes[0]
        heavy = asyncio.get_running_loop().time() < cell.heavy_until  # see HEAVY_OP
        job = host.run_batch(
            [envelope.call for envelope in envelopes],  # type: ignore[misc]
            self.progress,
            None if heavy else self.ran_heavy_op,
        )
        cell.in_flight += 1
        cell.batch = envelopes
        try:
            for index, envelope in enumerate(envelopes):
                if index and cell.stop_requested:
                    # Stop after the current message, as unbatched: members not started
                    # go back (and are drained); ones already started are still answered.
                    self.requeue(envelopes[index:])
                if envelope.state is EnvelopeState.QUEUED:
                    continue
                call = envelope.call
                assert call is not None
                ended = await self.await_member(envelope, job, index == 0)
                if ended is not None:
                    await asyncio.wait((job,))
                    self.requeue(envelopes[index + 1 :])
                    return ended
                if call.state is SyncCallState.HELD:  # taken back by a stop request
                    self.requeue(envelopes[index:])
                    continue
                if call.state is SyncCallState.WAITING:  # the op thread never got to it
                    if index == 0:
                        cell.answer(
                            envelope,
                            error=PulsingRuntimeError(
                                f"{envelope.op} could not be started on the op thread",
                                recoverable=True,
                                status=503,
                            ),
                        )
                        index += 1
                    self.requeue(envelopes[index:])
                    return None
            return None
        except asyncio.CancelledError:  # daemon shutdown past the grace period
            for envelope in envelopes:
                call = envelope.call
                if call is not None and not call.hold():  # it started: outcome unknown
                    self.mark_started(envelope, envelope is first)
                    cell.answer(envelope, error=shut_down_while_running(envelope))
                elif envelope.state is EnvelopeState.RUNNING:  # popped, never started
                    cell.answer(envelope, error=not_run_at_shutdown(envelope))
            self.requeue(envelopes)
            raise
        finally:
            cell.batch = []
            cell.in_flight -= 1
            for envelope in envelopes:
                envelope.call = None

    async def await_member(
        self, envelope: Envelope, job: asyncio.Future[int], is_first: bool
    ) -> Ended | None:
        """Wait for one member of a batch: its answer, its failure, or its deadline."""
        cell = self.cell
        call = envelope.call
        assert call is not None
        loop = asyncio.get_running_loop()
        while not call.future.done():  # under load it often is, on arrival here
            if call.state is SyncCallState.HELD:
                return None  # a stop request took it back; the caller requeues it
            if call.state is SyncCallState.EXPIRED:
                if not is_first and envelope.state is EnvelopeState.BATCHED:
                    cell.expire(envelope)  # answered as never executed
                elif not envelope.future.done():
                    cell.answer(envelope, error=cell.expired_error(envelope))
                return None
            if job.done() and call.state is SyncCallState.WAITING:
                return None  # the batch stopped before it: requeued by the caller
            # Woken by the batch's progress (a result, its end) or this ask's deadline:
            # one future awaited directly, so an answer takes one loop iteration.
            waiter = self.waiter = loop.create_future()
            timer = loop.call_at(envelope.deadline, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self.waiter = None
            if call.future.done() or job.done() or loop.time() < envelope.deadline:
                continue  # answered, the job ended (expired or never reached), or not yet
            if call.state is SyncCallState.STARTED:  # past its deadline on the thread
                return await self.answer_late(envelope, is_first)
            if call.expire() and envelope.state is EnvelopeState.BATCHED:
                cell.expire(envelope)
                return None
        if call.ended_late:
            # Its result came first, though it ended past its deadline (the loop was
            # held up past both): answered as it would have been had the loop been on time.
            return await self.answer_late(envelope, is_first)
        self.mark_started(envelope, is_first)
        value, error, failure = classify(call.future)
        if failure is not None:
            return Ended.of_failure(failure, envelope)
        cell.answer(envelope, value, error)
        return None

    async def answer_late(self, envelope: Envelope, is_first: bool) -> Ended | None:
        """A member past its deadline on the thread (``running.answer_late``)."""
        assert envelope.call is not None
        self.mark_started(envelope, is_first)
        return await answer_late(self.cell, envelope, envelope.call.future)

    def ran_heavy_op(self) -> None:
        """A sync op burnt CPU: this actor's batches run on any CPU for a while."""
        self.cell.heavy_until = asyncio.get_running_loop().time() + HEAVY_FOR

    def progress(self) -> None:
        """A batched op ended (or the batch did): wake the member being waited for."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def mark_started(self, envelope: Envelope, is_first: bool) -> None:
        """A batched op has run: it leaves the mailbox count and the deadline watch."""
        if not is_first and envelope.state is EnvelopeState.BATCHED:
            self.cell.queued -= 1
            if envelope.watch is not None:
                envelope.watch.drop(envelope)
        envelope.state = EnvelopeState.RUNNING
        envelope.executed = True

    def requeue(self, envelopes: list[Envelope]) -> None:
        """Batch members that never started go back to the mailbox front, in order.

        Their calls are expired first, so the op thread can never start them later.
        """
        back = []
        for envelope in reversed(envelopes):  # last first: see hold_waiting()
            if envelope.state is not EnvelopeState.BATCHED:
                continue
            if envelope.call is not None and not envelope.call.hold():
                continue  # it started after all; its outcome is on its way
            envelope.state = EnvelopeState.QUEUED
            envelope.call = None
            back.append(envelope)
        back.reverse()
        self.cell.mailbox.extendleft(reversed(back))
        if back:
            self.cell.wake()


def _wake(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)
