"""A cell as an operator sees it: its status, its last error, its last failure.

``status`` is one actor's entry in ``GET /v1/status`` (``pulsing status``). The last
error (the latest ask answered with an error, or a failure no ask carried) and the
last failure (why an instance ended) stay in it after the actor recovered; each is
also a log line, and a failure is an event in the event log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pulsing_daemon import cell_errors, log
from pulsing_daemon.envelope import Ended, Envelope
from pulsing_daemon.exceptions import PulsingError
from pulsing_daemon.states import ActorState

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell

# How an ask was answered, as counted in ``counts``.
OUTCOMES = ("ok", "business", "system", "timeout", "unsupported", "runtime")


def backoff_remaining(cell: ActorCell) -> float | None:
    """Seconds until the next instance starts, while the cell is in backoff."""
    if cell.state is not ActorState.BACKOFF or cell.backoff_until is None:
        return None
    return max(0.0, cell.backoff_until - cell.clock())


def status(cell: ActorCell) -> dict[str, Any]:
    remaining = backoff_remaining(cell)
    uptime = None if cell.running_since is None else cell.clock() - cell.running_since
    config = cell.config
    entry: dict[str, Any] = {
        "name": cell.name,
        "state": cell.state.value,
        "policy": config.restart_policy.value,
        "restarts": cell.tracker.count,
        "max_restarts": config.max_restarts,
        "restart_window": config.restart_window,
        "total_restarts": cell.total_restarts,
        "operator_restarts": cell.operator_restarts,
        "backoff_remaining": None if remaining is None else round(remaining, 3),
        "mailbox": cell.queued,
        "mailbox_size": config.mailbox_size,
        "in_flight": cell.in_flight,
        "counts": {k: cell.counts[k] for k in OUTCOMES},
        "last_error": cell.last_error,
        "last_failure": cell.last_failure,
        "uptime": None if uptime is None else round(uptime, 3),
        "isolation": config.isolation,
        "class": config.class_path,
    }
    if cell.host is not None:
        entry.update(cell.host.info())
    return entry


def remember_error(cell: ActorCell, envelope: Envelope, error: PulsingError) -> None:
    """An ask was answered with ``error``: it is the cell's last error."""
    cell.last_error = {
        "category": error.category,
        "type": error.type,
        "message": error.message,
        "op": envelope.op,
        "at": cell_errors.utc_now(),
    }
    log.event(
        "error",
        actor=cell.name,
        category=error.category,
        level=logging.INFO if error.category == "business" else logging.WARNING,
        op=envelope.op,
        type=error.type,
        msg=error.message,
    )


def record_failure(cell: ActorCell, ended: Ended) -> None:
    """An instance failed: the cell's last failure (and last error, unless an ask
    carries it)."""
    cell.last_failure = failure = cell_errors.failure_record(ended)
    if ended.envelope is None:
        cell.last_error = {k: v for k, v in failure.items() if k != "traceback"}
    log.event(
        "failure",
        actor=cell.name,
        category="system",
        level=logging.WARNING,
        where=ended.where,
        type=failure["type"],
        msg=failure["message"],
    )
    cell.emit("failure", cell.name, **failure)
