"""pulsing daemon: run the daemon in the foreground."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from pulsing_cli.exit import ExitStatus

EPILOG = """Examples:

  pulsing daemon --config pulsing.toml.example

  pulsing daemon -c /etc/pulsing/pulsing.toml -l unix:/run/pulsing/sock

SIGTERM or SIGINT: stop taking new work, let accepted asks finish within
grace_period, stop the actors, flush durable state, exit 0. Exit status: 0
after a clean stop, 1 when it cannot start (address in use, bad state_dir),
2 for an invalid config."""

LOG_LEVELS = ("debug", "info", "warning", "error")


def daemon(
    config: Annotated[
        str,
        typer.Option(
            "--config",
            "-c",
            envvar="PULSING_CONFIG",
            help="The TOML config file.",
        ),
    ] = "pulsing.toml",
    listen: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--listen",
            "-l",
            help="Override [daemon] listen (HOST:PORT or unix:/path).",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Log JSON lines instead of logfmt.", show_default=False),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Log at debug level, with tracebacks of internal errors.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Run the daemon in the foreground, hosting the actors of a config file."""
    if debug:
        log_level = "debug"
    if log_level.lower() not in LOG_LEVELS:
        print(
            f"pulsing daemon: --log-level must be one of {', '.join(LOG_LEVELS)}",
            file=sys.stderr,
        )
        raise typer.Exit(ExitStatus.USAGE)
    from pulsing_daemon.server import main

    raise typer.Exit(main(config, listen=listen, log_level=log_level, json_logs=json_output))
