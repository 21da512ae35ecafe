"""pulsing stream ACTOR OP [ARG...] | --id STREAM: print a stream's chunks, resuming on drops."""

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
    UsageError,
    call_arguments,
    completion,
    fail_usage,
    run,
    settings,
)

EPILOG = """Examples:

  pulsing stream streamer count n=100 --key job-1

  pulsing stream --id s1a2b3c4d5e6f7a8b --resume 42

  pulsing stream streamer count n=5 --json | jq .data

The stream id is printed on stderr when the stream starts. A dropped connection
is resumed from the last seq printed; Ctrl-C prints the command that resumes."""


def stream(
    ctx: typer.Context,
    actor: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            metavar="ACTOR",
            help="Actor name (omit with --id).",
            show_default=False,
            autocompletion=completion.actor_names,
        ),
    ] = None,
    op: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            metavar="OP",
            help="Streaming op (a generator method).",
            show_default=False,
            autocompletion=completion.stream_ops,
        ),
    ] = None,
    words: ArgsArg = None,
    stream_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--id", help="Attach to an existing stream by id.", show_default=False),
    ] = None,
    key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--key",
            "-k",
            help="Name the stream: the same op and key attach instead of running again.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        int, typer.Option("--resume", min=0, help="Print chunks with seq >= this offset.")
    ] = 0,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Wait for new chunks until the stream ends, or print what is journaled and exit.",
        ),
    ] = True,
    data: DataOpt = None,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start or attach to a stream and print its chunks in order, without gaps or duplicates."""
    options = settings(ctx, endpoint, token, json_output, debug)
    if stream_id is None and (actor is None or op is None):
        fail_usage(options, "give ACTOR and OP, or --id STREAM")
    if stream_id is not None and (actor is not None or words):
        fail_usage(options, "--id attaches to an existing stream; do not also give ACTOR/OP")

    from pulsing_cli.follow import StreamState

    state = StreamState(stream_id, resume)
    base = [f"--endpoint {options.endpoint}"] if options.endpoint else []

    def resume_hint() -> str | None:
        if state.stream is None or state.ended:
            return None
        command = " ".join(
            ["pulsing stream", *base, f"--id {state.stream} --resume {state.next_seq}"]
        )
        return f"interrupted; resume with: {command}"

    options.on_interrupt = resume_hint

    async def main(out) -> int:  # type: ignore[no-untyped-def]
        import json

        from pulsing_cli.client import new_idempotency_key
        from pulsing_cli.follow import chunk_data, follow_batches, start_stream
        from pulsing_daemon.exceptions import PulsingRuntimeError

        async with options.client() as client:
            if state.stream is None:
                assert actor is not None and op is not None
                args, kwargs = call_arguments(words, data)
                state.stream, attached = await start_stream(
                    client, actor, op, args, kwargs, key or new_idempotency_key()
                )
                verb = "attached to" if attached else "started"
                out.notice(f"stream {state.stream} {verb} ({actor}.{op})")

            def reconnecting(attempt: int, cause: BaseException, delay: float) -> None:
                out.notice(
                    f"connection lost ({cause}); reconnecting in {delay:.2f}s "
                    f"from seq {state.next_seq} (attempt {attempt})"
                )

            # One write and one flush per network read, whatever its number of lines:
            # a line is on stdout as soon as the reader would wait for more, and a
            # stdout left unbuffered (PYTHONUNBUFFERED) costs a write per read, not
            # per line.
            binary = getattr(out.stdout, "buffer", None)
            write_text = out.stdout.write
            try:
                async for first, lines in follow_batches(
                    client, state, follow=follow, on_reconnect=reconnecting
                ):
                    if out.json_mode:
                        if binary is not None:
                            binary.write(b"\n".join(lines) + b"\n")
                        else:
                            write_text(b"\n".join(lines).decode() + "\n")
                    elif out.rich_out:
                        for seq, line in enumerate(lines, first):
                            out.console().print(f"[dim]{seq:>6}[/dim] ", end="")
                            out.console().print(_plain(chunk_data(line), json), markup=False)
                    else:
                        for line in lines:
                            write_text(_plain(chunk_data(line), json) + "\n")
                    out.stdout.flush()
            except PulsingRuntimeError as error:
                if error.extra.get("reason") != "past_end":
                    raise
                # Nothing will ever come past the end of a finished stream: the offset
                # given is the mistake (exit 2), not the daemon.
                hint = error.extra.get("hint")
                raise UsageError(f"{error.message}" + (f" ({hint})" if hint else "")) from None
            finally:
                out.stdout.flush()
        return 0

    run(options, main)


def _plain(data: object, json_module) -> str:  # type: ignore[no-untyped-def]
    if isinstance(data, str):
        return data
    return json_module.dumps(data, separators=(",", ":"), ensure_ascii=False)
