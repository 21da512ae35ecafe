"""pulsing status [ACTOR...]: state, restarts, mailbox, outcomes and last error per actor."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, completion, run, settings

EPILOG = """Examples:

  pulsing status

  pulsing status worker --json | jq '.actors[0].restarts'

  pulsing status 'worker-*' cache

  pulsing status --check || page-me "an actor is failed"

  pulsing status --watch --interval 0.5

Exit status: 0; 4 with --check when a shown actor is failed; 6 runtime (unknown
actor, a pattern matching nothing, daemon unreachable at the start). With --watch
a daemon that goes away is waited for (said on stderr, with the time)."""


def status(
    ctx: typer.Context,
    actors: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(
            metavar="[ACTOR...]",
            help="Only these actors: names or quoted shell patterns ('worker-*').",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ] = None,
    every: Annotated[
        bool,
        typer.Option("--all", "-A", help="Every actor (the default).", show_default=False),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 4 when an actor shown is failed (0 otherwise); for scripts and monitors.",
            show_default=False,
        ),
    ] = False,
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
    words = [] if every else list(actors or [])

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        import asyncio
        import time

        from pulsing_daemon.exceptions import PulsingRuntimeError

        away_since: float | None = None
        back = ""  # when the daemon last came back, for a repainted screen
        shown = False
        async with options.client() as client:
            while True:
                try:
                    payload, problems = await _fetch(client, words)
                except PulsingRuntimeError as error:
                    # Watching, a daemon that goes away (a restart) is waited for.
                    if not (watch and shown and _unreachable(error)):
                        raise
                    if away_since is None:
                        away_since = time.time()
                        out.notice(
                            f"{_clock()} daemon unreachable at {client.endpoint}; "
                            f"waiting for it (last status above)"
                        )
                    await asyncio.sleep(min(interval, 1.0))
                    continue
                if away_since is not None:
                    pid = payload.get("daemon", {}).get("pid")
                    back = (
                        f"{_clock()} daemon is back (pid {pid}, away "
                        f"{time.time() - away_since:.1f}s)"
                    )
                    out.notice(back)
                    away_since = None
                repaint = watch and not out.json_mode and out.rich_out
                if repaint:
                    out.console().clear()
                out.status(payload, traceback=len(words) == 1)
                if repaint and back:
                    out.notice(back)  # the screen was cleared: keep the last gap in view
                for name, error in problems:
                    out.actor_error(name, error)
                shown = True
                code = _exit_code(payload, problems, check)
                if check and code == 4 and not out.json_mode:
                    failed = [a["name"] for a in payload["actors"] if a.get("state") == "failed"]
                    out.notice("failed: " + ", ".join(failed))
                if not watch:
                    return code
                await asyncio.sleep(interval)

    run(options, main, follows=watch)


async def _fetch(client, words: list[str]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:  # type: ignore[no-untyped-def]
    """The status payload for the words, and (name, error) for those that select nothing."""
    from pulsing_cli.bulk import is_bulk, no_match, select

    if len(words) == 1 and not is_bulk(words, False):
        return await client.status(words[0]), []  # one name: the daemon's own answer
    payload = await client.status()
    if not words:
        return payload, []
    from pulsing_daemon.exceptions import PulsingRuntimeError

    by_name = {actor["name"]: actor for actor in payload.get("actors", [])}
    selection = select(words, list(by_name))
    payload["actors"] = [by_name[name] for name in selection.names if name in by_name]
    known = ", ".join(by_name) or "none"
    problems: list[tuple[str, Any]] = [
        (name, PulsingRuntimeError(f"unknown actor {name!r} (actors: {known})", status=404))
        for name in selection.names
        if name not in by_name
    ]
    problems += [(word, no_match(word, list(by_name))) for word in selection.unmatched]
    return payload, problems


def _exit_code(payload: dict[str, Any], problems: list[tuple[str, Any]], check: bool) -> int:
    from pulsing_cli.bulk import worst
    from pulsing_cli.exit import ExitStatus, exit_for

    codes = [int(exit_for(error.category)) for _, error in problems]
    if check and any(actor.get("state") == "failed" for actor in payload.get("actors", [])):
        codes.append(int(ExitStatus.SYSTEM))
    return worst(codes)


def _unreachable(error: Any) -> bool:
    """The daemon could not be reached or dropped the connection (not an error answer)."""
    return error.recoverable and "sent" in error.extra


def _clock() -> str:
    import time

    return time.strftime("%H:%M:%S")
