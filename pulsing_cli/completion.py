"""Shell completion of actor names, ops and op arguments, asked of a running daemon.

Typer/click call these while completing (``_PULSING_COMPLETE`` set); a plain
``pulsing ask`` never imports this module's work, only the function references.
The daemon is asked with a short timeout; when none answers, nothing is offered
(the shell then completes as it would without us). Nothing here ever prints.
"""

from __future__ import annotations

from typing import Any

ANSWER_WITHIN = 0.5  # seconds: a completion that waits longer is worse than none


def _endpoint_and_token(ctx: Any) -> tuple[str | None, str | None]:
    """--endpoint/--token given on the line so far (the verb's own, else the root's)."""
    endpoint = token = None
    while ctx is not None:
        params = getattr(ctx, "params", None) or {}
        endpoint = endpoint or params.get("endpoint")
        token = token or params.get("token")
        ctx = ctx.parent
    return endpoint, token


def _get(ctx: Any, path: str) -> Any:
    """GET a JSON document from the daemon, or None when it does not answer in time."""
    import asyncio

    from pulsing_cli.client import Client

    endpoint, token = _endpoint_and_token(ctx)

    async def fetch() -> Any:
        async with Client(endpoint, token, connect_timeout=ANSWER_WITHIN) as client:
            return await asyncio.wait_for(client.get_json(path), ANSWER_WITHIN)

    try:
        return asyncio.run(fetch())
    except Exception:
        return None


def actor_names(ctx: Any, incomplete: str) -> list[str]:
    """The daemon's actor names that start with ``incomplete``."""
    payload = _get(ctx, "/v1/status")
    names = [a.get("name", "") for a in (payload or {}).get("actors", [])]
    return [name for name in names if name.startswith(incomplete)]


def _ops(ctx: Any) -> list[dict[str, Any]]:
    from urllib.parse import quote

    actor = (ctx.params or {}).get("actor")
    if not actor:
        return []
    payload = _get(ctx, f"/v1/actors/{quote(actor, safe='')}/ops")
    return list((payload or {}).get("ops", []))


def ask_ops(ctx: Any, incomplete: str) -> list[str]:
    """Ops of the actor named earlier on the line that ``pulsing ask`` can call."""
    return [o["name"] for o in _ops(ctx) if o["kind"] == "ask" and o["name"].startswith(incomplete)]


def stream_ops(ctx: Any, incomplete: str) -> list[str]:
    """Streaming ops of the actor named earlier on the line."""
    return [
        o["name"] for o in _ops(ctx) if o["kind"] == "stream" and o["name"].startswith(incomplete)
    ]


def op_arguments(ctx: Any, incomplete: str) -> list[str]:
    """``name=`` for each parameter of the op named earlier that is not given yet."""
    op = (ctx.params or {}).get("op")
    if not op or "=" in incomplete:
        return []
    given = {word.partition("=")[0] for word in (ctx.params or {}).get("words") or []}
    for info in _ops(ctx):
        if info["name"] == op:
            return [
                f"{name}="
                for name in info.get("params", [])
                if name not in given and f"{name}=".startswith(incomplete)
            ]
    return []
