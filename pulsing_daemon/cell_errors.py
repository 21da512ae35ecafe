"""What a cell answers with when an ask does not run, or its instance failed under it.

The cell decides *when* (cell.py); these say *what*: the error, its category, its
HTTP status and whether a retry may help. Messages name the actor and the op, and a
refusal says what would make the actor serve again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pulsing_daemon.envelope import Ended, Envelope
from pulsing_daemon.exceptions import (
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
)
from pulsing_daemon.handover import lost_error
from pulsing_daemon.hosts.base import failure_type
from pulsing_daemon.states import ActorState
from pulsing_daemon.storage import logs

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell


def shutting_down() -> PulsingRuntimeError:
    return PulsingRuntimeError("daemon is shutting down", recoverable=True, status=503)


def not_serving(
    name: str, state: ActorState, last_failure: dict[str, Any] | None
) -> PulsingRuntimeError:
    """The actor is stopped or failed: an operator has to start it again."""
    if state is ActorState.FAILED:
        why = (last_failure or {}).get("message", "")
        hint = f"run `pulsing restart {name}`"
        message = f"actor {name} is failed" + (f" ({why})" if why else "")
    else:
        hint = f"run `pulsing start {name}`"
        message = f"actor {name} is stopped"
    return PulsingRuntimeError(message, recoverable=False, status=409, hint=hint)


def not_executed(cell: ActorCell, reason: str, op: str) -> PulsingRuntimeError:
    """The answer to an ask the cell drops from its mailbox (``reason``): it never ran."""
    if cell.state not in (ActorState.STOPPED, ActorState.FAILED):
        return PulsingRuntimeError(f"{reason}; {op} was not executed", status=503)
    if cell.accepting:  # stopped or failed: an operator has to start it again
        error = not_serving(cell.name, cell.state, cell.last_failure)
        error.message += f"; {op} was not executed"
        return error
    removed = cell.retired is not None  # by a reload; else the daemon shuts down
    return PulsingRuntimeError(
        f"{reason}; {op} was not executed",
        recoverable=not removed,
        status=404 if removed else 503,
    )


def restarting(name: str, retry_after: float) -> PulsingSystemError:
    return PulsingSystemError(
        f"actor {name} is restarting (during_restart = fail_fast)",
        recoverable=True,
        retry_after=retry_after,
        status=503,
    )


def mailbox_full(name: str, size: int) -> PulsingRuntimeError:
    return PulsingRuntimeError(
        f"mailbox of {name} is full ({size} messages)",
        recoverable=True,
        status=503,
        retry_after=1.0,
    )


def expired_in_mailbox(name: str, envelope: Envelope) -> PulsingTimeoutError:
    """The ask's deadline passed while it waited: it was never executed."""
    return PulsingTimeoutError(
        envelope.op,
        round(envelope.timeout * 1000, 3),
        message=(
            f"{envelope.op} timed out after {envelope.timeout:g}s while queued "
            f"in the mailbox of {name}; it was never executed"
        ),
        executed=False,
    )


def failure_error(ended: Ended, restart: bool) -> PulsingSystemError:
    """The answer to the ask that hit its instance's failure (``restart``: the actor
    will be restarted, so a retry may succeed)."""
    cause = ended.cause
    lost = lost_error(ended.envelope, cause)  # a keyed ask's instance died under it
    if lost is not None:
        return lost
    if isinstance(cause, PulsingSystemError):
        message = cause.message
    else:
        message = f"{ended.envelope.op if ended.envelope else 'actor'} crashed: {_describe(cause)}"
    error = PulsingSystemError(message, recoverable=restart)
    if cause is not None and not isinstance(cause, PulsingError):
        error.type = failure_type(cause)
    return error


def failure_record(ended: Ended) -> dict[str, Any]:
    """The ``last_failure`` of status: what failed, where, when, and its traceback."""
    cause = ended.cause
    return {
        "category": "system",
        "type": failure_type(cause) if cause is not None else "Exit",
        "message": str(cause) if cause is not None else "run() exited",
        "where": ended.where,
        "at": utc_now(),
        "traceback": logs.describe_failure(cause),
    }


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "run() exited"
    text = str(exc)
    if isinstance(exc, PulsingError):
        return text
    return f"{failure_type(exc)}: {text}" if text else failure_type(exc)


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
