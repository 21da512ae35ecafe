"""HTTP routes for day-to-day operation: ``GET /v1/events`` (SSE / NDJSON) and
``GET /v1/streams`` (the streams in the journal).

``/v1/events`` answers the kept history and then, unless ``?follow=0``, every new
event as it happens. Where it starts: ``Last-Event-ID`` or ``?since=ID`` (events after
that id), else the newest ``?limit=`` events (default 100). ``?actor=NAME`` keeps one
actor's events. SSE frames carry ``id:`` = the event id, so ``EventSource`` and
``curl -N`` resume where they left off.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from pulsing_daemon.http import STREAMS, SUPERVISOR, bad_request, json_response
from pulsing_daemon.storage.events import EventLog, FollowerOverrun

HEARTBEAT = 15.0  # seconds between keep-alives on an event stream
# Bytes a follower's connection may hold unsent before new events wait in its queue
# (written by its own task, which waits for the reader) instead of being sent directly.
SEND_BUFFER = 64 * 1024
DEFAULT_LIMIT = 100
STREAM_STATES = ("running", "completed", "failed")


def _int_param(request: web.Request, name: str, raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < 0:
        raise bad_request(f"{name} must be >= 0, got {value}")
    return value


def _follow_param(request: web.Request) -> bool:
    return request.query.get("follow", "1").lower() not in ("0", "false", "no")


async def events(request: web.Request) -> web.StreamResponse:
    log = request.app[SUPERVISOR].events
    since = _int_param(request, "since", request.query.get("since"))
    if since is None:
        since = _int_param(request, "Last-Event-ID", request.headers.get("Last-Event-ID"))
    limit = _int_param(request, "limit", request.query.get("limit"))
    actor = request.query.get("actor") or None
    ndjson = "application/x-ndjson" in request.headers.get("Accept", "")
    if since is None and limit is None:
        limit = DEFAULT_LIMIT
    if not _follow_param(request):
        kept = log.history(since or 0, actor, limit if since is None else None)
        body = "".join(_frame(log, event, ndjson) for event in kept)
        content_type = "application/x-ndjson" if ndjson else "text/event-stream"
        return web.Response(text=body, headers={"Content-Type": content_type})
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson" if ndjson else "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    chunked = request.version >= (1, 1)  # else the body ends when the connection does
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    stream = log.follow(
        since, actor, limit if since is None else None, heartbeat=HEARTBEAT,
        send=_sender(request, ndjson, chunked),
    )  # fmt: skip
    try:
        await response.write(b"" if ndjson else b": events\n\n")  # headers out now
        async for batch in stream:
            if batch is not None:
                text = "".join(_frame(log, event, ndjson) for event in batch)
                await response.write(text.encode())
            elif not ndjson:
                await response.write(b": keep-alive\n\n")
            else:
                await response.write(b"\n")  # NDJSON readers skip blank lines
        await response.write_eof()
    except FollowerOverrun:
        pass  # ends the stream: the reader resumes from its last id
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        await stream.aclose()
    return response


async def streams(request: web.Request) -> web.Response:
    """``GET /v1/streams``: the streams in the journal, newest first.

    ``?actor=NAME`` keeps one actor's, ``?state=running|completed|failed`` one state's,
    ``?limit=N`` the newest N (default 100).
    """
    actor = request.query.get("actor") or None
    state = request.query.get("state") or None
    if state is not None and state not in STREAM_STATES:
        raise bad_request(f"state must be one of {', '.join(STREAM_STATES)}, got {state[:40]!r}")
    limit = _int_param(request, "limit", request.query.get("limit"))
    rows = request.app[STREAMS].listing(actor, DEFAULT_LIMIT if limit is None else limit)
    if actor is not None and not rows:
        request.app[SUPERVISOR].actor_config(actor)  # an unknown actor: 404, not an empty list
    if state is not None:
        rows = [row for row in rows if row["state"] == state]
    return json_response({"schema": 1, "streams": rows})


async def actor_ops(request: web.Request) -> web.Response:
    """``GET /v1/actors/{name}/ops``: the actor's public ops (for shell completion and
    humans): name, kind (ask | stream), parameters, and whether it takes raw messages."""
    from pulsing_daemon.hosts.ops import describe_ops

    config = request.app[SUPERVISOR].actor_config(request.match_info["name"])
    cls = config.cls
    ops = []
    for name, info in sorted(describe_ops(cls).items()) if cls is not None else ():
        params = (
            [p.name for p in info.signature.parameters.values()]
            if info.signature is not None
            else []
        )
        ops.append({"name": name, "kind": info.kind.value, "params": params})
    raw = cls is not None and callable(getattr(cls, "receive", None))
    return json_response({"actor": config.name, "ops": ops, "receive": raw})


def _frame(log: EventLog, event: dict[str, Any], ndjson: bool) -> str:
    return _framed(event["id"], log.text(event), ndjson)


def _framed(event_id: int, text: str, ndjson: bool) -> str:
    """An event's JSON ``text`` as one NDJSON line or one SSE frame."""
    return text + "\n" if ndjson else f"id: {event_id}\ndata: {text}\n\n"


def _sender(request: web.Request, ndjson: bool, chunked: bool) -> Any:
    """``EventLog.follow``'s ``send`` for one response: writes an event to the connection
    from ``emit`` itself, unless the reader is behind (over ``SEND_BUFFER`` unsent)."""

    def send(event_id: int, text: str) -> bool:
        transport = request.transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > SEND_BUFFER
        ):
            return False
        transport.write(_wire(event_id, text, ndjson, chunked))
        return True

    return send


@functools.lru_cache(maxsize=8)
def _wire(event_id: int, text: str, ndjson: bool, chunked: bool) -> bytes:
    """An event as its followers' connections carry it, built once for all of them: an
    SSE or NDJSON frame, on HTTP/1.1 as one chunk of the chunked body (what
    ``StreamResponse.write`` would send)."""
    frame = _framed(event_id, text, ndjson).encode()
    return b"%x\r\n%s\r\n" % (len(frame), frame) if chunked else frame


def add_routes(app: web.Application, expect_handler: Any) -> None:
    app.router.add_get("/v1/events", events, expect_handler=expect_handler)
    app.router.add_get("/v1/streams", streams, expect_handler=expect_handler)
    app.router.add_get("/v1/actors/{name}/ops", actor_ops, expect_handler=expect_handler)
