"""The status page: ``GET /`` and its static files under ``/ui/``, served by the daemon.

Plain HTML, CSS and JavaScript shipped in this package (``static/``): no build step, no
CDN, nothing fetched from another host. ``GET /`` renders the actor table on the server,
so the page reads with scripts off; ``static/app.js`` then keeps it live from
``GET /v1/events`` and adds the actions and drill-downs.

With a token configured, ``/`` and ``/ui/*`` are public (a browser cannot send
``Authorization`` on a navigation) and therefore carry no actor data: the page asks for
the token, keeps it in ``sessionStorage`` and sends it as ``Authorization: Bearer`` on
every API request, the event stream included (read with ``fetch()``, since
``EventSource`` cannot send headers). The token never appears in a URL.

Every answer here has a strict Content-Security-Policy: scripts, styles and connections
only from the daemon itself, no inline script or style, no framing.
"""

from __future__ import annotations

import html
import time
from importlib import resources
from typing import Any

from aiohttp import web

from pulsing_daemon.http import AUTH, status_payload

STATIC = resources.files(__package__) / "static"
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Paths the token check (http.guard) lets through without a token: they hold no actor data.
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
PUBLIC_PREFIX = "/ui/"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATE_LABELS = {
    "running": "running",
    "starting": "starting",
    "backoff": "backoff",
    "stopped": "stopped",
    "failed": "failed",
}
OUTCOMES = ("ok", "business", "system", "timeout", "unsupported")


def is_public(path: str) -> bool:
    """True for the page and its static files (no token needed, no actor data in them)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def duration(seconds: float | None) -> str:
    """``3.2s``, ``4m05s``, ``2h03m``, ``3d04h``; an em dash for none."""
    if seconds is None:
        return "\u2014"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _error_cell(actor: dict[str, Any]) -> str:
    error = actor.get("last_error")
    if not error:
        return "\u2014"
    text = (
        f'<span class="cat cat-{_e(error.get("category"))}">{_e(error.get("category"))}</span> '
        f'<span class="etype">{_e(error.get("type"))}</span>: {_e(error.get("message"))} '
        f'<time datetime="{_e(error.get("at"))}">{_e(error.get("at"))}</time>'
    )
    traceback = (actor.get("last_failure") or {}).get("traceback")
    if traceback:
        text += (
            '<details class="tb"><summary>traceback of the last failure</summary>'
            f"<pre>{_e(traceback)}</pre></details>"
        )
    return text


def _row(actor: dict[str, Any]) -> str:
    name, state = actor["name"], actor["state"]
    counts = actor.get("counts") or {}
    outcome_text = " ".join(f"{key} {counts.get(key, 0)}" for key in OUTCOMES)
    backoff = actor.get("backoff_remaining")
    cells = [
        (
            "Select",
            f'<input type="checkbox" class="pick" value="{_e(name)}" '
            f'aria-label="select {_e(name)}" disabled>',
        ),
        ("Actor", f'<span class="name">{_e(name)}</span>'),
        (
            "State",
            f'<span class="state state-{_e(state)}">{_e(STATE_LABELS.get(state, state))}</span>',
        ),
        (
            "Restarts",
            f"{actor.get('restarts', 0)}/{actor.get('max_restarts', 0)}"
            f' <span class="op-restarts">(operator {actor.get("operator_restarts", 0)})'
            "</span>",
        ),
        ("Backoff", _e(duration(backoff)) if backoff is not None else "\u2014"),
        ("Mailbox", _e(actor.get("mailbox", 0))),
        ("In flight", _e(actor.get("in_flight", 0))),
        ("Outcomes", _e(outcome_text)),
        ("Last error", _error_cell(actor)),
        ("Uptime", _e(duration(actor.get("uptime")))),
    ]
    tds = "".join(
        f'<td data-label="{label}" class="col-{label.lower().replace(" ", "-")}">{body}</td>'
        for label, body in cells
    )
    actions = '<td data-label="Actions" class="col-actions"></td>'
    return f'<tr data-actor="{_e(name)}">{tds}{actions}</tr>'


def render(request: web.Request, payload: dict[str, Any] | None) -> str:
    """The page; ``payload`` None (a token is configured) renders it without actor data."""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    if payload is None:
        header = '<span id="d-summary">a token is needed to see this daemon</span>'
        rows = (
            '<tr class="empty"><td colspan="11">This daemon needs a token. Enable '
            "JavaScript and enter it above, or use <code>pulsing status</code>.</td></tr>"
        )
        health = "unknown"
    else:
        daemon = payload["daemon"]
        failed = [a["name"] for a in payload["actors"] if a["state"] == "failed"]
        health = "degraded" if failed else "ok"
        header = (
            f'<span>version <b id="d-version">{_e(daemon["version"])}</b></span> '
            f'<span>pid <b id="d-pid">{_e(daemon["pid"])}</b></span> '
            f'<span>uptime <b id="d-uptime">{_e(duration(daemon["uptime"]))}</b></span> '
            f'<span>config <b id="d-config">{_e(daemon["config"])}</b></span>'
        )
        rows = "".join(_row(actor) for actor in payload["actors"]) or (
            '<tr class="empty"><td colspan="11">no actors configured</td></tr>'
        )
    return (
        template.replace("{{HEADER}}", header)
        .replace("{{HEALTH}}", health)
        .replace("{{ROWS}}", rows)
        .replace("{{RENDERED}}", _e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())))
    )


async def page(request: web.Request) -> web.Response:
    # With a token (set at start or by a reload) the shell renders no actor data.
    payload = None if request.app[AUTH].token else status_payload(request)
    return web.Response(
        text=render(request, payload),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    content_type = STATIC_TYPES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = (STATIC / name).read_bytes()
    return web.Response(
        body=body,
        headers={**SECURITY_HEADERS, "Content-Type": content_type, "Cache-Control": "no-cache"},
    )


async def favicon(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/favicon.svg")


def add_routes(app: web.Application, expect_handler: Any) -> None:
    app.router.add_get("/", page, expect_handler=expect_handler)
    app.router.add_get("/favicon.ico", favicon, expect_handler=expect_handler)
    app.router.add_get(r"/ui/{file:[a-z0-9_.-]+}", static, expect_handler=expect_handler)
