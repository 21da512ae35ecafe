"""One message in an actor's mailbox, and how a message's run can end.

An :class:`Envelope` carries an ask (or a stream's start) from the supervisor to the
cell and holds the future its sender waits on. Its deadline is a point on the event
loop's clock (``pulsing_daemon.deadline``). :class:`Ended` is what running a message
returns when the instance failed under it (or was stopped); the errors here answer an
envelope the same way wherever it was running.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from pulsing_daemon.exceptions import (
    PulsingError,
    PulsingRuntimeError,
    PulsingTimeoutError,
    is_failure,
)
from pulsing_daemon.hosts.base import NotStarted, failure_where
from pulsing_daemon.policy import ExitKind

if TYPE_CHECKING:
    from pulsing_daemon.deadline import DeadlineWatch
    from pulsing_daemon.handover import Handover
    from pulsing_daemon.hosts.threads import SyncCall


class EnvelopeState(enum.Enum):
    QUEUED = "queued"
    BATCHED = "batched"  # taken into a batch of sync ops, not started yet
    RUNNING = "running"
    DONE = "done"


class StreamSink(Protocol):
    """Where a streaming op's chunks go (the journal)."""

    async def append(self, chunk: Any) -> None: ...


@dataclass(eq=False, slots=True)
class Envelope:
    """One message in a mailbox and the future its sender waits on."""

    op: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float
    deadline: float  # event-loop time
    future: asyncio.Future[Any]
    # time.perf_counter() when it was made, for the latency metric: the loop's clock
    # may count whole milliseconds only (uvloop, see eventloop.py).
    born: float
    sink: StreamSink | None = None  # set for streaming ops
    # Called with (value, error) when the op really finished after its caller was
    # already answered (a sync op past its deadline); idempotency records it.
    on_late: Callable[[Any, PulsingError | None], None] | None = None
    state: EnvelopeState = EnvelopeState.QUEUED
    # The cell's deadline watch while it holds this message's deadline (None: not
    # watched): queued, in a sync batch not started, or its op awaited in place.
    watch: DeadlineWatch | None = None
    result_json: str | None = None  # the successful result, encoded once
    call: SyncCall | None = None  # while in a batch of sync ops
    executed: bool = False  # the op was started
    handover: Handover | None = None  # a keyed ask: its durable "handed over" record
    handed: float = 0.0  # loop time that record was written (0: not; see handover.py)
    interrupted: bool = False  # past its deadline, the op was stopped (not left running)
    # The task awaiting the op in place (running.execute_here): the deadline watch
    # cancels it at the deadline, so an in-place op needs no timer of its own.
    runner: asyncio.Task[Any] | None = None
    # Answered, its future resolved once its outcome's record has committed (a keyed
    # ask: ``Handover.settle``).
    recording: bool = False


def new_envelope(
    op: str,
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float,
    sink: StreamSink | None = None,
) -> Envelope:
    loop = asyncio.get_running_loop()
    return Envelope(
        op=op,
        args=args,
        kwargs=kwargs,
        timeout=timeout,
        deadline=loop.time() + timeout,
        future=loop.create_future(),
        born=perf_counter(),
        sink=sink,
    )


@dataclass
class Ended:
    """How an instance's serving ended."""

    stopped: bool = False  # a stop was requested
    kind: ExitKind | None = None
    cause: BaseException | None = None
    where: str = "op"  # op | start | run | process | timeout | protocol
    envelope: Envelope | None = None  # the message that hit the failure, still unanswered

    @classmethod
    def of_failure(cls, failure: BaseException, envelope: Envelope | None = None) -> Ended:
        """An op's failure: where its host says it happened (the op, by default)."""
        return cls(
            kind=ExitKind.FAILURE, cause=failure, envelope=envelope, where=failure_where(failure)
        )


def classify(done: asyncio.Future[Any]) -> tuple[Any, PulsingError | None, BaseException | None]:
    """(value, error for the caller, failure of the instance) of a finished op."""
    if done.cancelled():
        return None, PulsingRuntimeError("op was cancelled", status=503), None
    exc = done.exception()
    if exc is None:
        return done.result(), None, None
    return classify_exception(exc)


def classify_exception(
    exc: BaseException,
) -> tuple[Any, PulsingError | None, BaseException | None]:
    """(None, error for the caller, failure of the instance): see ``is_failure``."""
    if isinstance(exc, NotStarted):  # a pipelining host never started it: not a failure
        if exc.expired:
            return None, PulsingTimeoutError("ask", 0, message=str(exc), executed=False), None
        return None, PulsingRuntimeError(f"op {exc}", recoverable=True, status=503), None
    if is_failure(exc):
        return None, None, exc
    assert isinstance(exc, PulsingError)
    return None, exc, None


def deadline_error(envelope: Envelope) -> PulsingTimeoutError:
    """The answer to an op that started and outlived its deadline."""
    return PulsingTimeoutError(
        envelope.op,
        round(envelope.timeout * 1000, 3),
        message=f"{envelope.op} did not finish within its {envelope.timeout:g}s deadline",
        executed=True,
    )


def not_run_at_shutdown(envelope: Envelope) -> PulsingRuntimeError:
    """The answer to an ask taken from the mailbox that the shutdown kept from starting."""
    message = f"daemon shutting down; {envelope.op} was not executed"
    return PulsingRuntimeError(message, recoverable=True, status=503)


def shut_down_while_running(envelope: Envelope) -> PulsingRuntimeError:
    return PulsingRuntimeError(f"daemon shut down while {envelope.op} was running", status=503)
