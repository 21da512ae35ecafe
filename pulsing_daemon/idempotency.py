"""At-most-once asks per ``(actor, Idempotency-Key)``, durable across daemon restarts.

Rules (also in pulsing.toml(5)):

- A keyed ask is recorded as *started* (committed) when its op is handed to its
  instance -- after the mailbox, the argument check and the deadline check -- and
  before the op's first line (``pulsing_daemon.handover``). Until then it is claimed
  in memory only: a daemon crash before the handover leaves the key free, and a
  retry runs the op once.
- Outcomes that will not change on retry are stored and replayed to repeats: success,
  business, unsupported, non-recoverable system errors, and a timeout of an op that
  was cancelled while running (it may have had effects, so it never runs again).
- Outcomes that mean "this did not run" or "retry me" are not stored and the record
  is dropped, so a retry runs the op: a timeout while queued, runtime errors before
  the op started (actor stopped, mailbox full, shutting down), recoverable system
  errors (raised by the op, or a crash with a restart scheduled).
- An op the daemon abandoned while it ran (shutdown past the grace period) keeps its
  *started* record: the outcome is unknown, as after a SIGKILL.
- A sync op still running after its caller timed out keeps its record; its real
  outcome is stored when it finishes, and a repeat meanwhile waits for it.
- A repeat finds the stored record of an earlier ask when its own claim at the
  handover finds the key taken (a conditional insert; the op is then not started), or,
  answered before the handover (expired in the mailbox, actor stopped, mailbox full),
  by reading the record then; either way the record answers it as below. So a repeat
  of a stored key waits its turn in the mailbox like any ask; the answer is the same.
- A concurrent repeat waits for the first and gets the same outcome.
- The same key with a different op or arguments is a business error (HTTP 422).
- A record still *started* when the daemon starts means the daemon died after the op
  was handed over: a repeat gets a non-recoverable system error saying the outcome is
  unknown. So does the ask itself when its instance is lost after the handover (a
  process-isolated actor's child dies: ``hosts.base.InstanceLost``); that answer is stored.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from pulsing_daemon.cell import ActorCell
from pulsing_daemon.deadline import Deadline
from pulsing_daemon.envelope import Envelope
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
    from_wire,
)
from pulsing_daemon.journal import FINISH_ASK, FINISH_ASK_AT, AskRecord, GroupCommit, Journal
from pulsing_daemon.wire import fingerprint, read_outcome, stored_outcome

MAX_KEY_LENGTH = 256

# (value, error) of a finished ask
Outcome = tuple[Any, PulsingError | None]


def is_final(error: PulsingError | None, executed: bool) -> bool:
    """Whether an outcome is stored (will not change on retry)."""
    if error is None:
        return True
    if isinstance(error, (PulsingBusinessError, PulsingUnsupportedError)):
        return True
    if isinstance(error, PulsingTimeoutError):
        return executed and error.extra.get("executed") is not False
    if isinstance(error, PulsingSystemError):
        return not error.recoverable
    return False  # runtime


class IdempotencyStore:
    def __init__(self, journal: Journal, retention: float) -> None:
        self.journal = journal
        self.retention = retention
        # keys being run here: their fingerprint, and the future of the outcome for
        # repeats, made when the first repeat comes (its value is an AskRecord when the
        # first was answered by the stored record of an earlier ask: each repeat then
        # gets that record's answer)
        self._running: dict[tuple[str, str], _Running] = {}
        # Outcomes are written in group commits: one transaction per loop iteration.
        self._commits = GroupCommit(journal)

    def prune(self) -> int:
        return self.journal.prune_asks(self.retention)

    async def ask(self, cell: ActorCell, envelope: Envelope, key: str) -> tuple[Any, bool]:
        """Run ``envelope`` at most once for ``key``. Returns (value, replayed); raises errors."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise PulsingBusinessError(
                "bad_idempotency_key", f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters"
            )
        slot = (cell.name, key)
        request_fingerprint = fingerprint(envelope.op, envelope.args, envelope.kwargs)
        running = self._running.get(slot)
        if running is not None:  # a concurrent repeat: wait for the first (within our deadline)
            if running.fingerprint != request_fingerprint:
                raise self._conflict(cell, key)
            shared = running.outcome
            if shared is None:
                shared = running.outcome = asyncio.get_running_loop().create_future()
            remaining = Deadline(envelope.deadline).remaining()
            try:
                outcome = await asyncio.wait_for(asyncio.shield(shared), remaining)
            except asyncio.TimeoutError:
                raise cell.stamp(
                    PulsingTimeoutError(
                        envelope.op,
                        round(envelope.timeout * 1000, 3),
                        message=(
                            f"{envelope.op} with key {key!r} is still running (an earlier ask); "
                            f"no outcome within {envelope.timeout:g}s"
                        ),
                    )
                ) from None
            if isinstance(outcome, AskRecord):  # the first was answered by a stored record
                return self._answer_from(cell, envelope, key, outcome, request_fingerprint)
            return _replay(outcome)
        # Not running here: claimed in memory, so repeats arriving from now on wait for
        # this one, which runs here; the cell records it as handed over. Whether the
        # store holds a record of an earlier ask with this key is found when the op is
        # handed over (pulsing_daemon.handover): the durable claim is a conditional
        # insert, which finds the earlier record instead of writing; the op then never
        # starts and the record answers. An ask that never gets that far looks the
        # record up when it is answered (below). Nothing is written until the handover:
        # a crash before it leaves the key free.
        self._running[slot] = _Running(request_fingerprint)
        handover = envelope.handover = _Handover(self, cell.name, key, request_fingerprint)
        try:
            cell.submit(envelope)
        except PulsingError as error:  # the actor cannot take it: it never ran, no record
            return self._settle_unheld(cell, envelope, key, request_fingerprint, error)

        def late(value: Any, error: PulsingError | None) -> None:
            # A sync op finished after its caller timed out: store what really happened.
            self._record_outcome(handover, (value, error), True, None, True)

        envelope.on_late = late
        try:
            value = await envelope.future
            outcome: Outcome = (value, None)
        except PulsingError as error:
            outcome = (None, error)
        if envelope.recording:  # stored or dropped when answered (_Handover.settle)
            if outcome[1] is not None:
                raise outcome[1]
            return outcome[0], False
        found = handover.found
        if found is not None:  # the key had a record: the op was not started
            self._release(slot, found)
            return self._answer_from(cell, envelope, key, found, request_fingerprint)
        if outcome[1] is not None and not handover.held:
            # Answered before it ever held the key (expired in the mailbox, actor
            # stopped, bad arguments): an earlier ask's record, if any, answers instead.
            return self._settle_unheld(cell, envelope, key, request_fingerprint, outcome[1])
        if not _left_running(envelope, outcome[1]):  # else ``late`` settles the record
            # Stored (committed) before the caller hears the outcome.
            written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._record_outcome(
                handover,
                outcome,
                envelope.executed,
                envelope.result_json,
                bool(envelope.handed),
                functools.partial(_resolve, written, None),
            ):
                await written
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0], False

    def _answer_from(
        self,
        cell: ActorCell,
        envelope: Envelope,
        key: str,
        record: AskRecord,
        request_fingerprint: str,
    ) -> tuple[Any, bool]:
        """The answer a stored record of an earlier ask gives a repeat of its key."""
        if record.fingerprint != request_fingerprint:
            raise self._conflict(cell, key)
        if record.done and record.outcome is not None:
            return _replay(read_outcome(record.outcome))
        # Handed over, but nobody here runs it: the daemon died while it may have run.
        raise cell.stamp(
            PulsingSystemError(
                f"outcome unknown: the daemon stopped while {envelope.op} with key {key!r} "
                "may have been running; it will not be run again with this key",
                recoverable=False,
                key=key,
            )
        )

    @staticmethod
    def _conflict(cell: ActorCell, key: str) -> PulsingError:
        return cell.stamp(
            PulsingBusinessError(
                "idempotency_conflict",
                f"idempotency key {key!r} was already used for a different request to {cell.name}",
                {"key": key},
            )
        )

    def _settle_unheld(
        self,
        cell: ActorCell,
        envelope: Envelope,
        key: str,
        request_fingerprint: str,
        error: PulsingError,
    ) -> tuple[Any, bool]:
        """An ask answered with ``error`` before it held the key (nothing of it was
        written): the stored record of an earlier ask with this key answers instead, as
        it would have had the op been handed over; else ``error`` does."""
        slot = (cell.name, key)
        record = self.journal.ask_record(cell.name, key)
        if record is not None:
            self._release(slot, record)
            return self._answer_from(cell, envelope, key, record, request_fingerprint)
        self._release(slot, (None, error))
        raise error

    def _release(self, slot: tuple[str, str], outcome: Outcome | AskRecord) -> None:
        running = self._running.pop(slot, None)
        if running is not None and running.outcome is not None and not running.outcome.done():
            running.outcome.set_result(outcome)

    def _record_outcome(
        self,
        handover: _Handover,
        outcome: Outcome,
        executed: bool,
        result_json: str | None,
        handed: bool,
        after: Callable[[Exception | None], None] | None = None,
    ) -> bool:
        """Store or drop the record of ``handover``'s ask; then, and only then, release
        waiting repeats and call ``after`` (with None once committed, or the write's
        error). False when nothing is written: repeats are released now and ``after`` is
        not called.

        The slot stays "running" until the write has committed, so a repeat never
        reads a record still marked started for an ask that has in fact finished.
        """
        value, error = outcome
        journal = self.journal
        actor, key, rowid = handover.actor, handover.key, handover.rowid
        slot = (actor, key)
        if not handed:  # nothing of it is in the store
            self._release(slot, outcome)
            return False
        row: tuple[Any, ...] | None = None  # rows of one statement go in one executemany
        if is_final(error, executed):
            text = stored_outcome(value, error, result_json)
            if rowid is None:  # not created by a claim of this ask: found by its key
                statement, row = FINISH_ASK, journal.finish_ask_row(actor, key, text)
            else:
                statement, row = FINISH_ASK_AT, journal.finish_ask_at_row(rowid, actor, key, text)
        elif executed and isinstance(error, PulsingRuntimeError):
            # The op started, then the daemon gave up on it (shutdown past the grace
            # period): its outcome is unknown. Keep the record "started" so a repeat
            # after the restart is told so, and the op never runs twice.
            self._release(slot, outcome)
            return False

        def settled(failed: Exception | None) -> None:
            self._release(slot, outcome)
            if after is not None:
                after(failed)

        if row is not None:
            self._commits.add_row(statement, row, settled)
        else:
            self._commits.add(lambda: journal.forget_ask(actor, key), settled)
        return True


class _Running:
    """A key being run here (see ``IdempotencyStore._running``)."""

    __slots__ = ("fingerprint", "outcome")

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.outcome: asyncio.Future[Outcome | AskRecord] | None = None


class _Handover:
    """The durable "handed over" record of one keyed ask (see pulsing_daemon.handover)."""

    __slots__ = ("actor", "fingerprint", "found", "held", "key", "rowid", "store")

    def __init__(self, store: IdempotencyStore, actor: str, key: str, fingerprint: str) -> None:
        self.store, self.actor, self.key, self.fingerprint = store, actor, key, fingerprint
        # A claim of this ask found the key free: no earlier ask's record to answer from
        # (true from then on, even if that claim is later taken back or rolled back).
        self.held = False
        # The record of an earlier ask that the last claim found the key taken by.
        self.found: AskRecord | None = None
        # The rowid of the record the last claim created (None: it created none).
        self.rowid: int | None = None

    @property
    def taken(self) -> bool:
        """The last claim found the key taken (by ``found``)."""
        return self.found is not None

    def settle(self, envelope: Envelope, value: Any, error: PulsingError | None) -> bool:
        # The cell answers: an op that ran, or was handed over and will not run now, has
        # its outcome stored (or its record dropped) before its caller hears it, from
        # here, with no turn of the caller's task in between. What this does not settle
        # (never held the key, found an earlier record, left running past its deadline)
        # ``IdempotencyStore.ask`` settles when the caller wakes, as it always could.
        if (
            not self.held
            or self.found is not None
            or not envelope.handed
            or _left_running(envelope, error)
        ):
            return False
        future = envelope.future

        def stored(failed: Exception | None) -> None:  # the write's error, else the op's
            _resolve(future, value, failed if failed is not None else error)

        if not self.store._record_outcome(
            self, (value, error), envelope.executed, envelope.result_json, True, stored
        ):
            return False
        envelope.recording = True
        return True

    def record(self, after: Callable[[Exception | None], None] | None = None) -> None:
        self.store._commits.add(self._claim, after)

    def _claim(self) -> None:
        # In the group commit's transaction: the insert, or the record it found (read in
        # the same transaction, so it is the one that made the insert a no-op).
        journal = self.store.journal
        self.rowid = journal.claim_ask_at(self.actor, self.key, self.fingerprint)
        if self.rowid is not None:
            self.held = True
            self.found = None
        else:
            self.found = journal.ask_record(self.actor, self.key)

    def revoke(self) -> None:
        # A failed delete leaves the record: "outcome unknown", the safe side. A record
        # the claim found (an earlier ask's) is never this ask's to delete: not when the
        # claim is known taken now (revoke_waiting may run before hand_over has read the
        # claims back, after a loop turn longer than AHEAD_FOR), nor when it turns out
        # taken by the time the delete runs.
        if not self.taken:
            self.store._commits.add(self._forget)

    def _forget(self) -> None:
        if not self.taken:
            self.store.journal.forget_ask(self.actor, self.key)


def _left_running(envelope: Envelope, error: PulsingError | None) -> bool:
    """A timeout of an op still running on its thread (a sync op past its deadline):
    its outcome is recorded when it ends (``Envelope.on_late``)."""
    return (
        isinstance(error, PulsingTimeoutError) and envelope.executed and not envelope.interrupted
    )


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """Resolve ``future`` unless its awaiter left (cancelled it)."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
        future.exception()  # retrieved: an awaiter that left must not warn


def _replay(outcome: Outcome) -> tuple[Any, bool]:
    value, error = outcome
    if error is not None:
        # Each caller gets its own exception object; the first caller keeps the original.
        copy = from_wire(error.to_wire(), status=error.http_status)
        copy.extra["replayed"] = True
        raise copy
    return value, True
