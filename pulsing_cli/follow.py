"""Following a stream: NDJSON over the client's transport, resumed on every reconnect.

The reader remembers the next ``seq`` it needs; when the connection drops it
reconnects with bounded, jittered backoff and asks for exactly that offset, so no
chunk is lost or delivered twice. The stream ends with its terminal record: a clean
end returns, an error record raises the matching pulsing exception.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pulsing_cli.transport import TransportError
from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError, from_wire
from pulsing_daemon.wire import CHUNK_PREFIX, NDJSON_TYPE, chunk_seq

if TYPE_CHECKING:
    from pulsing_cli.client import Chunk, Client

# Consecutive failed reconnects before giving up (progress resets the count).
MAX_RECONNECTS = 8
RECONNECT_BASE = 0.1
RECONNECT_CAP = 3.0


@dataclass
class StreamState:
    """Where a follower is: the stream id and the next seq it needs."""

    stream: str | None = None
    next_seq: int = 0
    ended: bool = False


async def start_stream(
    client: Client,
    actor: str,
    op: str,
    args: list[Any],
    kwargs: dict[str, Any],
    key: str | None,
) -> tuple[str, bool]:
    """Start (or attach by key) a streaming op; returns (stream id, attached)."""
    payload: dict[str, Any] = {"op": op}
    if args:
        payload.update(args=args, kwargs=kwargs)
    else:
        payload["args"] = kwargs
    headers = {"Idempotency-Key": key} if key else None
    path = f"/v1/actors/{quote(actor, safe='')}/streams"
    failures = 0
    while True:
        try:
            response = await client.request("POST", path, payload, headers=headers)
            break
        except PulsingRuntimeError as error:
            # A keyed start is safe to repeat: a lost answer attaches to what started.
            lost_answer = error.extra.get("sent") is True
            if not key or not lost_answer or failures >= MAX_RECONNECTS:
                raise
            failures += 1
            await asyncio.sleep(min(RECONNECT_CAP, RECONNECT_BASE * 2**failures))
    body = json.loads(response.body)
    return body["stream"], bool(body.get("attached"))


async def follow_lines(
    client: Client,
    state: StreamState,
    *,
    follow: bool = True,
    on_reconnect: Callable[[int, BaseException, float], None] | None = None,
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield ``(seq, raw_line)`` for each chunk from ``state.next_seq`` on.

    The line is the daemon's ``{"seq": N, "data": ...}`` record, undecoded
    (``chunk_data`` decodes it), so a consumer that passes lines through pays no
    JSON parsing per chunk.

    Updates ``state.next_seq`` as chunks are yielded (so an interrupted caller knows
    where to resume), reconnects on drops, and raises the terminal error if any.
    """
    batches = follow_batches(client, state, follow=follow, on_reconnect=on_reconnect)
    try:
        async for first, lines in batches:
            for index, line in enumerate(lines):
                # follow_batches counted the whole batch; a caller that stops inside
                # it has seen only up to this line.
                state.next_seq = first + index + 1
                yield first + index, line
    finally:
        await batches.aclose()


async def follow_batches(
    client: Client,
    state: StreamState,
    *,
    follow: bool = True,
    on_reconnect: Callable[[int, BaseException, float], None] | None = None,
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Yield ``(first_seq, lines)``: the chunk record lines each network read brought,
    undecoded, with the seqs ``first_seq``, ``first_seq + 1``, ... (each line's seq is
    checked), as ``follow_lines`` would yield them one by one.

    ``state.next_seq`` is past the batch when it is yielded; reconnects on drops from
    there, and raises the terminal error if any.
    """
    assert state.stream is not None
    failures = 0
    while True:
        path = f"/v1/streams/{quote(state.stream, safe='')}?from={state.next_seq}"
        if not follow:
            path += "&follow=0"
        progressed = False
        try:
            response = await client.transport.stream(
                "GET", path, headers=client.headers({"Accept": NDJSON_TYPE})
            )
            async with response:
                if response.status >= 400:
                    from pulsing_cli.client import decode_error

                    raise decode_error(await response.read_body(), response.status)
                async for lines in response.iter_line_batches():
                    index, count = 0, len(lines)
                    while index < count:
                        # The common case: a run of records with the next seqs, in the
                        # daemon's own form, checked without parsing.
                        run = _chunk_run(lines, index, state.next_seq)
                        if run:
                            first = state.next_seq
                            state.next_seq += run
                            progressed = True
                            failures = 0
                            yield first, lines if run == count else lines[index : index + run]
                            index += run
                            continue
                        line = lines[index]
                        index += 1
                        if not line:
                            continue
                        seq = chunk_seq(line)
                        if seq is None:
                            record = json.loads(line)
                            seq = record.get("seq")
                        if seq is None:  # the terminal record
                            state.ended = True
                            if "error" in record:
                                raise from_wire(record)
                            return
                        if seq != state.next_seq:
                            raise PulsingRuntimeError(
                                f"stream {state.stream}: expected seq {state.next_seq}, got {seq}"
                            )
                        state.next_seq = seq + 1  # the right seq, written another way
                        progressed = True
                        failures = 0
                        yield seq, [line]
            if not follow:
                return
            # The body ended without a terminal record: the connection was cut.
            cause: BaseException = ConnectionError("stream ended without a terminal record")
        except PulsingError:
            raise
        except (TransportError, OSError, ValueError) as exc:
            if not follow and not progressed:
                raise client.unreachable(exc) from None
            cause = exc
        failures = 0 if progressed else failures + 1
        if failures > MAX_RECONNECTS:
            raise PulsingRuntimeError(
                f"stream {state.stream}: gave up after {MAX_RECONNECTS} reconnects ({cause}); "
                f"resume with --id {state.stream} --resume {state.next_seq}",
                recoverable=True,
                stream=state.stream,
                next_seq=state.next_seq,
            )
        delay = min(RECONNECT_CAP, RECONNECT_BASE * 2**failures) * (0.5 + random.random() / 2)
        if on_reconnect is not None:
            on_reconnect(failures, cause, delay)
        await asyncio.sleep(delay)


def _chunk_run(lines: list[bytes], start: int, seq: int) -> int:
    """How many lines from ``lines[start]`` on are chunk records of the seqs ``seq``,
    ``seq + 1``, ... as the daemon writes them (``{"seq":N,`` first)."""
    run = 0
    for line in islice(lines, start, None):
        if not line.startswith(CHUNK_PREFIX + b"%d," % (seq + run)):
            break
        run += 1
    return run


async def open_stream(
    client: Client,
    actor: str,
    op: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    key: str | None = None,
    resume: int = 0,
    stream_id: str | None = None,
) -> AsyncIterator[Chunk]:
    """Start or attach, then yield ``Chunk(seq, data)`` from ``resume`` on, reconnecting."""
    from pulsing_cli.client import Chunk, new_idempotency_key

    state = StreamState(stream_id, resume)
    if state.stream is None:
        # Always keyed: a start retried after a lost answer attaches instead of re-running.
        state.stream, _ = await start_stream(
            client, actor, op, args, kwargs, key or new_idempotency_key()
        )
    async for seq, line in follow_lines(client, state):
        yield Chunk(seq, chunk_data(line))


def chunk_data(line: bytes) -> Any:
    """The ``data`` of a chunk record line."""
    return json.loads(line).get("data")
