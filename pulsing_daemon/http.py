"""HTTP API (aiohttp): thin handlers over the supervisor, one error boundary (``guard``).

Every error leaves as the JSON envelope of ``pulsing_daemon.exceptions``; no route
answers a bad request with a 500 or a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from pulsing_daemon import __version__, log, wire
from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError
from pulsing_daemon.idempotency import IdempotencyStore
from pulsing_daemon.metrics import CONTENT_TYPE, Metrics
from pulsing_daemon.readiness import Readiness
from pulsing_daemon.streams import StreamManager
from pulsing_daemon.supervisor import Supervisor

SUPERVISOR = web.AppKey("supervisor", Supervisor)
STREAMS = web.AppKey("streams", StreamManager)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyStore)
MAX_READERS = web.AppKey("max_readers", int)
METRICS = web.AppKey("metrics", Metrics)
MAX_BODY = web.AppKey("max_body", int)
STARTED_AT = web.AppKey("started_at", float)
READINESS = web.AppKey("readiness", Readiness)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_TYPE = wire.JSON_TYPE
dumps = wire.encode  # every JSON body goes through the wire module's encoder


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type=JSON_TYPE, headers=headers)


def error_response(error: PulsingError) -> web.Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return web.Response(
        text=wire.error_body(error),
        status=error.http_status,
        content_type=JSON_TYPE,
        headers=headers,
    )


def bad_request(message: str, status: int = 400, **extra: Any) -> PulsingRuntimeError:
    return PulsingRuntimeError(f"bad request: {message}", status=status, **extra)


def _error_envelope(request: web.Request, exc: Exception, max_body: int) -> web.Response:
    """The JSON envelope answering an exception a request raised (``guard``)."""
    if isinstance(exc, PulsingError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status == 413:
            message = f"request body too large (limit {max_body} bytes)"
        elif exc.status == 404:
            message = f"no such route: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        else:
            message = exc.reason or "request rejected"
        response = error_response(PulsingRuntimeError(message, status=exc.status))
        if "Allow" in exc.headers:  # 405 must say which methods are allowed
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    # a bug in pulsing: log it, never leak a traceback
    log.event(
        "internal_error",
        category="runtime",
        level=logging.ERROR,
        path=request.path,
        type=type(exc).__name__,
        msg=str(exc),
    )
    log.logger.debug("internal error", exc_info=exc)
    return error_response(PulsingRuntimeError(f"internal error: {type(exc).__name__}", status=500))


class Auth:
    """The bearer token every route but /v1/health needs; a reload swaps it (``set``)."""

    def __init__(self, token: str | None) -> None:
        self.set(token)

    def set(self, token: str | None) -> None:
        self.token = token
        self.expected = f"Bearer {token}".encode() if token else None


AUTH = web.AppKey("auth", Auth)


def guard(app: web.Application, handle: Handler) -> Handler:
    """``handle`` (the application's own request handler: routing, then the route's)
    behind the token check, with every error it raises answered as a JSON envelope.

    A wrapper of the whole handler rather than an aiohttp middleware: with none, aiohttp
    calls the route's handler directly, where each request would otherwise go through
    a cached chain of partials and a current-app fix-up of its own. Being outside the
    router, it also answers the router's 404 and 405. No token costs one attribute test
    per request, and a token set by a reload applies at once.
    """
    from pulsing_daemon.web import is_public  # web imports this module

    auth = app[AUTH]
    max_body = app[MAX_BODY]

    async def guarded(request: web.Request) -> web.StreamResponse:
        expected = auth.expected
        # /v1/health and the status page's shell (web/: no actor data in it) are public.
        if expected is not None and request.path != "/v1/health" and not is_public(request.path):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                reason = "missing" if not given else "wrong"
                return error_response(
                    PulsingRuntimeError(
                        f"unauthorized: {reason} token (send Authorization: Bearer TOKEN)",
                        status=401,
                        hint="pass --token or set PULSING_TOKEN",
                    )
                )
        try:
            return await handle(request)
        except Exception as exc:
            if isinstance(exc, web.HTTPException) and exc.status < 400:
                raise  # a redirect, not an error
            return _error_envelope(request, exc, max_body)

    return guarded


# ---------------------------------------------------------------------- request parsing
async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``)."""
    try:
        raw = await request.read()
    except web.HTTPException:
        raise  # 413: the body is over the limit
    except Exception as exc:  # a body that cannot be read (bad Content-Encoding, ...)
        raise bad_request(f"cannot read the body: {type(exc).__name__}: {exc}") from None
    if not raw.strip():
        return {}
    try:
        body = _decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON ({exc})") from None
    except RecursionError:
        raise bad_request("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request('body must be a JSON object like {"op": ..., "args": ...}')
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


_decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode


def parse_call(body: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    """``{"op", "args", "kwargs"}`` -> (op, positional, keyword).

    ``args`` is an object (keyword arguments) or an array (positional, with keywords
    in ``kwargs``).
    """
    op = body.get("op")
    if not isinstance(op, str) or not op:
        raise bad_request('"op" must be a non-empty string')
    if len(op) > 256:
        raise bad_request('"op" is too long')
    args = body.get("args", {})
    kwargs = body.get("kwargs", {})
    if args is None:
        args = {}
    if not isinstance(kwargs, dict):
        raise bad_request('"kwargs" must be an object')
    if isinstance(args, dict):
        return op, [], {**args, **kwargs}
    if isinstance(args, list):
        return op, args, kwargs
    raise bad_request('"args" must be an object (keyword arguments) or an array (positional)')


_KEY = re.compile(r"[\x21-\x7e]{1,256}")


def parse_key(raw: Any) -> str | None:
    """An idempotency or stream key: 1..256 printable ASCII characters, no spaces."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _KEY.fullmatch(raw):
        raise bad_request("a key (Idempotency-Key) must be 1..256 printable ASCII characters")
    return raw


def parse_timeout(request: web.Request, body: dict[str, Any]) -> float | None:
    raw = request.headers.get("Pulsing-Timeout", body.get("timeout"))
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except (TypeError, ValueError):
        raise bad_request(f"Pulsing-Timeout must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(timeout) or timeout <= 0:
        raise bad_request(f"Pulsing-Timeout must be a positive number of seconds, got {raw!r}")
    return min(timeout, 86400.0 * 365)


# ---------------------------------------------------------------------- handlers
async def health(request: web.Request) -> web.Response:
    """Liveness: 200 while serving; "degraded" names the failed actors (readiness.py: ready)."""
    failed = request.app[SUPERVISOR].failed()
    return json_response(
        {
            "status": "degraded" if failed else "ok",
            "version": __version__,
            "ready": request.app[READINESS].ready,
            "failed": failed,
        }
    )


def status_payload(request: web.Request, name: str | None = None) -> dict[str, Any]:
    supervisor = request.app[SUPERVISOR]
    started = request.app[STARTED_AT]
    return {
        "schema": 1,
        "daemon": {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - started, 3),
            "config": str(supervisor.config.path),
            "listen": supervisor.config.daemon.listen,
        },
        "actors": supervisor.status(name),
    }


async def status(request: web.Request) -> web.Response:
    return json_response(status_payload(request))


async def actor_status(request: web.Request) -> web.Response:
    return json_response(status_payload(request, request.match_info["name"]))


async def ask(request: web.Request) -> web.Response:
    body = await read_json(request)
    op, args, kwargs = parse_call(body)
    timeout = parse_timeout(request, body)
    key = parse_key(request.headers.get("Idempotency-Key"))
    answer, replayed = await request.app[SUPERVISOR].ask(
        request.match_info["name"], op, args, kwargs, timeout, key
    )
    if replayed:
        return web.Response(
            text=wire.replayed_body(answer),
            content_type=JSON_TYPE,
            headers={wire.REPLAYED: "true"},
        )
    return web.Response(text=wire.result_body(answer), content_type=JSON_TYPE)


async def start_stream(request: web.Request) -> web.Response:
    body = await read_json(request)
    op, args, kwargs = parse_call(body)
    key = parse_key(request.headers.get("Idempotency-Key", body.get("key")))
    name = request.match_info["name"]
    stream_id, attached = request.app[STREAMS].start(name, op, args, kwargs, key)
    payload = request.app[STREAMS].describe(stream_id)
    payload.update(attached=attached, url=f"/v1/streams/{stream_id}")
    headers = {"Location": f"/v1/streams/{stream_id}"}
    return json_response(payload, status=200 if attached else 201, headers=headers)


def _resume_offset(request: web.Request) -> int:
    raw = request.query.get("from")
    last_event = request.headers.get("Last-Event-ID")
    try:
        if raw is not None:
            start = int(raw)
        elif last_event is not None and last_event.strip():
            start = int(last_event) + 1
        else:
            start = 0
    except ValueError:
        raise bad_request(f"offset must be an integer, got {raw or last_event!r}") from None
    if start < 0:
        raise bad_request("offset must be >= 0")
    return start


async def read_stream(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    stream_id = request.match_info["id"]
    start = _resume_offset(request)
    follow = request.query.get("follow", "1").lower() not in ("0", "false", "no")
    ndjson = wire.NDJSON_TYPE in request.headers.get("Accept", "")
    if streams.readers >= request.app[MAX_READERS]:
        raise PulsingRuntimeError(
            f"too many stream readers ({streams.readers})",
            recoverable=True,
            status=503,
            retry_after=1.0,
        )
    frames = streams.frames(stream_id, start, follow)
    # Fetch the first frame before answering, so an unknown stream or an offset older
    # than retention is a plain JSON error rather than a broken stream.
    first = await anext(frames, None)
    response = web.StreamResponse(
        headers={
            "Content-Type": wire.NDJSON_TYPE if ndjson else wire.SSE_TYPE,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Pulsing-Stream": stream_id,
        }
    )
    await response.prepare(request)
    streams.readers += 1
    try:
        frame = first
        while frame is not None:
            if frame.chunks:
                await response.write(wire.chunk_records(frame.chunks, ndjson))
            if frame.terminal is not None:
                await response.write(wire.terminal_record(frame.terminal, ndjson))
            elif not frame.chunks and not ndjson:
                # NDJSON has no keep-alive line (every line is a record), so an idle
                # NDJSON stream stays silent.
                await response.write(wire.KEEP_ALIVE)
            frame = await anext(frames, None)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the reader went away; it resumes with its last seq
    finally:
        streams.readers -= 1
        await frames.aclose()
    return response


async def stream_info(request: web.Request) -> web.Response:
    return json_response(request.app[STREAMS].describe(request.match_info["id"]))


async def control(request: web.Request) -> web.Response:
    name, action = request.match_info["name"], request.match_info["action"]
    before, after = await request.app[SUPERVISOR].control(name, action)
    payload = status_payload(request, name)
    payload["action"] = {"name": action, "before": before, "after": after}
    return json_response(payload)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    from pulsing_daemon.openapi import document

    return json_response(document(__version__))


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` as aiohttp does; anything else is a 417 envelope."""
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None
    return error_response(
        PulsingRuntimeError(f"bad request: unsupported Expect: {expect[:50]!r}", status=417)
    )


def build_app(
    supervisor: Supervisor,
    streams: StreamManager,
    idempotency: IdempotencyStore,
    *,
    token: str | None,
    max_body: int,
    max_readers: int,
) -> web.Application:
    auth = Auth(token)
    app = web.Application(client_max_size=max_body)
    app[AUTH] = auth
    app[SUPERVISOR] = supervisor
    app[STREAMS] = streams
    app[IDEMPOTENCY] = idempotency
    supervisor.idempotency = idempotency  # keyed asks go through it
    app[MAX_READERS] = max_readers
    app[METRICS] = Metrics()
    app[METRICS].attach(supervisor, streams)
    app[MAX_BODY] = max_body
    app[STARTED_AT] = time.monotonic()
    app[READINESS] = Readiness()
    # The router tries the routes under one prefix (/v1/actors) in the order they are
    # added: the ask route first, it is the one under load.
    app.router.add_post("/v1/actors/{name}/ask", ask, expect_handler=expect_handler)
    app.router.add_get("/v1/health", health, expect_handler=expect_handler)
    app.router.add_get("/v1/status", status, expect_handler=expect_handler)
    app.router.add_get("/v1/openapi.json", openapi, expect_handler=expect_handler)
    app.router.add_get("/metrics", metrics, expect_handler=expect_handler)
    app.router.add_get("/v1/actors/{name}", actor_status, expect_handler=expect_handler)
    app.router.add_post(
        r"/v1/actors/{name}/{action:restart|stop|start}", control, expect_handler=expect_handler
    )
    app.router.add_post("/v1/actors/{name}/streams", start_stream, expect_handler=expect_handler)
    app.router.add_get("/v1/streams/{id}", read_stream, expect_handler=expect_handler)
    app.router.add_get("/v1/streams/{id}/info", stream_info, expect_handler=expect_handler)
    # ---- ops routes (issue 14): events, streams listing
    from pulsing_daemon import ops_routes

    ops_routes.add_routes(app, expect_handler)
    # ---- the status page (issue 16): GET / and /ui/*
    from pulsing_daemon import web as status_page

    status_page.add_routes(app, expect_handler)
    # ---- per-actor logs (issue 13)
    from pulsing_daemon import log_routes

    log_routes.add_routes(app, expect_handler)
    return app


# ---------------------------------------------------------------------- runner
# Errors the HTTP parser finds (oversized header lines, too many headers, garbage)
# never reach a handler or the guard; aiohttp answers them in plain text from
# RequestHandler.handle_error. These two small subclasses make those answers the
# same JSON envelope as every other error, with 431 for oversized headers.
class _EnvelopeRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        text = "header too large" if isinstance(exc, LineTooLong) else (message or "bad request")
        # aiohttp has no exception class for "Too many headers received"; only its text.
        if isinstance(exc, LineTooLong) or "too many headers" in text.lower():
            status = 431
        error = PulsingRuntimeError(f"bad request: {text}"[:300], status=status)
        response = error_response(error)
        response.force_close()
        return response


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose requests go through ``guard`` and whose connections answer
    parse errors with JSON envelopes."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer
        server.request_handler = guard(self.app, server.request_handler)
        return server
