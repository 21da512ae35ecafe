"""pulsing restart|stop|start ACTOR: operator control of one actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, run, settings

HELP = {
    "restart": (
        "Restart an actor now: stop it (on_stop), start a new instance, and reset its restart "
        "count and backoff. Revives a failed actor. Queued asks are kept."
    ),
    "stop": (
        "Stop an actor after its current message (on_stop). Never triggers a restart; queued "
        "asks get a runtime error."
    ),
    "start": "Start a stopped or failed actor (its restart count is kept; see restart).",
}


EPILOGS = {
    "restart": """Examples:

  pulsing restart worker

  pulsing restart worker --json | jq -r '.action.after'

Exit status: 0 done (the new instance may still fail: see pulsing status),
6 runtime (unknown actor, daemon unreachable).""",
    "stop": """Examples:

  pulsing stop worker

Exit status: 0 stopped, 6 runtime (unknown actor, daemon unreachable).""",
    "start": """Examples:

  pulsing start worker

Exit status: 0 started, 6 runtime (unknown actor, daemon unreachable).""",
}


def make_control(action: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        actor: Annotated[
            str, typer.Argument(metavar="ACTOR", help="Actor name.", show_default=False)
        ],
        endpoint: EndpointOpt = None,
        token: TokenOpt = None,
        json_output: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        options = settings(ctx, endpoint, token, json_output, debug)

        async def main(out) -> int:  # type: ignore[no-untyped-def]
            async with options.client() as client:
                payload = await client.control(actor, action)
            if out.json_mode:
                out.json(payload)
            else:
                change = payload.get("action", {})
                out.notice(f"{actor}: {change.get('before')} -> {change.get('after')}")
                out.status(payload)
            return 0

        run(options, main)

    command.__doc__ = HELP[action]
    command.__name__ = action
    return command
