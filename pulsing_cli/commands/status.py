"""pulsing status [ACTOR]: state, restarts, mailbox, outcomes and last error per actor."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, run, settings

EPILOG = """Examples:

  pulsing status

  pulsing status worker --json | jq '.actors[0].restarts'

  pulsing status --watch --interval 0.5"""


def status(
    ctx: typer.Context,
    actor: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(metavar="ACTOR", help="Only this actor.", show_default=False),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.", show_default=False)
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show each actor's state, restarts (n/max), mailbox, outcome counts and last error."""
    options = settings(ctx, endpoint, token, json_output, debug)

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        import asyncio

        async with options.client() as client:
            while True:
                payload = await client.status(actor)
                if watch and not out.json_mode and out.rich_out:
                    out.console().clear()
                out.status(payload, traceback=actor is not None)
                if not watch:
                    return 0
                await asyncio.sleep(interval)

    run(options, main)
