"""The ``pulsing`` command: wiring only. Each verb lives in ``pulsing_cli/commands``."""

from __future__ import annotations

from typing import Annotated

import typer

from pulsing_cli.commands import ask, config, control, daemon, status, stream
from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, Settings, TokenOpt

app = typer.Typer(
    name="pulsing",
    help=(
        "Supervise actors with restart policies, deadlines, error categories and "
        "resumable streams. See `man pulsing`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from pulsing_daemon import __version__

        print(f"pulsing {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Supervise actors with restart policies, deadlines, error categories and resumable streams."""
    ctx.obj = Settings(endpoint=endpoint, token=token, json=json_output, debug=debug)


app.command("ask", epilog=ask.EPILOG)(ask.ask)
app.command("stream", epilog=stream.EPILOG)(stream.stream)
app.command("status", epilog=status.EPILOG)(status.status)
for _action in ("restart", "stop", "start"):
    app.command(_action, epilog=control.EPILOGS[_action])(control.make_control(_action))
app.command("daemon", epilog=daemon.EPILOG)(daemon.daemon)
app.add_typer(config.config_app)


def main() -> None:
    from pulsing_cli.fastparams import install

    install()
    app()


if __name__ == "__main__":
    main()
