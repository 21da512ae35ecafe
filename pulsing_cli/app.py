"""The ``pulsing`` command: wiring only. Each verb lives in ``pulsing_cli/commands``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pulsing_cli.context import DebugOpt, EndpointOpt, JsonOpt, Settings, TokenOpt

COMMANDS = (
    "ask", "stream", "status", "restart", "stop", "start",
    "events", "wait", "streams",  # ops (issue 14)
    "logs",  # issue 13
    "daemon", "man", "config",
)  # fmt: skip

# Global options that take a value: skipped, with it, when looking for the command.
_VALUE_OPTIONS = frozenset({"--endpoint", "-e", "--token"})


def _version(value: bool) -> None:
    if value:
        from pulsing_daemon import __version__

        # The distribution's name too: "pulsing" on the package index is another project.
        print(f"pulsing {__version__} (pulsing-supervisor)")
        raise typer.Exit()


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


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer app, with every command or (for a fast start-up) just ``only``.

    Typer turns each registered command into a click command on every run, from its
    signature; for ``pulsing ask`` doing that for the other seven commands (and
    importing their modules) took a sixth of the start-up time.
    """
    app = typer.Typer(
        name="pulsing",
        help=(
            "Supervise actors with restart policies, deadlines, error categories and "
            "resumable streams. See `man pulsing`."
        ),
        no_args_is_help=True,
        # --install-completion / --show-completion (bash, zsh, fish) on the whole app
        # only: Typer builds them with shellingham and friends, which `pulsing ask`
        # (built alone, see invoked_command) does not need to import.
        add_completion=only is None,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for name in COMMANDS if only is None else (only,):
        _register(app, name)
    return app


def _register(app: typer.Typer, name: str) -> None:
    """Import one command's module and add the command (in COMMANDS order: help's order)."""
    if name == "ask":
        from pulsing_cli.commands import ask

        app.command("ask", epilog=ask.EPILOG)(ask.ask)
    elif name == "stream":
        from pulsing_cli.commands import stream

        app.command("stream", epilog=stream.EPILOG)(stream.stream)
    elif name == "status":
        from pulsing_cli.commands import status

        app.command("status", epilog=status.EPILOG)(status.status)
    elif name in ("restart", "stop", "start"):
        from pulsing_cli.commands import control

        app.command(name, epilog=control.EPILOGS[name])(control.make_control(name))
    elif name == "daemon":
        from pulsing_cli.commands import daemon

        app.command("daemon", epilog=daemon.EPILOG)(daemon.daemon)
    elif name == "config":
        from pulsing_cli.commands import config

        app.add_typer(config.config_app)
    elif name == "man":
        from pulsing_cli.commands import man

        app.command("man", epilog=man.EPILOG)(man.man)
    elif name in ("events", "wait", "streams"):
        _register_ops(app, name)
    elif name == "logs":
        from pulsing_cli.commands import logs

        app.command("logs", epilog=logs.EPILOG)(logs.logs)
    else:
        raise ValueError(f"unknown command {name!r}")


def _register_ops(app: typer.Typer, name: str) -> None:
    """The day-to-day commands of CONTRACT §9 (issue 14)."""
    if name == "events":
        from pulsing_cli.commands import events

        app.command("events", epilog=events.EPILOG)(events.events)
    elif name == "wait":
        from pulsing_cli.commands import wait

        app.command("wait", epilog=wait.EPILOG)(wait.wait)
    else:
        from pulsing_cli.commands import streams

        app.command("streams", epilog=streams.EPILOG)(streams.streams)


def invoked_command(argv: list[str]) -> str | None:
    """The command ``argv`` runs, when it names one of ours after the global options.

    None for anything else (no command, ``--help`` or ``--version`` first, an unknown
    word): those get the whole app, so root help and "No such command" stay complete.
    """
    args = iter(argv)
    for arg in args:
        if arg in _VALUE_OPTIONS:
            next(args, None)
        elif arg in ("-h", "--help", "--version", "--"):
            return None
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main() -> None:
    from pulsing_cli.fastparams import install

    install()
    build_app(invoked_command(sys.argv[1:]))()


def __getattr__(name: str) -> typer.Typer:
    # ``pulsing_cli.app.app`` is the whole app (man pages, tests), built when asked for.
    if name == "app":
        return build_app()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
