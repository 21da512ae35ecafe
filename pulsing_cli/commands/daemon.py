"""pulsing daemon: run the daemon in the foreground."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

EPILOG = """Examples:

  pulsing daemon --config pulsing.toml.example

  pulsing daemon -c /etc/pulsing/pulsing.toml --listen unix:/run/pulsing/pulsing.sock

SIGTERM or SIGINT: stop taking new work, let accepted asks finish within grace_period,
stop the actors, flush durable state, exit 0."""


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
) -> None:
    """Run the daemon in the foreground, hosting the actors of a config file."""
    from pulsing_daemon.server import main

    raise typer.Exit(main(config, listen=listen, log_level=log_level))
