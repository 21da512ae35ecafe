"""follow_batches / follow_lines: the lines of each network read handled as one batch,
with every seq checked, once and in order across batch boundaries and reconnects."""

from __future__ import annotations

import asyncio

import pytest

from pulsing_cli.client import Client
from pulsing_cli.follow import StreamState, follow_batches, follow_lines
from pulsing_daemon.exceptions import PulsingRuntimeError
from tests.cli.test_transport import raw_server, read_request

HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n"


def record(seq: int) -> bytes:
    return b'{"seq":%d,"data":{"i":%d}}\n' % (seq, seq)


async def send_in_pieces(writer: asyncio.StreamWriter, body: bytes, cuts: list[int]) -> None:
    """``body`` in several reads, cut inside lines at ``cuts``."""
    start = 0
    for cut in [*cuts, len(body)]:
        writer.write(body[start:cut])
        await writer.drain()
        await asyncio.sleep(0.02)
        start = cut


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


def test_once_and_in_order_across_batches_and_a_reconnect() -> None:
    paths: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        paths.append((await read_request(reader)).split(b" ")[1])
        writer.write(HEAD)
        if n == 0:  # 0..9 in three reads cut mid-line, then the connection drops
            body = b"".join(record(i) for i in range(10))
            await send_in_pieces(writer, body + record(10)[:7], [13, 150])
            return
        body = b"".join(record(i) for i in range(10, 15))
        body += b'{"seq": 15, "data": 1}\n'  # a valid record in another form
        body += record(16).replace(b"\n", b"\r\n") + b'{"end":true}\n'
        await send_in_pieces(writer, body, [40])

    async def main() -> None:
        async with raw_server(handler) as (url, _):
            client = Client(url)
            async with client:
                state = StreamState("s1", 0)
                got = [(seq, line) async for seq, line in follow_lines(client, state)]
        assert [seq for seq, _ in got] == list(range(17))
        assert got[3][1] == record(3)[:-1]
        assert got[15][1] == b'{"seq": 15, "data": 1}'
        assert got[16][1] == record(16)[:-1]  # CRLF stripped
        assert state.next_seq == 17 and state.ended
        assert paths == [b"/v1/streams/s1?from=0", b"/v1/streams/s1?from=10"]

    run(main())


def test_batches_are_consecutive() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(HEAD)
        body = b"".join(record(i) for i in range(5, 100)) + b'{"end":true}\n'
        await send_in_pieces(writer, body, [10, 500, 501, 1500])

    async def main() -> None:
        async with raw_server(handler) as (url, _), Client(url) as client:
            state = StreamState("s1", 5)
            batches = [batch async for batch in follow_batches(client, state)]
        assert len(batches) > 1
        seqs = [first + i for first, lines in batches for i in range(len(lines))]
        assert seqs == list(range(5, 100))
        for first, lines in batches:
            assert lines == [record(first + i)[:-1] for i in range(len(lines))]

    run(main())


def test_a_gap_inside_a_batch_stops_after_the_good_prefix() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(HEAD + record(0) + record(1) + record(3) + record(4))
        await writer.drain()

    async def main() -> None:
        async with raw_server(handler) as (url, _), Client(url) as client:
            state = StreamState("s1", 0)
            got: list[int] = []
            with pytest.raises(PulsingRuntimeError, match="expected seq 2, got 3"):
                async for seq, _ in follow_lines(client, state):
                    got.append(seq)
        assert got == [0, 1]
        assert state.next_seq == 2

    run(main())


def test_a_caller_stopping_inside_a_batch_resumes_after_what_it_saw() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(HEAD + b"".join(record(i) for i in range(50)))
        await writer.drain()
        await asyncio.sleep(1)

    async def main() -> None:
        async with raw_server(handler) as (url, _), Client(url) as client:
            state = StreamState("s1", 0)
            lines = follow_lines(client, state)
            async for seq, _ in lines:
                if seq == 20:
                    break
            await lines.aclose()
        assert state.next_seq == 21

    run(main())

