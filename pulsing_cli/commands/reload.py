"""pulsing reload [--dry-run]: make the daemon re-read its config file and apply the change."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, TokenOpt, run, settings

EPILOG = """Examples:

  pulsing reload --dry-run

  pulsing reload

  pulsing reload --json | jq -r '.restarted[]'

The daemon re-reads the file it was started with (pulsing status shows which).
All or nothing: a file with any problem changes nothing; the problems are printed
as by `pulsing config check`. Added actors start, removed ones stop after their
current message, supervision keys apply to the running instance, other actor keys
restart that actor once, untouched actors are not touched. SIGHUP to the daemon
does the same. Exit status: 0 reloaded (or planned, with --dry-run), 2 problems
in the file (nothing changed), 6 runtime (daemon unreachable, shutting down)."""

# The plan's lists, in the order they are printed, with their human heading.
SECTIONS = (
    ("added", "added (created)"),
    ("removed", "removed (stopped)"),
    ("updated", "updated live"),
    ("restarted", "restarted"),
    ("daemon_updated", "daemon keys applied"),
    ("needs_daemon_restart", "need a daemon restart (kept as they run)"),
)


def reload(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", "-n", help="Print what would change; change nothing.", show_default=False
        ),
    ] = False,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Re-read the daemon's config file and apply what changed, without a daemon restart."""
    options = settings(ctx, endpoint, token, json_output, debug)

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        from pulsing_cli.exit import ExitStatus
        from pulsing_daemon.exceptions import PulsingError

        async with options.client() as client:
            try:
                plan = await client.reload(dry_run=dry_run)
            except PulsingError as error:
                if error.type != "ConfigError" or "problems" not in error.extra:
                    raise
                _problems(out, error.extra)
                return ExitStatus.USAGE
        if out.json_mode:
            out.json(plan)
        else:
            _plan(out, plan)
        return 0

    run(options, main)


def _problems(out: Any, body: dict[str, Any]) -> None:
    """As `pulsing config check` prints them (its --json shape, plus "changed": false)."""
    problems = body.get("problems") or []
    file = body.get("file", "config")
    if out.json_mode:
        out.json({"file": file, "valid": False, "changed": False, "problems": problems})
        return
    for p in problems:
        where = file if p.get("line") is None else f"{p.get('file', file)}:{p['line']}"
        out.stderr.write(
            f"{where}: {p['key']}: {p['reason']}\n" if p.get("key") else f"{where}: {p['reason']}\n"
        )
    out.stderr.write(
        f"{file}: {len(problems)} problem(s); nothing changed, the daemon keeps its config\n"
    )
    out.stderr.flush()


def _plan(out: Any, plan: dict[str, Any]) -> None:
    changes = plan.get("changes") or {}
    head = "dry run, nothing changed: " if plan.get("dry_run") else "reloaded "
    out.line(f"{head}{plan.get('config', '')}".rstrip())
    nothing = True
    for key, heading in SECTIONS:
        names = plan.get(key) or []
        if not names:
            continue
        nothing = False
        shown = [
            f"{name} ({', '.join(changes[name])})" if name in changes else name for name in names
        ]
        out.line(f"  {heading}: {', '.join(shown)}")
    unchanged = len(plan.get("unchanged") or [])
    out.line(f"  unchanged: {unchanged} actor(s)" if not nothing else "  no changes")
