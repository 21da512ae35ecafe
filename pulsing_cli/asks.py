"""An ask on the wire, without I/O: the request it sends, how its answer and its errors
read, and when to retry it. Shared by the async ``Client`` (client.py) and the blocking
one-shot path of ``pulsing ask`` (oneshot.py), so both behave the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pulsing_cli.http11 import (
    Endpoint,
    Response,
    TransportConnectError,
    parse_endpoint,
)
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
    from_wire,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:7480"
# The daemon answers at the deadline; the client waits this much longer for that
# answer before concluding on its own that the ask timed out.
DEADLINE_SLACK = 2.0


@dataclass
class AskResult:
    """A successful ask: the op's value and the metadata the daemon sent beside it."""

    value: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        return bool(self.meta.get("replayed"))


class AskRequest:
    """What one ask sends: ``POST path`` with ``body`` and ``headers``; the client waits
    ``wait`` seconds for the answer (None: no bound)."""

    __slots__ = ("body", "headers", "path", "wait")

    def __init__(self, path: str, body: bytes, headers: dict[str, str], wait: float | None) -> None:
        self.path = path
        self.body = body
        self.headers = headers
        self.wait = wait


def resolve_endpoint(endpoint: str | None) -> tuple[str, Endpoint]:
    """The endpoint given, else $PULSING_ENDPOINT, else the default; parsed."""
    text = endpoint or os.environ.get("PULSING_ENDPOINT") or DEFAULT_ENDPOINT
    try:
        return text, parse_endpoint(text)
    except ValueError as exc:
        raise PulsingRuntimeError(f"bad endpoint {text!r}: {exc}", status=400) from None


def resolve_token(token: str | None) -> str | None:
    return token if token is not None else os.environ.get("PULSING_TOKEN") or None


def request_headers(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if extra:
        headers.update(extra)
    return headers


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def unreachable(endpoint: Endpoint, exc: BaseException) -> PulsingRuntimeError:
    """The daemon could not be reached (``sent=False``) or the connection dropped
    after the request went out (``sent=True``: it may have been carried out)."""
    if isinstance(exc, TransportConnectError):
        return PulsingRuntimeError(
            f"daemon not reachable at {endpoint}: {exc.reason}",
            recoverable=True,
            sent=False,
            hint="is `pulsing daemon` running? (see --endpoint / PULSING_ENDPOINT)",
        )
    return PulsingRuntimeError(
        f"connection to {endpoint} lost: {exc}",
        recoverable=True,
        sent=True,
        hint="retry; with an idempotency key a retry never runs the op twice",
    )


def ask_request(
    token: str | None,
    actor: str,
    op: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> AskRequest:
    """The request of one ask (``POST /v1/actors/ACTOR/ask``)."""
    payload: dict[str, Any] = {"op": op}
    if args:
        payload["args"] = list(args)
        if kwargs:
            payload["kwargs"] = kwargs
    else:
        payload["args"] = kwargs or {}
    extra: dict[str, str] = {"Content-Type": "application/json"}
    if timeout is not None:
        extra["Pulsing-Timeout"] = f"{timeout:g}"
    if idempotency_key:
        extra["Idempotency-Key"] = idempotency_key
    return AskRequest(
        f"/v1/actors/{seg(actor)}/ask",
        json_body(payload),
        request_headers(token, extra),
        None if timeout is None else timeout + DEADLINE_SLACK,
    )


def ask_timed_out(actor: str, op: str, timeout: float) -> PulsingTimeoutError:
    """No answer from the daemon within the deadline and its slack."""
    return PulsingTimeoutError(
        op,
        round(timeout * 1000, 3),
        message=f"{op} on {actor}: no answer from the daemon within {timeout:g}s",
        actor=actor,
    )


def ask_result(response: Response) -> AskResult:
    """The result of an ask from its answer (raises the answer's error)."""
    if response.status >= 400:
        raise decode_error(response.body, response.status)
    body = decode_json(response)
    if not isinstance(body, dict) or "result" not in body:
        raise PulsingRuntimeError(f"malformed answer from daemon: {str(body)[:200]}")
    meta = {k: v for k, v in body.items() if k != "result"}
    return AskResult(body["result"], meta)


def decode_error(body: bytes, status: int) -> PulsingError:
    try:
        envelope = json.loads(body)
    except ValueError:
        text = body.decode(errors="replace").strip()[:200]
        return PulsingRuntimeError(f"daemon answered HTTP {status}: {text}", status=status)
    return from_wire(envelope, status=status)


def decode_json(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        raise PulsingRuntimeError(
            f"daemon sent a body that is not JSON (HTTP {response.status})"
        ) from None


def seg(name: str) -> str:
    """A name as one path segment."""
    return quote(name, safe="")


# ---------------------------------------------------------------------- retries
def is_retryable(error: BaseException) -> bool:
    """The reliability page's recovery rules.

    Business and unsupported errors: never. System errors: only when ``recoverable``.
    Timeouts: yes. Runtime errors: when ``recoverable`` (daemon unreachable, mailbox
    full, restarting) -- not for an unknown actor, a stopped one or a bad request,
    which no retry can fix. A replayed outcome (idempotency key) is never retried.
    """
    if not isinstance(error, PulsingError):
        return False
    if isinstance(error, (PulsingBusinessError, PulsingUnsupportedError)):
        return False
    if error.extra.get("replayed"):  # a stored outcome: it will not change on retry
        return False
    if isinstance(error, PulsingTimeoutError):
        return True
    if isinstance(error, (PulsingSystemError, PulsingRuntimeError)):
        return error.recoverable
    return False


def retry_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] | None = None
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    if rand is None:
        import random  # only when retrying: not on the start-up path of `pulsing ask`

        rand = random.random
    return rand() * min(cap, base * (2 ** min(attempt, 30)))


def new_idempotency_key() -> str:
    import uuid

    return f"pulsing-{uuid.uuid4().hex}"
