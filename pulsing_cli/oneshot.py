"""``pulsing ask`` without an event loop: one request on one blocking socket.

The async client (client.py over transport.py) needs asyncio, and importing asyncio
brings ssl, logging and concurrent.futures with it: more than a command that sends
one request and reads one answer spends on anything else. This path follows the same
HTTP rules (http11.py) and reads answers and errors with the same code (asks.py), so
``pulsing ask`` behaves as the async ``Client.ask`` does: the same deadline (the
ask's timeout plus its slack, over connect, send and answer), the same connect
timeout and messages, the same retries. A retry opens a new connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from pulsing_cli.asks import (
    AskResult,
    ask_request,
    ask_result,
    ask_timed_out,
    is_retryable,
    resolve_endpoint,
    resolve_token,
    retry_delay,
    unreachable,
)
from pulsing_cli.http11 import (
    READ_SIZE,
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
    parse_head,
)
from pulsing_daemon.exceptions import PulsingError

HEAD_LIMIT = 65536  # the async transport's limit too (asyncio's stream buffer)


class _Deadline:
    """Seconds left until a deadline (None: no deadline)."""

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


class _Reader:
    """Buffered reads from a blocking socket, each bounded by the request's deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def fill(self) -> bool:
        """Read what has arrived into the buffer; False at end of stream."""
        self.sock.settimeout(self.deadline.left())
        data = self.sock.recv(READ_SIZE)
        self.buffer += data
        return bool(data)

    def take(self, size: int) -> bytes:
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, limit: int = HEAD_LIMIT) -> bytes:
        """One line with its b"\\n"; without it at end of stream."""
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > limit:
                raise TransportProtocolError("chunk header line too long")
            if not self.fill():
                return self.take(len(self.buffer))
        return self.take(end + 1)

    def exactly(self, size: int) -> bytes | None:
        """``size`` bytes, or None when the stream ends first."""
        while len(self.buffer) < size:
            if not self.fill():
                return None
        return self.take(size)


def _connect(endpoint: Endpoint, connect_timeout: float, deadline: _Deadline) -> socket.socket:
    left = deadline.left()
    bound = connect_timeout if left is None else min(connect_timeout, left)
    try:
        if endpoint.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(bound)
                sock.connect(endpoint.path)
            except BaseException:
                sock.close()
                raise
            return sock
        # An ASCII host goes to getaddrinfo as bytes: a str is encoded with the idna
        # codec first, whose import (stringprep, unicodedata) costs more than the ask.
        host: str | bytes = endpoint.host
        if endpoint.host.isascii():
            host = endpoint.host.encode("ascii")
        sock = socket.create_connection((host, endpoint.port), bound)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except TimeoutError:
        if left is not None and left <= connect_timeout:
            raise  # the request's own deadline, not the connect timeout
        raise TransportConnectError(endpoint, f"timed out after {connect_timeout:g}s") from None
    except OSError as exc:
        raise TransportConnectError(endpoint, connect_reason(endpoint, exc)) from None


def _read_head(reader: _Reader) -> bytes:
    try:
        if not reader.buffer and not reader.fill():
            raise TransportClosedError(
                "connection closed before response: connection closed by peer"
            )
    except ConnectionError as exc:
        raise TransportClosedError(
            f"connection closed before response: {exc or type(exc).__name__}"
        ) from None
    try:
        while (end := reader.buffer.find(b"\r\n\r\n")) < 0:
            if len(reader.buffer) > HEAD_LIMIT:
                raise TransportProtocolError("response headers too large")
            if not reader.fill():
                raise TransportClosedError("connection closed while reading response head")
    except ConnectionError as exc:
        raise TransportClosedError(f"connection lost while reading response head: {exc}") from None
    return reader.take(end + 4)


def _read_body(reader: _Reader, mode: str, length: int) -> bytes:
    try:
        if mode == "none":
            return b""
        if mode == "length":
            data = reader.exactly(length)
            if data is None:
                missing = length - len(reader.buffer)
                raise TransportClosedError(
                    f"connection closed with {missing} bytes of the response body missing"
                )
            return data
        if mode == "close":
            while reader.fill():
                pass
            return reader.take(len(reader.buffer))
        parts = []
        while True:
            line = reader.readline()
            if not line.endswith(b"\n"):
                raise TransportClosedError("connection closed in the middle of a chunked body")
            size = chunk_size(line)
            if size == 0:
                while (line := reader.readline()).strip():  # trailers
                    if not line.endswith(b"\n"):
                        raise TransportClosedError(
                            "connection closed in the middle of a chunked body"
                        )
                return b"".join(parts)
            data = reader.exactly(size + 2)
            if data is None:
                raise TransportClosedError("connection closed in the middle of a chunk")
            if data[-2:] != b"\r\n":
                raise TransportProtocolError("chunk not terminated by CRLF")
            parts.append(data[:-2])
    except ConnectionError as exc:
        raise TransportClosedError(f"connection lost while reading response body: {exc}") from exc


def request(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
    connect_timeout: float = 5.0,
) -> Response:
    """One request and its whole answer on a new connection.

    ``timeout`` bounds everything (``TimeoutError`` past it: a socket timeout is one);
    the connect alone is bounded by ``connect_timeout`` (``TransportConnectError``), as
    in transport.py.
    """
    deadline = _Deadline(timeout)
    data = build_request(endpoint, method, path, headers, body)
    sock = _connect(endpoint, connect_timeout, deadline)
    try:
        reader = _Reader(sock, deadline)
        try:
            sock.settimeout(deadline.left())
            sock.sendall(data)
        except ConnectionError as exc:
            raise TransportClosedError(
                f"connection closed before response: {exc or type(exc).__name__}"
            ) from None
        status, reason, resp_headers, version = parse_head(_read_head(reader))
        mode, length, _ = body_framing(method, status, resp_headers, version)
        return Response(status, reason, resp_headers, _read_body(reader, mode, length))
    finally:
        sock.close()


class OneShotClient:
    """Asks one daemon, blocking; the same answers and errors as ``client.Client.ask``."""

    def __init__(
        self, endpoint: str | None = None, token: str | None = None, *, connect_timeout: float = 5.0
    ) -> None:
        self.endpoint_text, self.endpoint = resolve_endpoint(endpoint)
        self.token = resolve_token(token)
        self.connect_timeout = connect_timeout

    def ask(
        self,
        actor: str,
        op: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AskResult:
        """Send one ask; return its result or raise its error. No retries."""
        ask = ask_request(
            self.token, actor, op, args, kwargs, timeout=timeout, idempotency_key=idempotency_key
        )
        try:
            response = request(
                self.endpoint,
                "POST",
                ask.path,
                headers=ask.headers,
                body=ask.body,
                timeout=ask.wait,
                connect_timeout=self.connect_timeout,
            )
        except TransportError as exc:
            raise unreachable(self.endpoint, exc) from None
        except TimeoutError:
            assert timeout is not None
            raise ask_timed_out(actor, op, timeout) from None
        return ask_result(response)


def retry(
    call: Callable[[], AskResult],
    retries: int = 3,
    *,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    on_retry: Callable[[int, PulsingError, float], None] | None = None,
) -> AskResult:
    """``client.retry`` for a blocking call: the same rules, delays and callback."""
    attempt = 0
    while True:
        try:
            return call()
        except PulsingError as error:
            if attempt >= retries or not is_retryable(error):
                raise
            delay = max(retry_delay(attempt, base_delay, max_delay), error.retry_after or 0.0)
            if on_retry is not None:
                on_retry(attempt + 1, error, delay)
            time.sleep(delay)
            attempt += 1
