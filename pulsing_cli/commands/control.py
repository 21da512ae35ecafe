"""pulsing restart|stop|start ACTOR... | --all: operator control of actors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Optional

import typer

from pulsing_cli.context import (
    DebugOpt,
    EndpointOpt,
    JsonOpt,
    TokenOpt,
    completion,
    fail_usage,
    run,
    settings,
)

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

  pulsing restart 'worker-*' cache

  pulsing restart --all --json | jq -r '.results[] | select(.ok | not) | .actor'

Several names, quoted shell patterns and --all act on each actor (at once) and
report each one; the exit status is the worst of them.

Exit status: 0 done (the new instance may still fail: see pulsing status),
2 usage, 6 runtime (unknown actor, a pattern matching nothing, daemon unreachable).""",
    "stop": """Examples:

  pulsing stop worker

  pulsing stop 'worker-*'

Exit status: 0 stopped, 2 usage, 6 runtime (unknown actor, a pattern matching
nothing, daemon unreachable); with several actors, the worst of them.""",
    "start": """Examples:

  pulsing start worker

  pulsing start --all

Exit status: 0 started, 2 usage, 6 runtime (unknown actor, a pattern matching
nothing, daemon unreachable); with several actors, the worst of them.""",
}

CONCURRENCY = 16  # actions in flight at once with several actors (each may wait for a start)

ActorsArg = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        metavar="ACTOR...",
        help="Actor names or quoted shell patterns ('worker-*').",
        show_default=False,
        autocompletion=completion.actor_names,
    ),
]
AllOpt = Annotated[
    bool, typer.Option("--all", "-A", help="Every actor of the daemon.", show_default=False)
]


def make_control(action: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        actors: ActorsArg = None,
        every: AllOpt = False,
        endpoint: EndpointOpt = None,
        token: TokenOpt = None,
        json_output: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        options = settings(ctx, endpoint, token, json_output, debug)
        if every and actors:
            fail_usage(options, "give actor names/patterns or --all, not both")
        if not every and not actors:
            fail_usage(options, f"give the actors to {action} (names, 'patterns', or --all)")

        async def main(out) -> int:  # type: ignore[no-untyped-def]
            from pulsing_cli.bulk import is_bulk

            async with options.client() as client:
                if not is_bulk(actors, every):
                    assert actors
                    return await _one(client, out, actors[0], action)
                return await _many(client, out, actors or [], every, action)

        run(options, main)

    command.__doc__ = HELP[action]
    command.__name__ = action
    return command


async def _one(client, out, actor: str, action: str) -> int:  # type: ignore[no-untyped-def]
    """One plain name: the daemon's answer as it is (the shape scripts already read)."""
    payload = await client.control(actor, action)
    if out.json_mode:
        out.json(payload)
    else:
        change = payload.get("action", {})
        out.notice(f"{actor}: {change.get('before')} -> {change.get('after')}")
        out.status(payload)
    return 0


async def _many(client, out, words: list[str], every: bool, action: str) -> int:  # type: ignore[no-untyped-def]
    """Several actors, at once; one result each, in the order they were named."""
    import asyncio

    from pulsing_cli.bulk import Outcome, no_match, select, worst
    from pulsing_daemon.exceptions import PulsingError

    known = [actor["name"] for actor in (await client.status()).get("actors", [])]
    selection = select(words, known, every)

    at_once = asyncio.Semaphore(CONCURRENCY)

    async def act(name: str) -> Outcome:
        async with at_once:
            try:
                return Outcome(name, payload=await client.control(name, action))
            except PulsingError as error:
                return Outcome(name, error=error)

    outcomes = list(await asyncio.gather(*(act(name) for name in selection.names)))
    outcomes += [Outcome(word, error=no_match(word, known)) for word in selection.unmatched]
    if out.json_mode:
        out.json({"schema": 1, "action": action, "results": [o.to_json() for o in outcomes]})
    else:
        for outcome in outcomes:
            if outcome.error is None:
                change = (outcome.payload or {}).get("action", {})
                out.line(f"{outcome.actor}: {change.get('before')} -> {change.get('after')}")
            else:
                out.actor_error(outcome.actor, outcome.error)
    return worst(outcome.exit_code for outcome in outcomes)
