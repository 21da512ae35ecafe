"""The error tree of pulsing, shared by the daemon, the client and user code.

::

    PulsingError
    ├── PulsingRuntimeError            framework: daemon unreachable, unknown actor,
    │                                  actor failed/stopped, mailbox full, bad request
    └── PulsingActorError              raised by (or on behalf of) user code
        ├── PulsingBusinessError       bad input, rule violated       -> never retried
        ├── PulsingSystemError         internal failure, crash        -> retried iff recoverable
        ├── PulsingTimeoutError        deadline exceeded              -> retried with backoff
        └── PulsingUnsupportedError    unknown op                     -> never retried

Every error crosses the wire as one JSON envelope::

    {"error": {"category": "system", "type": "ZeroDivisionError", "message": "...",
               "recoverable": true, "actor": "worker", "state": "backoff",
               "restarts": 1, "max_restarts": 5, ...}}

``to_wire`` builds it and ``from_wire`` turns it back into the matching exception, so
the category, the HTTP status and the CLI exit code always agree.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CATEGORIES",
    "PulsingActorError",
    "PulsingBusinessError",
    "PulsingError",
    "PulsingRuntimeError",
    "PulsingSystemError",
    "PulsingTimeoutError",
    "PulsingUnsupportedError",
    "from_wire",
    "is_failure",
]

CATEGORIES = ("business", "system", "unsupported", "runtime", "timeout")

# Keys of the envelope that describe the actor involved, copied onto the exception.
_ACTOR_KEYS = ("actor", "state", "restarts", "max_restarts")


class PulsingError(Exception):
    """Base of every pulsing error."""

    category: str = "runtime"
    http_status: int = 500

    def __init__(self, message: str = "", *, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.http_status = status
        self.type: str = type(self).__name__
        self.actor: str | None = extra.pop("actor", None)
        self.state: str | None = extra.pop("state", None)
        self.restarts: int | None = extra.pop("restarts", None)
        self.max_restarts: int | None = extra.pop("max_restarts", None)
        self.retry_after: float | None = extra.pop("retry_after", None)
        # Anything else the envelope carried (hint, executed, stream, earliest, ...).
        self.extra: dict[str, Any] = extra

    @property
    def recoverable(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.message

    def with_actor(self, actor: str, state: str, restarts: int, max_restarts: int) -> PulsingError:
        """Stamp the actor's identity and health on the error (returns self)."""
        self.actor, self.state = actor, state
        self.restarts, self.max_restarts = restarts, max_restarts
        return self

    def fields(self) -> dict[str, Any]:
        """Category-specific fields of the envelope (overridden by subclasses)."""
        return {}

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "category": self.category,
            "type": self.type,
            "message": self.message,
            "recoverable": self.recoverable,
        }
        body.update(self.fields())
        for key in _ACTOR_KEYS:
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return {"error": body}


class PulsingRuntimeError(PulsingError):
    """A framework error: the request could not be carried out by the runtime."""

    category = "runtime"
    http_status = 503

    def __init__(self, message: str = "", *, recoverable: bool = False, **extra: Any) -> None:
        super().__init__(message, **extra)
        self._recoverable = recoverable

    @property
    def recoverable(self) -> bool:
        """True when the same request may succeed later (mailbox full, restarting, ...)."""
        return self._recoverable


class PulsingActorError(PulsingError):
    """An error raised by user code (or on its behalf)."""

    category = "system"
    http_status = 500


class PulsingBusinessError(PulsingActorError):
    """Bad input or a violated rule: returned to the caller, never retried."""

    category = "business"
    http_status = 422

    def __init__(self, code: Any, message: str = "", details: Any = None, **extra: Any) -> None:
        super().__init__(message or str(code), **extra)
        self.code = code
        self.details = details

    def fields(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details}


class PulsingSystemError(PulsingActorError):
    """An internal failure. Retrying helps exactly when ``recoverable`` is true."""

    category = "system"
    http_status = 500

    def __init__(self, error: Any = "", recoverable: bool = True, **extra: Any) -> None:
        if "status" not in extra and recoverable:
            extra["status"] = 503
        super().__init__(str(error), **extra)
        self.error = str(error)
        self._recoverable = bool(recoverable)

    @property
    def recoverable(self) -> bool:
        return self._recoverable

    @recoverable.setter
    def recoverable(self, value: bool) -> None:
        self._recoverable = bool(value)


class PulsingTimeoutError(PulsingActorError):
    """A deadline passed before the answer came. Retry with backoff."""

    category = "timeout"
    http_status = 504

    def __init__(self, operation: str = "", duration_ms: float = 0, **extra: Any) -> None:
        message = extra.pop("message", None) or (
            f"{operation} timed out after {duration_ms:g} ms"
            if duration_ms
            else f"{operation} timed out"
        )
        super().__init__(message, **extra)
        self.operation = operation
        self.duration_ms = duration_ms

    @property
    def recoverable(self) -> bool:
        return True

    def fields(self) -> dict[str, Any]:
        return {"operation": self.operation, "duration_ms": self.duration_ms}


class PulsingUnsupportedError(PulsingActorError):
    """The actor has no such op. Never retried."""

    category = "unsupported"
    http_status = 404

    def __init__(self, operation: str = "", **extra: Any) -> None:
        message = extra.pop("message", None) or f"unsupported operation: {operation}"
        super().__init__(message, **extra)
        self.operation = operation

    def fields(self) -> dict[str, Any]:
        return {"operation": self.operation}


_FIELDS = (
    "category",
    "type",
    "message",
    "recoverable",
    "code",
    "details",
    "operation",
    "duration_ms",
    "actor",
    "state",
    "restarts",
    "max_restarts",
    "retry_after",
)
_RESERVED = frozenset({"self", "status", "error", "message", "recoverable"})


def is_failure(exc: BaseException) -> bool:
    """Whether an exception escaping an op is a failure of the actor instance.

    Business, unsupported, timeout and runtime errors and recoverable system errors
    answer the caller; anything else -- including ``PulsingSystemError(recoverable=False)``
    -- is a failure that the restart policy handles.
    """
    if isinstance(exc, PulsingSystemError):
        return not exc.recoverable
    return not isinstance(
        exc,
        (PulsingBusinessError, PulsingUnsupportedError, PulsingTimeoutError, PulsingRuntimeError),
    )


def from_wire(envelope: dict[str, Any], *, status: int | None = None) -> PulsingError:
    """Rebuild the exception an error envelope describes (the inverse of ``to_wire``).

    Unknown or malformed envelopes become a ``PulsingRuntimeError`` rather than raising.
    """
    body = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(body, dict):
        return PulsingRuntimeError(
            f"malformed error from daemon: {envelope!r}"[:500], status=status
        )
    known = {key: body.get(key) for key in _FIELDS}
    # Everything else rides along as extra; keys that name constructor parameters
    # would collide, so they are dropped.
    data = {k: v for k, v in body.items() if k not in _FIELDS and k not in _RESERVED}
    category = known["category"] or "runtime"
    type_name = known["type"]
    message = str(known["message"] or "")
    recoverable = bool(known["recoverable"])
    for key in ("actor", "state", "restarts", "max_restarts", "retry_after"):
        if known[key] is not None:
            data[key] = known[key]
    error: PulsingError
    if category == "business":
        error = PulsingBusinessError(known["code"], message, known["details"], **data)
    elif category == "system":
        error = PulsingSystemError(message, recoverable=recoverable, **data)
    elif category == "timeout":
        try:
            duration = float(known["duration_ms"] or 0)
        except (TypeError, ValueError):
            duration = 0.0
        error = PulsingTimeoutError(
            str(known["operation"] or ""), duration, message=message, **data
        )
    elif category == "unsupported":
        error = PulsingUnsupportedError(str(known["operation"] or ""), message=message, **data)
    else:
        error = PulsingRuntimeError(message, recoverable=recoverable, status=status, **data)
    if type_name:
        error.type = str(type_name)
    return error
