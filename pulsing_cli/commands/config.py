"""pulsing config check FILE: validate a config the way the daemon would."""

from __future__ import annotations

from typing import Annotated

import typer

from pulsing_cli.context import DebugOpt, JsonOpt, settings
from pulsing_cli.exit import ExitStatus

config_app = typer.Typer(
    name="config", help="Work with config files.", no_args_is_help=True, rich_markup_mode=None
)


@config_app.command(
    "check",
    epilog=(
        "Example:\n\n  pulsing config check pulsing.toml\n\nExit status: 0 valid, 2 problems found."
    ),
)
def check(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="The TOML config file.", show_default=False)
    ],
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Report every problem of a config file (syntax, keys, types, values, classes) at once."""
    import json
    import sys

    from pulsing_daemon.config import check_config

    options = settings(ctx, json=json_output, debug=debug)
    try:
        problems = check_config(file)
    except Exception as exc:  # a bug in the checker itself
        if options.debug:
            raise
        print(
            f"pulsing: internal error checking {file}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        raise typer.Exit(ExitStatus.FAILURE) from None
    if options.json:
        print(
            json.dumps(
                {
                    "file": file,
                    "valid": not problems,
                    "problems": [
                        {"file": p.file, "key": p.key, "line": p.line, "reason": p.reason}
                        for p in problems
                    ],
                }
            )
        )
    elif problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{file}: {len(problems)} problem(s)", file=sys.stderr)
    else:
        print(f"{file}: ok")
    raise typer.Exit(ExitStatus.USAGE if problems else ExitStatus.OK)
