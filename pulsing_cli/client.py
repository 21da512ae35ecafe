"""The async Python client of the pulsing daemon (also what the CLI uses).

::

    from pulsing_cli.client import connect, ask, ask_with_timeout

    async with connect("http://127.0.0.1:7480") as client:
        worker = client.actor("worker")            # a ref; nothing is sent yet
        await worker.work(x=5)                     # an op, by attribute
        await ask(worker, {"op": "work", "args": {"x": 5}})
        await ask_with_timeout(worker, {"op": "compute"}, timeout=10.0)

Errors arrive as the ``pulsing_daemon.exceptions`` types. ``retry`` implements the
reliability page's recovery strategy so callers do not write the loop by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pulsing_cli.asks import (
    DEADLINE_SLACK,
    DEFAULT_ENDPOINT,
    AskResult,
    ask_request,
    ask_result,
    ask_timed_out,
    decode_error,
    decode_json,
    is_retryable,
    json_body,
    new_idempotency_key,
    request_headers,
    resolve_endpoint,
    resolve_token,
    retry_delay,
    unreachable,
)
from pulsing_cli.asks import seg as _seg
from pulsing_cli.transport import HTTPTransport, Response, TransportError
from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError

__all__ = [
    "DEADLINE_SLACK",
    "DEFAULT_ENDPOINT",
    "ActorRef",
    "AskResult",
    "Chunk",
    "Client",
    "ask",
    "ask_with_timeout",
    "connect",
    "decode_error",
    "is_retryable",
    "new_idempotency_key",
    "retry",
    "retry_delay",
]

T = TypeVar("T")


@dataclass
class Chunk:
    """One chunk of a stream: its sequence number and the data the op yielded."""

    seq: int
    data: Any


class Client:
    """A connection pool to one daemon. Use ``connect()`` as an async context manager."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self.endpoint_text, self.endpoint = resolve_endpoint(endpoint)
        self.token = resolve_token(token)
        self.transport = HTTPTransport(self.endpoint, connect_timeout=connect_timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    def actor(self, name: str) -> ActorRef:
        return ActorRef(self, name)

    # ------------------------------------------------------------------ plumbing
    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return request_headers(self.token, extra)

    def unreachable(self, exc: BaseException) -> PulsingRuntimeError:
        """The daemon could not be reached (``sent=False``) or the connection dropped
        after the request went out (``sent=True``: it may have been carried out)."""
        return unreachable(self.endpoint, exc)

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = 30.0,
    ) -> Response:
        """One request; raises the matching pulsing exception for an error answer."""
        body = None
        all_headers = self.headers(headers)
        if payload is not None:
            body = json_body(payload)
            all_headers["Content-Type"] = "application/json"
        try:
            response = await self.transport.request(
                method, path, headers=all_headers, body=body, timeout=timeout
            )
        except TransportError as exc:
            raise self.unreachable(exc) from None
        if response.status >= 400:
            raise decode_error(response.body, response.status)
        return response

    async def get_json(self, path: str, timeout: float | None = 30.0) -> Any:
        return decode_json(await self.request("GET", path, timeout=timeout))

    # ------------------------------------------------------------------ API
    async def ask(
        self,
        actor: str,
        op: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AskResult:
        """Send one ask; return its result or raise its error. No retries."""
        request = ask_request(
            self.token, actor, op, args, kwargs, timeout=timeout, idempotency_key=idempotency_key
        )
        try:
            response = await self.transport.request(
                "POST",
                request.path,
                headers=request.headers,
                body=request.body,
                timeout=request.wait,
            )
        except TransportError as exc:
            raise self.unreachable(exc) from None
        except asyncio.TimeoutError:
            assert timeout is not None
            raise ask_timed_out(actor, op, timeout) from None
        return ask_result(response)

    async def status(self, actor: str | None = None) -> dict[str, Any]:
        path = "/v1/status" if actor is None else f"/v1/actors/{_seg(actor)}"
        return await self.get_json(path)

    async def control(self, actor: str, action: str) -> dict[str, Any]:
        if action not in ("restart", "stop", "start"):
            raise ValueError(f"unknown action {action!r}")
        return decode_json(
            await self.request("POST", f"/v1/actors/{_seg(actor)}/{action}", timeout=120.0)
        )

    async def reload(self, *, dry_run: bool = False) -> dict[str, Any]:
        """``POST /v1/reload``: the plan; a file with problems raises an error whose
        ``type`` is ``"ConfigError"`` with ``extra["problems"]``."""
        return decode_json(
            await self.request("POST", "/v1/reload", {"dry_run": dry_run}, timeout=120.0)
        )

    async def health(self) -> dict[str, Any]:
        return await self.get_json("/v1/health", timeout=5.0)


def connect(endpoint: str | None = None, token: str | None = None) -> Client:
    """A client for the daemon at ``endpoint`` (default: $PULSING_ENDPOINT or 127.0.0.1:7480).

    Use as ``async with connect(...) as client``.
    """
    return Client(endpoint, token)


class ActorRef:
    """A reference to a named actor; attribute access gives its ops."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"<ActorRef {self.name} at {self.client.endpoint}>"

    def __getattr__(self, op: str) -> Callable[..., Awaitable[Any]]:
        if op.startswith("_"):
            raise AttributeError(op)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await self.client.ask(self.name, op, list(args), kwargs)
            return result.value

        call.__name__ = op
        return call

    async def ask(
        self,
        op: str,
        *args: Any,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        result = await self.client.ask(
            self.name, op, list(args), kwargs, timeout=timeout, idempotency_key=idempotency_key
        )
        return result.value

    def stream(
        self,
        op: str,
        *args: Any,
        key: str | None = None,
        resume: int = 0,
        **kwargs: Any,
    ) -> AsyncIterator[Chunk]:
        """Start (or attach to) a streaming op and iterate its chunks; reconnects on its own."""
        from pulsing_cli.follow import open_stream

        return open_stream(self.client, self.name, op, list(args), kwargs, key=key, resume=resume)


def _message(msg: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise PulsingRuntimeError(
            'a message is a dict like {"op": "work", "args": {...}}', status=400
        )
    args = msg.get("args") or {}
    if isinstance(args, list):
        return msg["op"], args, dict(msg.get("kwargs") or {})
    if not isinstance(args, dict):
        raise PulsingRuntimeError('"args" must be a dict or a list', status=400)
    return msg["op"], [], args


async def ask(ref: ActorRef, msg: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
    """Send ``{"op": ..., "args": ...}`` to an actor and return the result."""
    op, args, kwargs = _message(msg)
    result = await ref.client.ask(ref.name, op, args, kwargs, idempotency_key=idempotency_key)
    return result.value


async def ask_with_timeout(
    ref: ActorRef, msg: dict[str, Any], timeout: float, *, idempotency_key: str | None = None
) -> Any:
    """Like ``ask``, with a deadline that travels with the request and is enforced by the daemon."""
    op, args, kwargs = _message(msg)
    result = await ref.client.ask(
        ref.name, op, args, kwargs, timeout=timeout, idempotency_key=idempotency_key
    )
    return result.value


# ---------------------------------------------------------------------- retries
async def retry(
    call: Callable[[], Awaitable[T]],
    retries: int = 3,
    *,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    on_retry: Callable[[int, PulsingError, float], None] | None = None,
) -> T:
    """Call ``call()`` up to ``1 + retries`` times, retrying only what can succeed.

    Waits with jittered exponential backoff, and never less than a ``retry_after``
    hint from the daemon. Pass an idempotency key inside ``call`` so a retry never
    runs the op twice.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except PulsingError as error:
            if attempt >= retries or not is_retryable(error):
                raise
            delay = max(retry_delay(attempt, base_delay, max_delay), error.retry_after or 0.0)
            if on_retry is not None:
                on_retry(attempt + 1, error, delay)
            await asyncio.sleep(delay)
            attempt += 1
