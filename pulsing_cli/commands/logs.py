"""pulsing logs ACTOR [-f] [-n N] [--since ...]: what one actor wrote, and what happened to it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, run, settings

EPILOG = """Examples:

  pulsing logs worker

  pulsing logs worker -f

  pulsing logs worker --since 10m

  pulsing logs worker -n 20 --json | jq -r .text

Streams: stdout and stderr (what the instance printed), log (records of Python's
logging), event (the daemon's account: state changes, failures with their
traceback, restarts). With -f a daemon restart is ridden through (said on stderr,
with the time) and no line is printed twice."""


def logs(
    ctx: typer.Context,
    actor: Annotated[str, typer.Argument(metavar="ACTOR", help="The actor.", show_default=False)],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until Ctrl-C.", show_default=False
        ),
    ] = False,
    lines: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--lines",
            "-n",
            min=0,
            help="How many of the newest lines to print [default: 100; all with --since].",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--since",
            help="Only lines from then on: 10m, 30s, 2h, 1d ago, or an ISO time.",
            show_default=False,
        ),
    ] = None,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print an actor's logs: its output, its logging records and the daemon's events about it."""
    options = settings(ctx, endpoint, token, json_output, debug)
    if since is not None:
        from pulsing_cli.context import fail_usage
        from pulsing_daemon.storage.stamps import parse_since

        try:
            parse_since(since)
        except ValueError as exc:
            fail_usage(options, f"--since: {exc}")

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        from pulsing_cli.logs import actor_logs
        from pulsing_cli.render import log_line

        count = lines if lines is not None or since is not None else 100
        async with options.client() as client:
            async for record in actor_logs(
                client, actor, lines=count, since=since, follow=follow, on_gap=out.notice
            ):
                if out.json_mode:
                    out.json(record)
                else:
                    out.line(log_line(record))
        return 0

    run(options, main, follows=follow)
