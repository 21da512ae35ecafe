"""Minimal HTTP/1.1 client over asyncio streams, used by the ``pulsing`` CLI.

Why not aiohttp?  Importing aiohttp costs 0.3-0.9 s, which the CLI would pay on
every invocation (``pulsing status`` should feel instant).  The CLI only talks to
its own daemon over plain HTTP on TCP or a unix socket, so a few hundred lines of
stdlib code are enough: keep-alive pooling, Content-Length / chunked /
read-until-close bodies and line streaming for long responses.  Only stdlib
modules are imported (``json`` lazily); https is deliberately not supported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pulsing_cli.http11 import (
    READ_SIZE,
    USER_AGENT,
    Endpoint,
    Response,
    TransportClosedError,
    TransportConnectError,
    TransportError,
    TransportProtocolError,
    body_framing,
    build_request,
    chunk_size,
    connect_reason,
    parse_endpoint,
    parse_head,
)

__all__ = [
    "USER_AGENT",
    "Endpoint",
    "HTTPTransport",
    "Response",
    "StreamResponse",
    "TransportClosedError",
    "TransportConnectError",
    "TransportError",
    "TransportProtocolError",
    "parse_endpoint",
]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class _NothingReceived(Exception):
    """Connection failed before a single response byte arrived (retryable if reused)."""


class _Body:
    """Reads one response body framed by Content-Length, chunked encoding or EOF."""

    def __init__(self, reader: asyncio.StreamReader, mode: str, length: int = 0) -> None:
        self._reader = reader
        self._mode = mode  # "none" | "length" | "chunked" | "close"
        self._remaining = length
        self.done = mode == "none" or (mode == "length" and length == 0)

    async def read_chunk(self) -> bytes:
        """Return the next piece of the body, or b"" once it is complete."""
        if self.done:
            return b""
        try:
            data = await self._read_chunk()
        except ConnectionError as e:
            raise TransportClosedError(f"connection lost while reading response body: {e}") from e
        if not data:
            self.done = True
        return data

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    async def _read_chunk(self) -> bytes:
        if self._mode == "close":
            return await self._reader.read(READ_SIZE)
        if self._mode == "length":
            data = await self._reader.read(min(self._remaining, READ_SIZE))
            if not data:
                raise TransportClosedError(
                    f"connection closed with {self._remaining} bytes of the response body missing"
                )
            self._remaining -= len(data)
            if self._remaining == 0:
                self.done = True
            return data
        # chunked
        size = chunk_size(await self._readline())
        if size == 0:
            while (await self._readline()).strip():  # skip trailers
                pass
            return b""
        try:
            data = await self._reader.readexactly(size)
            crlf = await self._reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise TransportClosedError("connection closed in the middle of a chunk") from None
        if crlf != b"\r\n":
            raise TransportProtocolError("chunk not terminated by CRLF")
        return data

    async def _readline(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:
            raise TransportProtocolError("chunk header line too long") from None
        if not line.endswith(b"\n"):
            raise TransportClosedError("connection closed in the middle of a chunked body")
        return line


class StreamResponse:
    """A response whose body is consumed incrementally; owns its connection."""

    def __init__(
        self, status: int, reason: str, headers: dict[str, str], body: _Body, conn: _Conn
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names
        self._body = body
        self._conn: _Conn | None = conn
        self._keep_alive = False  # set by HTTPTransport; streams never go back to the pool

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    async def read_body(self) -> bytes:
        """Read the whole (remaining) body and close the connection."""
        try:
            return await self._body.read_all()
        finally:
            await self.aclose()

    async def iter_lines(self) -> AsyncIterator[bytes]:
        """Yield body lines without the trailing newline (b"\\n" or b"\\r\\n")."""
        batches = self.iter_line_batches()
        try:
            async for lines in batches:
                for line in lines:
                    yield line
        finally:
            await batches.aclose()  # closes the connection now, not when collected

    async def iter_line_batches(self) -> AsyncIterator[list[bytes]]:
        """Yield the lines completed by each read of the body, as ``iter_lines`` would
        yield them one by one: a reader that handles lines in bulk (``pulsing stream``)
        pays one step per read instead of one per line."""
        buf = b""
        try:
            while chunk := await self._body.read_chunk():
                buf += chunk
                crlf = b"\r" in buf
                *lines, buf = buf.split(b"\n")
                if lines:
                    yield [line.removesuffix(b"\r") for line in lines] if crlf else lines
            if buf:
                yield [buf.removesuffix(b"\r")]
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HTTPTransport:
    """HTTP/1.1 client for one endpoint with a small keep-alive connection pool."""

    def __init__(
        self, endpoint: Endpoint | str, *, connect_timeout: float = 5.0, max_idle: int = 8
    ) -> None:
        self.endpoint = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._closed = False

    async def __aenter__(self) -> HTTPTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close all idle connections; the transport cannot be used afterwards."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except Exception:
                pass

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a request and read the full response; ``timeout`` bounds everything."""
        coro = self._request(method, path, headers, body)
        if timeout is None:
            return await coro
        return await asyncio.wait_for(coro, timeout)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        connect_timeout: float | None = None,
    ) -> StreamResponse:
        """Send a request and return as soon as the response head has been read.

        ``connect_timeout`` (default: the transport's) bounds only the connect phase.
        """
        return await self._exchange(method, path, headers, body, connect_timeout)

    async def _request(
        self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None
    ) -> Response:
        resp = await self._exchange(method, path, headers, body, None)
        try:
            data = await resp._body.read_all()
        except BaseException:
            await resp.aclose()
            raise
        conn, resp._conn = resp._conn, None
        if conn is not None:
            if resp._keep_alive and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()
        return Response(resp.status, resp.reason, resp.headers, data)

    async def _exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None,
        body: bytes | None,
        connect_timeout: float | None,
    ) -> StreamResponse:
        if self._closed:
            raise TransportError("transport is closed")
        data = self._build_request(method, path, headers, body)
        for attempt in range(2):
            conn = self._take_idle() if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(connect_timeout)
            try:
                status, reason, resp_headers, version = await self._send_and_read_head(conn, data)
                resp_body, keep_alive = _body_for(conn, method, status, resp_headers, version)
                resp = StreamResponse(status, reason, resp_headers, resp_body, conn)
                resp._keep_alive = keep_alive
                return resp
            except _NothingReceived as e:
                conn.close()
                if not reused:
                    raise TransportClosedError(f"connection closed before response: {e}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _build_request(
        self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None
    ) -> bytes:
        return build_request(self.endpoint, method, path, headers, body)

    def _take_idle(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.reader.at_eof() or conn.writer.is_closing():
                conn.close()
                continue
            return conn
        return None

    async def _connect(self, connect_timeout: float | None) -> _Conn:
        ep = self.endpoint
        if ep.kind == "unix":
            opener = asyncio.open_unix_connection(ep.path)
        else:
            opener = asyncio.open_connection(ep.host, ep.port)
        timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        try:
            reader, writer = await asyncio.wait_for(opener, timeout)
        except asyncio.TimeoutError:
            raise TransportConnectError(ep, f"timed out after {timeout:g}s") from None
        except OSError as e:
            raise TransportConnectError(ep, connect_reason(ep, e)) from None
        return _Conn(reader, writer)

    async def _send_and_read_head(
        self, conn: _Conn, data: bytes
    ) -> tuple[int, str, dict[str, str], str]:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            first = await conn.reader.read(1)
        except ConnectionError as e:
            raise _NothingReceived(str(e) or type(e).__name__) from None
        if not first:
            raise _NothingReceived("connection closed by peer")
        try:
            head = first + await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise TransportClosedError("connection closed while reading response head") from None
        except asyncio.LimitOverrunError:
            raise TransportProtocolError("response headers too large") from None
        except ConnectionError as e:
            raise TransportClosedError(
                f"connection lost while reading response head: {e}"
            ) from None
        return parse_head(head)


def _body_for(
    conn: _Conn, method: str, status: int, headers: dict[str, str], version: str
) -> tuple[_Body, bool]:
    """Return the body reader and whether the connection may be reused afterwards."""
    mode, length, keep_alive = body_framing(method, status, headers, version)
    return _Body(conn.reader, mode, length), keep_alive
