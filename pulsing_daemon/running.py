"""How a cell runs one message on its host: an ask, or a stream's producer.

An ask's op starts through the host (``invoke``, or ``prepare`` for hosts that run
sync batches: see batching.py) and gives either a coroutine, awaited here in the
cell's task under the ask's deadline, or a future of the op running elsewhere (a
thread, a child process), awaited until the deadline and then interrupted if the
host can. A stream's chunks go to its sink as they come. Each function answers its
envelope, or returns the :class:`~pulsing_daemon.envelope.Ended` of an instance
that failed under it (the cell answers that envelope once the restart policy has
decided).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pulsing_daemon.deadline import deadline_scope
from pulsing_daemon.envelope import (
    Ended,
    Envelope,
    EnvelopeState,
    classify,
    classify_exception,
    deadline_error,
    shut_down_while_running,
)
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingUnsupportedError,
)
from pulsing_daemon.handover import hand_over, lost_error
from pulsing_daemon.hosts.base import ActorHost, call_deadline

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell

# What ``start_op`` returns when the op did not start.
NOT_STARTED: Any = object()


def start_op(
    cell: ActorCell, envelope: Envelope, start: Callable[[], Any]
) -> tuple[Any, Ended | None]:
    """Call a host's ``invoke``/``produce``/``prepare`` for an envelope.

    A bad call (unknown op, bad arguments) answers the caller; an op that cannot
    even start (a broken instance, its process gone) is a failure of the instance.
    Returns (what ``start`` returned, None) or (NOT_STARTED, the end if any).
    The ask's deadline is ``call_deadline`` meanwhile (a remote host sends it along).
    """
    token = call_deadline.set(envelope.deadline)
    try:
        return start(), None
    except (PulsingBusinessError, PulsingUnsupportedError) as exc:
        cell.answer(envelope, error=exc)
        return NOT_STARTED, None
    except Exception as exc:
        return NOT_STARTED, Ended.of_failure(exc, envelope)
    finally:
        call_deadline.reset(token)


def due(cell: ActorCell, envelope: Envelope) -> bool:
    """An ask taken to run: past its deadline it is answered as never executed (False);
    else it is running from now on. (A keyed one is handed over next: handover.py.)"""
    if envelope.deadline <= asyncio.get_running_loop().time():
        cell.answer(envelope, error=cell.expired_error(envelope))
        return False
    envelope.state = EnvelopeState.RUNNING
    return True


async def execute(
    cell: ActorCell,
    host: ActorHost,
    envelope: Envelope,
    start: Callable[[], Any] | None = None,
) -> Ended | None:
    """Run one ask: ``host.invoke`` gives a coroutine to await here or a future of the
    op running elsewhere. ``start`` is the start of a call ``host.prepare`` has resolved
    and bound already (under ``start_op``): it only makes the coroutine, so it is called
    as it is."""
    if not due(cell, envelope):
        return None
    unhanded = envelope.handover is not None and not envelope.handed  # keyed, not ahead
    if unhanded and not await hand_over(cell, envelope):
        return None
    remaining = envelope.deadline - asyncio.get_running_loop().time()
    if start is not None:
        running, ended = start(), None
    else:
        running, ended = start_op(
            cell, envelope, lambda: host.invoke(envelope.op, envelope.args, envelope.kwargs)
        )
    if running is NOT_STARTED:
        return ended
    envelope.executed = True
    cell.in_flight += 1
    if asyncio.iscoroutine(running):
        try:
            return await execute_here(cell, envelope, running, remaining)
        finally:
            cell.in_flight -= 1
    try:
        done, _ = await asyncio.wait((running,), timeout=remaining)
        if not done:
            return await past_deadline(cell, host, envelope, running)
        value, error, failure = classify(running)
        if failure is not None:
            return Ended.of_failure(failure, envelope)
        cell.answer(envelope, value, error)
        return None
    except asyncio.CancelledError:
        if not running.done():
            await host.interrupt(running)
        cell.answer(envelope, error=shut_down_while_running(envelope))
        raise
    finally:
        cell.in_flight -= 1


async def execute_here(
    cell: ActorCell, envelope: Envelope, call: Coroutine[Any, Any, Any], remaining: float
) -> Ended | None:
    """Await an in-process async op in this task, under the ask's deadline.

    No task per op and no hop through the loop: a trivial op finishes within this
    step, so a busy actor drains its mailbox in few loop iterations. The deadline is
    the one the cell's deadline watch still holds from the mailbox: at the deadline
    ``ActorCell.expire`` cancels this task (``envelope.runner``), as ``asyncio.timeout``
    would, with no timer of its own. An envelope not watched gets a scope of its own.
    """
    if envelope.watch is None:
        return await _execute_scoped(cell, envelope, call, remaining)
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
    envelope.runner = task
    try:
        value = await call
    except asyncio.CancelledError:
        if _cancelled_at_deadline(envelope, task, cancelling):
            cell.answer(envelope, error=deadline_error(envelope))
            return None
        cell.answer(envelope, error=shut_down_while_running(envelope))
        raise
    except BaseException as exc:
        if _cancelled_at_deadline(envelope, task, cancelling):
            envelope.interrupted = False  # it turned the cancel into its own error
        return _answer_raised(cell, envelope, exc)
    finally:
        envelope.runner = None
    if _cancelled_at_deadline(envelope, task, cancelling):
        envelope.interrupted = False  # it swallowed the cancel: its value stands
    cell.answer(envelope, value)
    return None


def _cancelled_at_deadline(envelope: Envelope, task: asyncio.Task[Any], cancelling: int) -> bool:
    """Did the deadline watch (and nothing else) cancel the op? Takes its cancel back."""
    if not envelope.interrupted:
        return False
    uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
    return uncancel is None or uncancel() <= cancelling


def _answer_raised(cell: ActorCell, envelope: Envelope, exc: BaseException) -> Ended | None:
    _, error, failure = classify_exception(exc)
    if failure is not None:
        return Ended.of_failure(failure, envelope)
    cell.answer(envelope, error=error)
    return None


async def _execute_scoped(
    cell: ActorCell, envelope: Envelope, call: Coroutine[Any, Any, Any], remaining: float
) -> Ended | None:
    deadline = deadline_scope(remaining)
    try:
        async with deadline:
            value = await call
    except asyncio.CancelledError:
        cell.answer(envelope, error=shut_down_while_running(envelope))
        raise
    except BaseException as exc:
        if isinstance(exc, TimeoutError) and deadline.expired():
            envelope.interrupted = True  # cancelled at its deadline
            cell.answer(envelope, error=deadline_error(envelope))
            return None
        return _answer_raised(cell, envelope, exc)
    cell.answer(envelope, value)
    return None


async def past_deadline(
    cell: ActorCell, host: ActorHost, envelope: Envelope, running: asyncio.Future[Any]
) -> Ended | None:
    """The op outlived its deadline: stop it if the host can, answer the caller."""
    envelope.interrupted = await host.interrupt(running)
    if envelope.interrupted:
        cell.answer(envelope, error=deadline_error(envelope))
        return None
    return await answer_late(cell, envelope, running)


async def answer_late(
    cell: ActorCell, envelope: Envelope, running: asyncio.Future[Any]
) -> Ended | None:
    """An op running past its deadline, or that ended past it though the loop saw its
    result first (a loop held up past both: ``SyncCall.ended_late``,
    ``ActorHost.ended_late``): the caller gets the deadline now; once the op ends, its
    real outcome goes to ``on_late`` (idempotency records it), and a crash is still a
    failure."""
    cell.answer(envelope, error=deadline_error(envelope))
    await asyncio.wait((running,))  # the actor is busy until the op ends
    value, error, failure = classify(running)
    if envelope.on_late is not None:
        if failure is not None:
            error = lost_error(envelope, failure) or PulsingSystemError(
                f"{envelope.op} crashed after its deadline"
            )
        envelope.on_late(value, error)
    if failure is not None:
        return Ended.of_failure(failure)
    return None


async def produce(cell: ActorCell, host: ActorHost, envelope: Envelope) -> Ended | None:
    """Run a streaming op to completion, appending each chunk to its sink."""
    assert envelope.sink is not None
    envelope.state = EnvelopeState.RUNNING
    chunks, ended = start_op(
        cell, envelope, lambda: host.produce(envelope.op, envelope.args, envelope.kwargs)
    )
    if chunks is NOT_STARTED:
        return ended
    envelope.executed = True
    cell.in_flight += 1
    try:
        async for chunk in chunks:
            await envelope.sink.append(chunk)
            if cell.stop_requested:
                await _aclose(chunks)
                cell.answer(
                    envelope,
                    error=PulsingRuntimeError(
                        f"actor {cell.name} was stopped while streaming {envelope.op}",
                        status=503,
                    ),
                )
                return None
    except asyncio.CancelledError:
        cell.answer(envelope, error=shut_down_while_running(envelope))
        raise
    except BaseException as exc:
        value, error, failure = classify_exception(exc)
        if failure is not None:
            return Ended.of_failure(failure, envelope)
        cell.answer(envelope, value, error)
        return None
    finally:
        cell.in_flight -= 1
    cell.answer(envelope, None)
    return None



async def _aclose(chunks: Any) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass
