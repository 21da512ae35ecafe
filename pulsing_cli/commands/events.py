"""pulsing events [-f] [--actor A]: what happened to the actors, from the daemon's event log."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, completion, run, settings

EPILOG = """Examples:

  pulsing events

  pulsing events -f --actor worker

  pulsing events --since 120 --json | jq -c 'select(.kind=="failed")'

Each event has an id that keeps growing across daemon restarts; --since ID prints
the events after it. With -f a daemon restart is ridden through (said on stderr,
with the time) and nothing is missed or printed twice while the history keeps it."""


def events(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new events until Ctrl-C.", show_default=False
        ),
    ] = False,
    actor: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--actor",
            "-a",
            help="Only this actor's events.",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ] = None,
    since: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--since", min=0, help="Only events after this id.", show_default=False),
    ] = None,
    lines: Annotated[
        int,
        typer.Option(
            "--lines",
            "-n",
            min=0,
            help="Without --since: how many of the newest kept events to print first.",
        ),
    ] = 20,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print the daemon's events: state changes, failures, restarts, give-ups, operator actions."""
    options = settings(ctx, endpoint, token, json_output, debug)

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        from pulsing_cli.events import events as read_events
        from pulsing_cli.render import event_line

        async with options.client() as client:
            async for event in read_events(
                client, since=since, actor=actor, limit=lines, follow=follow, on_gap=out.notice
            ):
                if out.json_mode:
                    out.json(event)
                else:
                    out.line(event_line(event))
        return 0

    run(options, main, follows=follow)
