"""pulsing wait [ACTOR...] [--timeout S]: block until the daemon answers and actors run."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, completion, run, settings

EPILOG = """Examples:

  pulsing wait && pulsing ask echo ping

  pulsing wait worker --timeout 60

Without ACTOR, waits for every autostart actor. An actor that is failed (the
policy gave up) ends the wait at once with exit 4: it will not run until an
operator restarts it.

Exit status: 0 ready, 4 an actor is failed, 6 runtime (unknown actor),
124 timeout (the daemon or the actors were not ready in time)."""

POLL = 0.05  # seconds between checks


def wait(
    ctx: typer.Context,
    actors: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(
            metavar="ACTOR",
            help="Actors that must be running (default: every autostart actor).",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=0.0, help="Seconds to wait at most.")
    ] = 30.0,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Wait until the daemon answers and the actors are running (for scripts and units)."""
    options = settings(ctx, endpoint, token, json_output, debug)

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        import asyncio

        from pulsing_cli.client import Client
        from pulsing_cli.exit import ExitStatus
        from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        why = "daemon not reachable"
        from pulsing_cli.context import check_endpoint

        check_endpoint(options.endpoint)
        async with Client(options.endpoint, options.token, connect_timeout=1.0) as client:
            while True:
                try:
                    payload = await asyncio.wait_for(
                        client.status(), max(0.1, deadline - loop.time())
                    )
                except asyncio.TimeoutError:
                    payload = None
                except PulsingError as error:
                    if error.category != "runtime" or not error.recoverable:
                        raise
                    payload = None
                if payload is not None:
                    verdict, why = _verdict(payload, actors)
                    if verdict == "ready":
                        if out.json_mode:
                            out.json({"ready": True, "actors": _states(payload)})
                        return 0
                    if verdict == "unknown":
                        raise PulsingRuntimeError(why, hint="see `pulsing status`")
                    if verdict == "failed":
                        out.notice(f"pulsing wait: {why}")
                        return ExitStatus.SYSTEM
                if loop.time() >= deadline:
                    out.notice(f"pulsing wait: not ready after {timeout:g}s: {why}")
                    return ExitStatus.TIMEOUT
                await asyncio.sleep(min(POLL, max(0.0, deadline - loop.time())))

    run(options, main)


def _states(payload: dict[str, Any]) -> dict[str, str]:
    return {actor["name"]: actor.get("state", "?") for actor in payload.get("actors", [])}


def _verdict(payload: dict[str, Any], names: list[str] | None) -> tuple[str, str]:
    """("ready" | "waiting" | "failed" | "unknown", why) for one status answer."""
    states = _states(payload)
    if names:
        unknown = [name for name in names if name not in states]
        if unknown:
            known = ", ".join(sorted(states)) or "none"
            return "unknown", f"unknown actor {unknown[0]!r} (actors: {known})"
        wanted = names
    else:
        wanted = [a["name"] for a in payload.get("actors", []) if a.get("autostart", True)]
    failed = [name for name in wanted if states[name] == "failed"]
    if failed:
        return "failed", f"actor {failed[0]} is failed (see `pulsing status {failed[0]}`)"
    pending = [f"{name} is {states[name]}" for name in wanted if states[name] != "running"]
    if pending:
        return "waiting", ", ".join(pending[:3]) + (" ..." if len(pending) > 3 else "")
    return "ready", ""
