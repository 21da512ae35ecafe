"""pulsing streams [--actor A]: the streams in the daemon's journal, to find one to resume."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, completion, run, settings

EPILOG = """Examples:

  pulsing streams

  pulsing streams --actor streamer --state failed

  pulsing streams --json | jq -r '.streams[] | select(.key=="job-1") | .id'

Newest first. To pick one up again: pulsing stream --id ID --resume N, with N at
most LAST+1 (past the end of a finished stream is a usage error, exit 2)."""

STATES = ("running", "completed", "failed")


def streams(
    ctx: typer.Context,
    actor: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--actor",
            "-a",
            help="Only this actor's streams.",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ] = None,
    state: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--state",
            help="Only streams in this state: running, completed or failed.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many of the newest streams to list.")
    ] = 100,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the streams in the journal: id, key, actor, op, state, last seq, started/ended."""
    options = settings(ctx, endpoint, token, json_output, debug)
    if state is not None and state not in STATES:
        from pulsing_cli.context import fail_usage

        fail_usage(options, f"--state must be one of {', '.join(STATES)}, got {state!r}")

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        from urllib.parse import urlencode

        from pulsing_cli.render import streams_table

        query: dict[str, str | int] = {"limit": limit}
        if actor:
            query["actor"] = actor
        if state:
            query["state"] = state
        async with options.client() as client:
            payload = await client.get_json("/v1/streams?" + urlencode(query))
        if out.json_mode:
            out.json(payload)
        else:
            for line in streams_table(payload.get("streams", [])):
                out.line(line)
        return 0

    run(options, main)
