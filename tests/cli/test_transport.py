"""Tests for pulsing_cli.transport against a real aiohttp server (and a few raw ones)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pulsing_cli.transport import (
    USER_AGENT,
    Endpoint,
    HTTPTransport,
    TransportClosedError,
    TransportConnectError,
    TransportProtocolError,
    parse_endpoint,
)

LARGE = bytes(range(256)) * 8192  # 2 MiB
NDJSON_WRITES = [b'{"n": 1}\n{"n"', b": 2}\n", b"\n", b'{"n": 3}\r\n{"n": 4', b"}\n", b"tail"]
NDJSON_LINES = [b'{"n": 1}', b'{"n": 2}', b"", b'{"n": 3}', b'{"n": 4}', b"tail"]


def run(coro: Awaitable[Any], timeout: float = 15.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Server:
    def __init__(self) -> None:
        self.peers: list[Any] = []  # one entry per /json request: the server-side transport
        self.seen_headers: dict[str, str] = {}
        self.release = asyncio.Event()
        self.tcp = ""
        self.unix = ""


@contextlib.asynccontextmanager
async def aiohttp_server(
    tmp_path: Path | None = None, keepalive_timeout: float = 75.0
) -> AsyncIterator[Server]:
    srv = Server()

    async def json_handler(request: web.Request) -> web.Response:
        srv.peers.append(request.transport)
        srv.seen_headers = dict(request.headers)
        payload = await request.json() if request.can_read_body else None
        return web.json_response({"method": request.method, "echo": payload})

    async def ndjson(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for piece in NDJSON_WRITES:
            await resp.write(piece)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=LARGE)

    async def slow(request: web.Request) -> web.Response:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(srv.release.wait(), 5)
        return web.Response(text="late")

    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "nope"}, status=404)

    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"x" * 100)
        request.transport.abort()
        raise asyncio.CancelledError  # stop aiohttp from finishing the response

    app = web.Application()
    app.router.add_route("*", "/json", json_handler)
    app.router.add_get("/ndjson", ndjson)
    app.router.add_get("/large", large)
    app.router.add_get("/slow", slow)
    app.router.add_get("/missing", missing)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        srv.tcp = f"http://{host}:{port}"
        if tmp_path is not None:
            sock_path = tmp_path / "d.sock"
            await web.UnixSite(runner, str(sock_path)).start()
            srv.unix = f"unix:{sock_path}"
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A bare asyncio TCP server; ``handler`` gets the connection number (0, 1, ...)."""
    conns: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        try:
            await handler(reader, writer, conns[-1])
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", conns
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# --- parse_endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "display"),
    [
        ("http://127.0.0.1:7480", Endpoint("tcp", "127.0.0.1", 7480), "http://127.0.0.1:7480"),
        ("127.0.0.1:7480", Endpoint("tcp", "127.0.0.1", 7480), "http://127.0.0.1:7480"),
        ("localhost:9", Endpoint("tcp", "localhost", 9), "http://localhost:9"),
        ("http://example.com", Endpoint("tcp", "example.com", 80), "http://example.com:80"),
        ("http://example.com:81/", Endpoint("tcp", "example.com", 81), "http://example.com:81"),
        ("http://[::1]:7480", Endpoint("tcp", "::1", 7480), "http://[::1]:7480"),
        ("unix:/run/pulsing.sock", Endpoint("unix", path="/run/pulsing.sock"), None),
        ("unix:///run/pulsing.sock", Endpoint("unix", path="/run/pulsing.sock"), None),
        ("unix:rel/d.sock", Endpoint("unix", path="rel/d.sock"), "unix:rel/d.sock"),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint, display: str | None) -> None:
    ep = parse_endpoint(text)
    assert ep == expected
    assert str(ep) == (display or "unix:/run/pulsing.sock")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://host:443", "https is not supported"),
        ("ftp://host", "unsupported scheme"),
        ("", "empty endpoint"),
        ("unix:", "missing socket path"),
        ("unix://relative", "invalid unix endpoint"),
        ("http://host:notaport", "invalid port"),
        ("http://host:0", "invalid port"),
        ("http://host:70000", "invalid port"),
        ("host:", "invalid port"),
        ("http://:80", "invalid host"),
        ("http://ho st:80", "invalid host"),
        ("http://user@host:80", "invalid host"),
        ("http://host:80/api", "must not contain a path"),
        ("http://[::1:80", "invalid IPv6"),
    ],
)
def test_parse_endpoint_rejects_garbage(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(text)


# --- against aiohttp --------------------------------------------------------------------


def test_json_round_trip_tcp_and_unix(tmp_path: Path) -> None:
    async def main() -> None:
        async with aiohttp_server(tmp_path) as srv:
            for endpoint in (srv.tcp, srv.unix):
                async with HTTPTransport(endpoint) as t:
                    resp = await t.request(
                        "POST",
                        "/json",
                        headers={"Content-Type": "application/json"},
                        body=json.dumps({"a": [1, 2]}).encode(),
                        timeout=5,
                    )
                    assert resp.status == 200
                    assert resp.reason == "OK"
                    assert resp.json() == {"method": "POST", "echo": {"a": [1, 2]}}
                    assert resp.header("CONTENT-TYPE", "").startswith("application/json")
                    assert resp.header("x-missing") is None
                    assert resp.header("x-missing", "d") == "d"
                    sent = srv.seen_headers
                    assert sent["User-Agent"] == USER_AGENT
                    assert sent["Connection"] == "keep-alive"
                    assert sent["Content-Length"] == str(len(b'{"a": [1, 2]}'))
            assert srv.seen_headers["Host"] == "localhost"

    run(main())


def test_keep_alive_reuses_connection(tmp_path: Path) -> None:
    async def main() -> None:
        async with aiohttp_server(tmp_path) as srv:
            for endpoint in (srv.tcp, srv.unix):
                srv.peers.clear()
                async with HTTPTransport(endpoint) as t:
                    for _ in range(3):
                        resp = await t.request("GET", "/json", timeout=5)
                        assert resp.json() == {"method": "GET", "echo": None}
                assert len(srv.peers) == 3
                assert srv.peers[0] is srv.peers[1] is srv.peers[2]
            assert srv.seen_headers["Host"] == "localhost"
            # Concurrent requests need separate connections, which are then pooled.
            srv.peers.clear()
            async with HTTPTransport(srv.tcp, max_idle=2) as t:
                await asyncio.gather(*(t.request("GET", "/json", timeout=5) for _ in range(3)))
                assert len({id(p) for p in srv.peers}) == 3
                assert len(t._idle) == 2

    run(main())


def test_connection_closed_by_server_while_idle_is_replaced() -> None:
    async def main() -> None:
        async with aiohttp_server(keepalive_timeout=0.1) as srv, HTTPTransport(srv.tcp) as t:
            assert (await t.request("GET", "/json", timeout=5)).status == 200
            await asyncio.sleep(0.4)  # the server closes the idle keep-alive connection
            assert (await t.request("GET", "/json", timeout=5)).status == 200
            assert srv.peers[0] is not srv.peers[1]

    run(main())


def test_large_body_and_chunked_request() -> None:
    async def main() -> None:
        async with aiohttp_server() as srv, HTTPTransport(srv.tcp) as t:
            resp = await t.request("GET", "/large", timeout=10)
            assert resp.status == 200
            assert resp.body == LARGE
            resp = await t.request("GET", "/ndjson", timeout=5)
            assert resp.header("transfer-encoding") == "chunked"
            assert resp.body == b"".join(NDJSON_WRITES)
            resp = await t.request("HEAD", "/large", timeout=5)
            assert resp.body == b""
            assert resp.header("content-length") == str(len(LARGE))
            # The connection is still usable after all of the above.
            assert (await t.request("GET", "/json", timeout=5)).status == 200
            assert len(srv.peers) == 1

    run(main())


def test_stream_iter_lines_chunked(tmp_path: Path) -> None:
    async def main() -> None:
        async with aiohttp_server(tmp_path) as srv:
            for endpoint in (srv.tcp, srv.unix):
                async with HTTPTransport(endpoint) as t:
                    async with await t.stream("GET", "/ndjson") as resp:
                        assert resp.status == 200
                        assert resp.header("Content-Type") == "application/x-ndjson"
                        lines = [line async for line in resp.iter_lines()]
                    assert lines == NDJSON_LINES
                    assert t._idle == []  # stream connections never go back to the pool

    run(main())


def test_stream_read_body_for_error_response() -> None:
    async def main() -> None:
        async with aiohttp_server() as srv, HTTPTransport(srv.tcp) as t:
            resp = await t.stream("GET", "/missing")
            assert resp.status == 404
            assert json.loads(await resp.read_body()) == {"error": "nope"}
            await resp.aclose()  # idempotent

    run(main())


def test_timeout_discards_connection() -> None:
    async def main() -> None:
        async with aiohttp_server() as srv, HTTPTransport(srv.tcp) as t:
            assert (await t.request("GET", "/json", timeout=5)).status == 200
            assert len(t._idle) == 1
            with pytest.raises(asyncio.TimeoutError):
                await t.request("GET", "/slow", timeout=0.2)
            assert t._idle == []
            srv.release.set()
            assert (await t.request("GET", "/json", timeout=5)).status == 200
            assert srv.peers[0] is not srv.peers[1]

    run(main())


def test_connection_dropped_mid_body() -> None:
    async def main() -> None:
        async with aiohttp_server() as srv, HTTPTransport(srv.tcp) as t:
            with pytest.raises(TransportClosedError, match="900 bytes"):
                await t.request("GET", "/broken", timeout=5)
            assert t._idle == []

    run(main())


# --- connect errors ---------------------------------------------------------------------


def test_connection_refused_message() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        async with HTTPTransport(f"127.0.0.1:{port}") as t:
            with pytest.raises(TransportConnectError) as info:
                await t.request("GET", "/json", timeout=5)
        assert str(info.value) == f"cannot connect to http://127.0.0.1:{port}: connection refused"
        assert info.value.reason == "connection refused"
        assert info.value.endpoint == Endpoint("tcp", "127.0.0.1", port)

    run(main())


def test_missing_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "nope.sock"

    async def main() -> None:
        async with HTTPTransport(f"unix:{path}") as t:
            with pytest.raises(TransportConnectError) as info:
                await t.stream("GET", "/ndjson")
        assert str(info.value) == f"cannot connect to unix:{path}: no such socket file"

    run(main())


def test_refused_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file exists but nobody listens

    async def main() -> None:
        async with HTTPTransport(f"unix:{path}") as t:
            with pytest.raises(TransportConnectError, match="connection refused"):
                await t.request("GET", "/", timeout=5)

    run(main())


# --- stale keep-alive retry and framing, against raw servers ----------------------------


def test_stale_keepalive_is_retried_once_on_fresh_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        if n == 0:  # keep the first connection open, then drop it on the next request
            await read_request(reader)

    async def main() -> None:
        async with raw_server(handler) as (url, conns), HTTPTransport(url) as t:
            assert (await t.request("GET", "/", timeout=5)).body == b"ok"
            resp = await t.request("POST", "/", body=b"x", timeout=5)
            assert resp.body == b"ok"
            assert conns == [0, 1]

    run(main())


def test_no_retry_on_fresh_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)

    async def main() -> None:
        async with raw_server(handler) as (url, conns), HTTPTransport(url) as t:
            with pytest.raises(TransportClosedError, match="before response"):
                await t.request("GET", "/", timeout=5)
            assert conns == [0]

    run(main())


def test_no_retry_after_response_bytes_on_reused_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-")

    async def main() -> None:
        async with raw_server(handler) as (url, conns), HTTPTransport(url) as t:
            await t.request("GET", "/", timeout=5)
            with pytest.raises(TransportClosedError, match="response head"):
                await t.request("GET", "/", timeout=5)
            assert conns == [0]

    run(main())


def test_read_until_close_and_no_reuse() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline1\nline2")

    async def main() -> None:
        async with raw_server(handler) as (url, conns), HTTPTransport(url) as t:
            resp = await t.request("GET", "/", timeout=5)
            assert resp.body == b"line1\nline2"
            assert t._idle == []
            async with await t.stream("GET", "/") as s:
                assert [line async for line in s.iter_lines()] == [b"line1", b"line2"]
            assert conns == [0, 1]

    run(main())


def test_chunked_stream_dropped_mid_chunk() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"4\r\nab\nc\r\n10\r\nonly a few")

    async def main() -> None:
        async with raw_server(handler) as (url, _), HTTPTransport(url) as t:
            resp = await t.stream("GET", "/")
            lines = []
            with pytest.raises(TransportClosedError, match="middle of a chunk"):
                async for line in resp.iter_lines():
                    lines.append(line)
            assert lines == [b"ab"]

    run(main())


@pytest.mark.parametrize(
    "response",
    [
        b"SPAM\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_responses(response: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()

    async def main() -> None:
        async with raw_server(handler) as (url, _), HTTPTransport(url) as t:
            with pytest.raises(TransportProtocolError):
                await t.request("GET", "/", timeout=5)

    run(main())


def test_closed_transport_and_bad_arguments() -> None:
    async def main() -> None:
        t = HTTPTransport("127.0.0.1:1")
        with pytest.raises(ValueError, match="invalid request path"):
            await t.request("GET", "no-slash")
        with pytest.raises(ValueError, match="invalid header"):
            await t.request("GET", "/", headers={"X-Evil": "a\r\nInjected: 1"})
        await t.close()
        with pytest.raises(Exception, match="transport is closed"):
            await t.request("GET", "/")

    run(main())
