"""The durable "handed over" record of a keyed ask: written before its op may start.

At most once across a SIGKILL of the daemon needs a record, committed before the op's
first line, that says "this ask may have run". A keyed ask that never got that far is
free: after a crash its key has no record, and a retry runs it once. So the record is
written at the moment the op is handed to its instance -- after the mailbox, the
argument check and the deadline check -- not when the ask arrives.

Writing it must not cost a commit per ask, nor a trip through the event loop per op
(a busy actor runs trivial ops back to back). So when an actor takes a keyed ask from
its mailbox it hands over, in the same group commit, the keyed asks queued right
behind it (up to ``AHEAD``): they start without waiting. An ask handed over ahead but
not started within ``AHEAD_FOR`` seconds (the op in front of it is slow) is taken back
(:func:`revoke_waiting`): its record is deleted and it is handed over again when its
turn comes. A crash can thus leave "outcome unknown" on an ask that never ran only in
the first ``AHEAD_FOR`` seconds behind a slow op.

The record is a conditional insert: when the key already has a record (of an earlier
ask, finished or left "started" by a daemon that died), nothing is written, the op is
not started (:func:`decline`), and the idempotency store answers from that record. So
a keyed ask costs two statements (this one and its outcome), with no read of the store
when it arrives.

The cell knows nothing of keys: the idempotency store gives a keyed envelope a
:class:`Handover` (``envelope.handover``), and the cell calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pulsing_daemon.envelope import Envelope, EnvelopeState
from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError, PulsingSystemError
from pulsing_daemon.hosts.base import InstanceLost
from pulsing_daemon.hosts.threads import SyncCallState

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell

# Keyed asks queued behind the one being handed over that go in the same commit.
AHEAD = 64
# Seconds an ask handed over ahead may wait for its op to start before it is taken back.
AHEAD_FOR = 0.02


class Handover(Protocol):
    """What the cell calls for a keyed envelope (implemented by the idempotency store)."""

    key: str

    @property
    def taken(self) -> bool:
        """The last record() found the key taken."""

    def record(self, after: Callable[[Exception | None], None] | None = None) -> None:
        """Queue the durable "handed over" record, a conditional insert, in the group
        commit; ``after(error)`` is called once it has committed (None) or failed. It
        is not written when the key has a record already (an earlier ask's): then
        ``taken`` is true, and the op must not start."""

    def settle(self, envelope: Envelope, value: Any, error: PulsingError | None) -> bool:
        """The cell answers ``envelope`` (after counting it). True when the store takes
        the answer: it queues the outcome's record (or its deletion) in the group
        commit and resolves ``envelope.future`` once that has committed; False leaves
        the cell to resolve it now."""

    def revoke(self) -> None:
        """The op will not start now after all (it went back to the mailbox): delete
        the record, so a crash before its turn leaves the key free."""


async def hand_over(cell: ActorCell, envelope: Envelope) -> bool:
    """Make ``envelope``'s "handed over" record durable before its op may start.

    Also hands over the keyed asks queued right behind it, in the same commit. True
    when the op may start; False when the envelope was answered instead (the record
    could not be written). Callers skip the call for an ask handed over ahead (one
    coroutine less per ask: most keyed asks under load are), which has its record.
    """
    if envelope.handover is None or envelope.handed:
        return True
    loop = asyncio.get_running_loop()
    batch = [envelope]
    for queued in cell.mailbox:
        if len(batch) >= AHEAD:
            break
        if (
            queued.handover is not None
            and not queued.handed
            and queued.state is EnvelopeState.QUEUED  # not answered (expired) meanwhile
        ):
            batch.append(queued)
    committed: asyncio.Future[None] = loop.create_future()

    def settled(error: Exception | None) -> None:
        if committed.done():  # cancelled: the daemon is shutting down
            return
        if error is None:
            committed.set_result(None)
        else:
            committed.set_exception(error)

    # One group commit holds them all (queued together, before any flush): the last
    # one is settled when every one is.
    for member in batch[:-1]:
        member.handover.record()  # type: ignore[union-attr]
    batch[-1].handover.record(settled)  # type: ignore[union-attr]
    now = loop.time()
    for member in batch:
        member.handed = now
    if len(batch) > 1:
        loop.call_later(AHEAD_FOR, revoke_waiting, cell)
    failed: Exception | None = None
    try:
        await committed
    except asyncio.CancelledError:  # daemon shutdown past the grace period
        cell.answer(
            envelope,
            error=PulsingRuntimeError(
                f"daemon shutting down; {envelope.op} was not executed",
                recoverable=True,
                status=503,
            ),
        )
        raise
    except Exception as exc:  # the commit failed: none of them was written
        failed = exc
    if failed is None:
        for member in batch:
            if member.handover.taken:  # type: ignore[union-attr]
                member.handed = 0.0  # the key had a record (an earlier ask's)
        if not envelope.handed:
            decline(envelope)
            return False
        if envelope.deadline > loop.time():
            return True
        cell.answer(envelope, error=cell.expired_error(envelope))  # it will not start
        return False
    for member in batch:  # nothing was written: none of them was handed over
        member.handed = 0.0
    cell.answer(
        envelope,
        error=PulsingSystemError(
            f"could not record {envelope.op} as handed over: {failed}", recoverable=True
        ),
    )
    return False


def decline(envelope: Envelope) -> None:
    """Settle a keyed ask whose claim found the record of an earlier ask with its key:
    its op never starts, and the idempotency store answers from that record. Not an
    outcome of the actor's, so not counted in its status nor its metrics."""
    envelope.state = EnvelopeState.DONE
    if envelope.watch is not None:
        envelope.watch.drop(envelope)
    if not envelope.future.done():
        envelope.future.set_exception(
            PulsingSystemError(f"{envelope.op} was not started: its key is taken", recoverable=True)
        )
        envelope.future.exception()  # retrieved: the store answers from the record instead


def revoke_waiting(cell: ActorCell) -> None:
    """Take back asks handed over ahead that have not started: queued in the mailbox,
    or waiting in a batch of sync ops behind one that is still running."""
    # Only those handed over AHEAD_FOR ago or more (a later run has its own timer).
    before = asyncio.get_running_loop().time() - AHEAD_FOR * 0.9
    for queued in cell.mailbox:
        if 0.0 < queued.handed <= before and queued.state is EnvelopeState.QUEUED:
            queued.handed = 0.0
            queued.handover.revoke()  # type: ignore[union-attr]
    batch = cell.batch
    if not any(0.0 < m.handed <= before and m.state is EnvelopeState.BATCHED for m in batch):
        return
    # Batch members, last first: the op thread goes first to last, so every member
    # held here comes after every one that started, and mailbox order is kept (the
    # cell puts held members back in the mailbox when it gets to them).
    for member in reversed(batch):
        if member.state is not EnvelopeState.BATCHED or member.call is None:
            continue
        if not member.call.hold():
            break  # it started: so did (or were skipped) all before it
        if member.call.state is SyncCallState.HELD and member.handed:
            member.handed = 0.0
            member.handover.revoke()  # type: ignore[union-attr]


def lost_error(envelope: Envelope | None, cause: BaseException | None) -> PulsingSystemError | None:
    """The answer to a keyed ask whose instance was lost after its op was handed over
    (see ``hosts.base.InstanceLost``): its outcome is unknown, and it is never run again with
    its key. None for anything else (the usual failure error applies)."""
    if envelope is None or not envelope.handed or not isinstance(cause, InstanceLost):
        return None
    key = envelope.handover.key if envelope.handover is not None else "?"
    return PulsingSystemError(
        f"outcome unknown: the instance was lost ({cause}) while {envelope.op} with key "
        f"{key!r} may have been running; it will not be run again with this key",
        recoverable=False,
        key=key,
    )
