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
import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

USER_AGENT = "pulsing-cli"

_HEX = frozenset(b"0123456789abcdefABCDEF")
_READ_SIZE = 65536


class TransportError(Exception):
    """Base class for all transport failures."""


class TransportConnectError(TransportError):
    """The connection could not be established."""

    def __init__(self, endpoint: Endpoint, reason: str) -> None:
        super().__init__(f"cannot connect to {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class TransportClosedError(TransportError):
    """The peer closed (or reset) the connection before the response was complete."""


class TransportProtocolError(TransportError):
    """The peer sent something that is not valid HTTP/1.x."""


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"http://{self.host_port}"

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(s: str) -> Endpoint:
    """Parse ``http://HOST[:PORT]``, ``HOST:PORT``, ``unix:/path`` or ``unix:///path``."""
    text = s.strip()
    if not text:
        raise ValueError("empty endpoint")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise ValueError(f"invalid unix endpoint {s!r}: use unix:/abs/path")
        if not path:
            raise ValueError(f"invalid unix endpoint {s!r}: missing socket path")
        return Endpoint("unix", path=path)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    if scheme.lower() == "https":
        raise ValueError(f"https is not supported: {s!r} (use http:// or unix:)")
    if scheme.lower() != "http":
        raise ValueError(f"unsupported scheme {scheme!r} in endpoint {s!r}")
    rest = rest.removesuffix("/")
    if any(c in "/?#" for c in rest):
        raise ValueError(f"endpoint {s!r} must not contain a path, query or fragment")
    if rest.startswith("["):  # [IPv6]:port
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"invalid IPv6 address in endpoint {s!r}")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text = rest.partition(":")
        port_text = port_text if colon else None
    if not host or any(c.isspace() or c in "@[]" for c in host):
        raise ValueError(f"invalid host in endpoint {s!r}")
    if port_text is None:
        return Endpoint("tcp", host=host, port=80)
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"invalid port {port_text!r} in endpoint {s!r}")
    return Endpoint("tcp", host=host, port=int(port_text))


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        import json

        return json.loads(self.body)


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
            return await self._reader.read(_READ_SIZE)
        if self._mode == "length":
            data = await self._reader.read(min(self._remaining, _READ_SIZE))
            if not data:
                raise TransportClosedError(
                    f"connection closed with {self._remaining} bytes of the response body missing"
                )
            self._remaining -= len(data)
            if self._remaining == 0:
                self.done = True
            return data
        # chunked
        size_line = (await self._readline()).split(b";", 1)[0].strip()
        if not size_line or not _HEX.issuperset(size_line):
            raise TransportProtocolError(f"invalid chunk size line {size_line!r}")
        size = int(size_line, 16)
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
        buf = b""
        try:
            while chunk := await self._body.read_chunk():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    yield line.removesuffix(b"\r")
            if buf:
                yield buf.removesuffix(b"\r")
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
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"invalid request path {path!r}")
        host = "localhost" if self.endpoint.kind == "unix" else self.endpoint.host_port
        all_headers = {"Host": host, "User-Agent": USER_AGENT, "Connection": "keep-alive"}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        elif method.upper() in ("POST", "PUT", "PATCH"):
            all_headers["Content-Length"] = "0"
        for name, value in (headers or {}).items():
            if any(c in "\r\n" for c in name + value):
                raise ValueError(f"invalid header {name!r}")
            for existing in [k for k in all_headers if k.lower() == name.lower()]:
                del all_headers[existing]
            all_headers[name] = value
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body else head

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
            raise TransportConnectError(ep, _connect_reason(ep, e)) from None
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
        return _parse_head(head)


def _body_for(
    conn: _Conn, method: str, status: int, headers: dict[str, str], version: str
) -> tuple[_Body, bool]:
    """Return the body reader and whether the connection may be reused afterwards."""
    conn_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.1":
        keep_alive = "close" not in conn_tokens
    else:
        keep_alive = "keep-alive" in conn_tokens
    if method.upper() == "HEAD" or status in (204, 304) or status < 200:
        return _Body(conn.reader, "none"), keep_alive
    te = headers.get("transfer-encoding", "").lower()
    if te:
        if te.split(",")[-1].strip() != "chunked":
            raise TransportProtocolError(f"unsupported Transfer-Encoding {te!r}")
        return _Body(conn.reader, "chunked"), keep_alive
    if "content-length" in headers:
        value = headers["content-length"].strip()
        if not value.isdigit():
            raise TransportProtocolError(f"invalid Content-Length {value!r}")
        return _Body(conn.reader, "length", int(value)), keep_alive
    return _Body(conn.reader, "close"), False


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str], str]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise TransportProtocolError(f"malformed status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise TransportProtocolError(f"malformed header line {line[:100]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, parts[0]


def _connect_reason(ep: Endpoint, e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host {ep.host!r}"
    if isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(e, FileNotFoundError):
        return "no such socket file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, TimeoutError):
        return "connection timed out"
    message = str(e)
    # asyncio reports several failed addresses (e.g. ::1 and 127.0.0.1) as one OSError.
    if message.startswith("Multiple exceptions") and f"[Errno {errno.ECONNREFUSED}]" in message:
        return "connection refused"
    return e.strerror.lower() if e.strerror else message
