"""``GET /v1/actors/{name}/logs``: one actor's logs (storage/logs.py), oldest first.

Query: ``?lines=N`` (the newest N records, default 100), ``?since=10m|ISO-TIME``
(records at or after it; with ``since`` and no ``lines``, all of them), ``?follow=1``
(then every new record as it is written, until the client goes or the daemon stops).

Without ``follow`` the answer is a JSON object ``{"actor", "lines": [record...]}``, or
NDJSON with ``Accept: application/x-ndjson``. Following, it is Server-Sent Events
(``id:`` = the record's ``at``; ``Last-Event-ID`` resumes after it) or NDJSON with
that Accept header. A record is ``{"at", "actor", "instance", "stream", "text"}``.
An unknown actor is a 404 envelope, as everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from pulsing_daemon.http import SUPERVISOR, bad_request, json_response
from pulsing_daemon.storage.logs import FollowerOverrun
from pulsing_daemon.storage.stamps import parse_since

HEARTBEAT = 15.0  # seconds between keep-alives on an idle follow
DEFAULT_LINES = 100
MAX_LINES = 100_000


def _lines(request: web.Request) -> int | None:
    raw = request.query.get("lines")
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"lines must be an integer, got {raw[:40]!r}") from None
    if not 0 <= value <= MAX_LINES:
        raise bad_request(f"lines must be between 0 and {MAX_LINES}, got {value}")
    return value


def _since(request: web.Request) -> tuple[str | None, bool]:
    """(the stamp to start from, whether records at exactly that stamp were seen)."""
    last_event = request.headers.get("Last-Event-ID", "").strip()
    if last_event:
        return last_event, True
    raw = request.query.get("since")
    if raw is None or not raw.strip():
        return None, False
    try:
        return parse_since(raw), False
    except ValueError as exc:
        raise bad_request(f"since: {exc}") from None


async def actor_logs(request: web.Request) -> web.StreamResponse:
    supervisor = request.app[SUPERVISOR]
    name = request.match_info["name"]
    supervisor.actor_config(name)  # 404 for an unknown actor
    store = supervisor.logs
    lines = _lines(request)
    since, seen = _since(request)
    if lines is None and since is None:
        lines = DEFAULT_LINES
    follow = request.query.get("follow", "0").lower() in ("1", "true", "yes")
    accept = request.headers.get("Accept", "")
    ndjson = "application/x-ndjson" in accept

    def fresh(record: dict[str, Any]) -> bool:
        return not (seen and record.get("at") == since)

    if not follow:
        records = [r for r in store.tail(name, lines, since) if fresh(r)]
        if ndjson:
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return web.Response(text=body, content_type="application/x-ndjson")
        if "text/event-stream" in accept:
            return web.Response(
                text="".join(_sse(r) for r in records), content_type="text/event-stream"
            )
        return json_response({"actor": name, "lines": records})
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson" if ndjson else "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    records = store.follow(name, lines, since, heartbeat=HEARTBEAT)
    try:
        await response.write(b"" if ndjson else b": logs\n\n")  # headers out now
        async for record in records:
            if record is None:
                await response.write(b"\n" if ndjson else b": keep-alive\n\n")
            elif fresh(record):
                text = json.dumps(record, ensure_ascii=False) + "\n" if ndjson else _sse(record)
                await response.write(text.encode())
        await response.write_eof()
    except FollowerOverrun:
        pass  # ends the stream: the reader resumes from its last record
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        await records.aclose()
    return response


def _sse(record: dict[str, Any]) -> str:
    return f"id: {record['at']}\ndata: {json.dumps(record, ensure_ascii=False)}\n\n"


def add_routes(app: web.Application, expect_handler: Any) -> None:
    app.router.add_get("/v1/actors/{name}/logs", actor_logs, expect_handler=expect_handler)
