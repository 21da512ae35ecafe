"""Global options, merged settings, and the one error boundary of every command.

Global options are accepted both before the verb (``pulsing --json status``) and
after it (``pulsing status --json``); the verb's own value wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from pulsing_cli.exit import ExitStatus

if TYPE_CHECKING:
    from pulsing_cli.client import Client
    from pulsing_cli.oneshot import OneShotClient
    from pulsing_cli.render import Output


class _Completers:
    """Completion callbacks for Typer that import ``pulsing_cli.completion`` only when a
    shell asks for completions (a plain ``pulsing ask`` never loads it)."""

    def __getattr__(self, name: str) -> Callable[..., list[str]]:
        def complete(ctx: Any, incomplete: str) -> list[str]:
            from pulsing_cli import completion as module

            return getattr(module, name)(ctx, incomplete)

        complete.__name__ = name
        return complete


completion = _Completers()

EndpointOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on Python 3.10
    typer.Option(
        "--endpoint",
        "-e",
        envvar="PULSING_ENDPOINT",
        help="Daemon address: http://HOST:PORT or unix:/path [default: http://127.0.0.1:7480].",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--token",
        envvar="PULSING_TOKEN",
        help="Bearer token for a daemon that requires one.",
        show_default=False,
        show_envvar=True,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout.", show_default=False)
]
DebugOpt = Annotated[
    bool,
    typer.Option(
        "--debug", help="Show Python tracebacks for unexpected errors.", show_default=False
    ),
]


ArgsArg = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        metavar="ARG",
        help="key=value (keyword) or value (positional); values are JSON when they parse.",
        show_default=False,
        autocompletion=completion.op_arguments,
    ),
]
DataOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--data",
        "-d",
        help="Arguments as a JSON object/array, @FILE, or - for stdin.",
        show_default=False,
    ),
]


def call_arguments(words: list[str] | None, data: str | None) -> tuple[list[Any], dict[str, Any]]:
    """The op's (positional, keyword) arguments from ARG words and --data (usage error if bad)."""
    from pulsing_cli.args import ArgumentError, build_arguments

    try:
        return build_arguments(words or [], data)
    except ArgumentError as exc:
        raise UsageError(str(exc)) from None


@dataclass
class Settings:
    endpoint: str | None = None
    token: str | None = None
    json: bool = False
    debug: bool = False
    # Set by a command that wants something printed when interrupted (a resume hint).
    on_interrupt: Callable[[], str | None] | None = None

    def output(self) -> Output:
        from pulsing_cli.render import Output

        return Output(json_mode=self.json)

    def client(self) -> Client:
        from pulsing_cli.client import Client

        check_endpoint(self.endpoint)
        return Client(self.endpoint, self.token)

    def oneshot_client(self) -> OneShotClient:
        """A blocking client for a command that sends one request (no event loop)."""
        from pulsing_cli.oneshot import OneShotClient

        check_endpoint(self.endpoint)
        return OneShotClient(self.endpoint, self.token)


def check_endpoint(endpoint: str | None) -> None:
    """A malformed --endpoint / PULSING_ENDPOINT is a usage error (exit 2), not a runtime one."""
    import os

    from pulsing_cli.http11 import parse_endpoint

    text = endpoint or os.environ.get("PULSING_ENDPOINT")
    if not text:
        return
    try:
        parse_endpoint(text)
    except ValueError as exc:
        raise UsageError(
            f"bad endpoint (--endpoint / PULSING_ENDPOINT): {exc}\n"
            "  hint: use http://HOST:PORT (e.g. http://127.0.0.1:7480) or unix:/path/to/socket"
        ) from None


def settings(
    ctx: typer.Context,
    endpoint: str | None = None,
    token: str | None = None,
    json: bool = False,
    debug: bool = False,
) -> Settings:
    """The command's own global options, falling back to the ones given before the verb.

    An option typed on the command line wins over the environment wherever it is
    typed: ``pulsing -e URL ask ...`` uses URL even with PULSING_ENDPOINT set (the
    command's own ``endpoint`` then holds the environment's value).
    """
    root = ctx.find_root().obj if ctx.find_root().obj is not None else Settings()
    return Settings(
        endpoint=_typed_first(ctx, "endpoint", endpoint, root.endpoint),
        token=_typed_first(ctx, "token", token, root.token),
        json=json or root.json,
        debug=debug or root.debug,
    )


def _typed_first(ctx: typer.Context, name: str, own: str | None, root: str | None) -> str | None:
    """The command's value unless it came from the environment and one was given
    before the verb."""
    if own is None or root is None:
        return own or root
    source = ctx.get_parameter_source(name)  # click's ParameterSource (by name: Typer
    from_env = getattr(source, "name", None) == "ENVIRONMENT"  # may bring its own click)
    return root if from_env else own


def run(
    options: Settings,
    main: Callable[[Output], Awaitable[int | None]],
    *,
    follows: bool = False,
) -> NoReturn:
    """Run a command's coroutine; turn every outcome into output and an exit status.

    ``follows``: the command waits for things to print (``events -f``, ``logs -f``,
    ``status --watch``); when its output is a pipe whose reader goes away (``| head``),
    it ends at once, quietly, instead of at its next write -- which may never come.
    """

    def on_loop(out: Output) -> int | None:
        import asyncio

        return asyncio.run(_until_reader_gone(main(out)) if follows else main(out))

    run_blocking(options, on_loop)


def run_blocking(options: Settings, main: Callable[[Output], int | None]) -> NoReturn:
    """Run a command's blocking body (no event loop: ``pulsing ask``); the same
    boundary as ``run``: every outcome becomes output and an exit status."""
    from pulsing_daemon.exceptions import PulsingError

    out = options.output()
    try:
        code = main(out)
    except KeyboardInterrupt:
        message = options.on_interrupt() if options.on_interrupt else None
        out.notice(message or "interrupted")
        raise typer.Exit(ExitStatus.INTERRUPTED) from None
    except PulsingError as error:
        if options.debug:
            import traceback

            traceback.print_exc()
        out.error(error)
        from pulsing_cli.exit import exit_for

        raise typer.Exit(exit_for(error.category)) from None
    except UsageError as error:
        out.usage_error(str(error))
        raise typer.Exit(ExitStatus.USAGE) from None
    except BrokenPipeError:
        quiet_broken_pipe()
    except RecursionError:
        # Arguments nested past Python's recursion limit (checked where they are parsed;
        # this catches a value built deeper than that on the way out).
        out.usage_error("arguments nested too deeply (flatten the value)")
        raise typer.Exit(ExitStatus.USAGE) from None
    except Exception as exc:
        if options.debug:
            raise
        out.usage_error(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)"
        )
        raise typer.Exit(ExitStatus.FAILURE) from None
    raise typer.Exit(int(code or 0))


async def _until_reader_gone(main: Awaitable[int | None]) -> int | None:
    """Run ``main``; raise BrokenPipeError if stdout is a pipe whose reader closes first.

    The write end of a pipe polls as an error once no reader is left, which the event
    loop reports to a reader callback on that descriptor. Only for a pipe: a terminal's
    descriptor also polls readable when the user types.
    """
    import asyncio
    import os
    import stat
    import sys

    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdout.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError):
        is_pipe = False
    gone = loop.create_future()
    watching = False
    if is_pipe:
        try:
            loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
            watching = True
        except (OSError, ValueError):
            pass
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if watching:
            loop.remove_reader(fd)
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait((task,))
    raise BrokenPipeError


def quiet_broken_pipe() -> NoReturn:
    """The reader of stdout went away (``| head``): end quietly, as Unix tools do.

    Later writes (and the interpreter's final flush) go to /dev/null, so nothing is
    printed about it; the exit status is 0, as a tool that was told "enough".
    """
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise typer.Exit(ExitStatus.OK)


class UsageError(Exception):
    """Bad command-line input found after parsing (bad --data JSON, ...): exit 2."""


def fail_usage(options: Settings, message: str) -> NoReturn:
    options.output().usage_error(message)
    raise typer.Exit(ExitStatus.USAGE)
