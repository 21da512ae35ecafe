"""pulsing ask ACTOR OP [ARG...]: one ask with a deadline, optional retries and key."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pulsing_cli.context import (
    ArgsArg,
    DataOpt,
    DebugOpt,
    EndpointOpt,
    JsonOpt,
    TokenOpt,
    call_arguments,
    completion,
    run_blocking,
    settings,
)

EPILOG = """Examples:

  pulsing ask worker work x=5 --timeout 10

  pulsing ask echo echo '{"a": [1, 2]}' --json

  pulsing ask flaky call --retries 3

  pulsing ask counter incr --idempotency-key order-42 by=2

Exit status: 0 ok, 2 usage, 3 business, 4 system, 5 unsupported, 6 runtime,
124 timeout, 130 interrupted."""


def ask(
    ctx: typer.Context,
    actor: Annotated[
        str,
        typer.Argument(
            metavar="ACTOR",
            help="Actor name, as in the config.",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ],
    op: Annotated[
        str,
        typer.Argument(
            metavar="OP",
            help="Op (a public method of the actor).",
            show_default=False,
            autocompletion=completion.ask_ops,
        ),
    ],
    words: ArgsArg = None,
    timeout: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            "--timeout",
            "-t",
            min=0.001,
            help="Deadline in seconds [default: the actor's timeout].",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            "-r",
            min=0,
            help="Retry timeouts, recoverable system and runtime errors with jittered backoff.",
        ),
    ] = 0,
    idempotency_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--idempotency-key",
            "-k",
            help="Run at most once per key (generated when --retries is given without one).",
            show_default=False,
        ),
    ] = None,
    data: DataOpt = None,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Ask an actor to run an op and print the result."""
    options = settings(ctx, endpoint, token, json_output, debug)

    # One request, one answer: blocking, without an event loop (see oneshot.py).
    def main(out) -> int:  # type: ignore[no-untyped-def]
        from pulsing_cli.asks import new_idempotency_key
        from pulsing_cli.oneshot import retry

        args, kwargs = call_arguments(words, data)
        key = idempotency_key
        if retries and not key:
            key = new_idempotency_key()
        client = options.oneshot_client()

        def announce(attempt: int, error, delay: float) -> None:  # type: ignore[no-untyped-def]
            out.notice(
                f"retry {attempt}/{retries} in {delay:.2f}s after {error.category} error: "
                f"{error.message}"
            )

        result = retry(
            lambda: client.ask(actor, op, args, kwargs, timeout=timeout, idempotency_key=key),
            retries,
            on_retry=announce,
        )
        meta = dict(result.meta)
        if key and idempotency_key is None and options.json:
            meta.setdefault("idempotency_key", key)
        out.result(result.value, meta)
        return 0

    run_blocking(options, main)
