"""Capture of what inline actors write: ``print``, ``sys.stdout``/``stderr`` and
``logging``, each routed to the log of the actor whose code is running.

The cell's lifecycle task sets :data:`CURRENT` to its actor's
:class:`~pulsing_daemon.storage.logs.ActorLog` (:func:`enter`); asyncio tasks and the
op thread pool copy the context, so an op, ``run()``, hooks and the tasks they spawn
all write to their own actor's log. Outside any actor, ``sys.stdout``/``stderr``
write through to the real streams, and other code's warnings become one line of the
daemon's log.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from pulsing_daemon import log

if TYPE_CHECKING:
    from pulsing_daemon.storage.logs import ActorLog

# The log of the actor whose code is running here (None: the daemon's own code).
CURRENT: contextvars.ContextVar[ActorLog | None] = contextvars.ContextVar(
    "pulsing_actor_log", default=None
)


class _Capture:
    """Stands in for ``sys.stdout``/``sys.stderr``: an actor's writes go to its log,
    everyone else's to the real stream."""

    def __init__(self, real: TextIO, stream: str) -> None:
        self._real = real
        self._stream = stream

    def write(self, text: str) -> int:
        actor_log = CURRENT.get()
        if actor_log is None:
            return self._real.write(text)
        actor_log.write_partial(self._stream, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        actor_log = CURRENT.get()
        if actor_log is None:
            self._real.flush()
        else:
            actor_log.flush_partial(self._stream)

    def isatty(self) -> bool:
        return False if CURRENT.get() is not None else self._real.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _CaptureHandler(logging.Handler):
    """On the root logger: an actor's records go to its log as ``log`` lines; others'
    warnings and errors become one line of the daemon's log (they had none before:
    the root logger had no handler)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        # "LEVEL logger: message", then the traceback or stack if the record has one.
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        actor_log = CURRENT.get()
        if actor_log is None:
            if record.levelno >= logging.WARNING:
                log.event("log", level=record.levelno, logger=record.name, msg=_message(record))
            return True
        try:
            if record.exc_info or record.exc_text or record.stack_info:
                text = self.format(record)
            else:  # the common case, without Formatter's general machinery
                text = f"{record.levelname} {record.name}: {record.getMessage()}"
            actor_log.write("log", text)
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        pass


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


_installed: dict[str, Any] = {}


def install(*, root_level: int = logging.INFO) -> None:
    """Capture the output of inline actors (idempotent). The root logger gets the
    capture handler and, unless something configured it already, level INFO."""
    if _installed:
        return
    root = logging.getLogger()
    handler = _CaptureHandler()
    _installed.update(stdout=sys.stdout, stderr=sys.stderr, handler=handler, root_level=root.level)
    sys.stdout = _Capture(sys.stdout, "stdout")
    sys.stderr = _Capture(sys.stderr, "stderr")
    if not root.handlers and root.level == logging.WARNING:
        root.setLevel(root_level)
    root.addHandler(handler)


def uninstall() -> None:
    if not _installed:
        return
    root = logging.getLogger()
    root.removeHandler(_installed["handler"])
    root.setLevel(_installed["root_level"])
    sys.stdout = _installed["stdout"]
    sys.stderr = _installed["stderr"]
    _installed.clear()


def enter(actor_log: ActorLog | None) -> None:
    """Route the output of the code that runs from here on (in this task and what it
    starts) to ``actor_log``."""
    if actor_log is not None:
        CURRENT.set(actor_log)


def current() -> ActorLog | None:
    return CURRENT.get()

