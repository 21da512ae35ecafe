"""The blocking one-shot path of ``pulsing ask`` (oneshot.py): the HTTP rules and the
errors of the async transport, and the same request and answers as ``Client.ask``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulsing_cli import oneshot
from pulsing_cli.client import Client
from pulsing_cli.http11 import (
    Endpoint,
    TransportClosedError,
    TransportConnectError,
    TransportProtocolError,
    parse_endpoint,
)
from pulsing_cli.oneshot import OneShotClient, request, retry
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
    PulsingTimeoutError,
)

Reply = Callable[[socket.socket, bytes], None]


def read_request(conn: socket.socket) -> bytes:
    """The whole request (head and Content-Length body)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return data


@contextlib.contextmanager
def raw_server(reply: Reply, unix_path: Path | None = None) -> Iterator[tuple[str, list[bytes]]]:
    """A bare blocking server on a thread: ``reply(conn, request)`` answers each request."""
    seen: list[bytes] = []
    if unix_path is not None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(unix_path))
        url = f"unix:{unix_path}"
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                data = read_request(conn)
                seen.append(data)
                with contextlib.suppress(OSError):
                    reply(conn, data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield url, seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def answer(raw: bytes) -> Reply:
    return lambda conn, _: conn.sendall(raw)


def json_answer(status: int, payload: Any) -> Reply:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 404: "Not Found", 422: "Unprocessable Entity"}.get(status, "X")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return answer(head + body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the HTTP exchange --------------------------------------------------------------------


def test_round_trip_tcp_and_unix(tmp_path: Path) -> None:
    reply = json_answer(200, {"result": "pong"})
    for unix in (None, tmp_path / "d.sock"):
        with raw_server(reply, unix) as (url, seen):
            response = request(
                parse_endpoint(url), "POST", "/v1/x", headers={"A": "b"}, body=b"{}", timeout=5
            )
        assert response.status == 200
        assert json.loads(response.body) == {"result": "pong"}
        assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
        assert b"\r\nA: b\r\n" in seen[0] and seen[0].endswith(b"\r\n\r\n{}")


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (CHUNKED + b"2\r\nab\r\n3;x=1\r\ncde\r\n0\r\n\r\n", b"abcde"),
        (CHUNKED + b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n", b"a"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", b"until close"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)  # fmt: skip
def test_body_framings(raw: bytes, body: bytes) -> None:
    with raw_server(answer(raw)) as (url, _):
        assert request(parse_endpoint(url), "GET", "/", timeout=5).body == body


@pytest.mark.parametrize(
    "raw",
    [
        b"SPAM\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
    ],
)
def test_malformed_responses(raw: bytes) -> None:
    with raw_server(answer(raw)) as (url, _), pytest.raises(TransportProtocolError):
        request(parse_endpoint(url), "GET", "/", timeout=5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "connection closed before response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "while reading response head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100, "900 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "middle of a chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", "chunked body"),
    ],
)
def test_connection_closed_early(raw: bytes, message: str) -> None:
    with raw_server(answer(raw)) as (url, _), pytest.raises(TransportClosedError, match=message):
        request(parse_endpoint(url), "GET", "/", timeout=5)


def test_timeout_bounds_the_whole_exchange() -> None:
    release = threading.Event()
    with raw_server(lambda conn, _: release.wait(5)) as (url, _):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            request(parse_endpoint(url), "GET", "/", timeout=0.3)
        assert time.monotonic() - started < 2.0
        release.set()


def test_connection_refused_message() -> None:
    port = free_port()
    with pytest.raises(TransportConnectError) as info:
        request(parse_endpoint(f"127.0.0.1:{port}"), "GET", "/", timeout=5)
    assert str(info.value) == f"cannot connect to http://127.0.0.1:{port}: connection refused"
    assert info.value.endpoint == Endpoint("tcp", "127.0.0.1", port)


def test_missing_unix_socket(tmp_path: Path) -> None:
    with pytest.raises(TransportConnectError, match="no such socket file"):
        request(parse_endpoint(f"unix:{tmp_path / 'nope.sock'}"), "GET", "/", timeout=5)


def test_bad_request_arguments() -> None:
    endpoint = parse_endpoint("127.0.0.1:1")
    with pytest.raises(ValueError, match="invalid request path"):
        request(endpoint, "GET", "no-slash")
    with pytest.raises(ValueError, match="invalid header"):
        request(endpoint, "GET", "/", headers={"X-Evil": "a\r\nInjected: 1"})


# --- OneShotClient.ask: the same as Client.ask --------------------------------------------


def test_sends_what_the_async_client_sends() -> None:
    reply = json_answer(200, {"result": [1, 2], "replayed": True})
    with raw_server(reply) as (url, seen):
        blocking = OneShotClient(url, "tok").ask(
            "w", "work", [1], {"x": 2}, timeout=1.5, idempotency_key="k-1"
        )

        async def on_loop() -> Any:
            async with Client(url, "tok") as client:
                return await client.ask(
                    "w", "work", [1], {"x": 2}, timeout=1.5, idempotency_key="k-1"
                )

        looped = asyncio.run(on_loop())
    assert seen[0] == seen[1]
    assert b"\r\nPulsing-Timeout: 1.5\r\n" in seen[0] and b"\r\nIdempotency-Key: k-1\r\n" in seen[0]
    assert blocking == looped
    assert blocking.value == [1, 2] and blocking.replayed


def test_error_answer_raises_its_error() -> None:
    envelope = {"error": {"category": "business", "type": "ValueError", "message": "no"}}
    with raw_server(json_answer(422, envelope)) as (url, _), pytest.raises(PulsingBusinessError):
        OneShotClient(url).ask("w", "work")


def test_no_answer_within_the_deadline_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oneshot, "ask_request", _with_slack(0.0, oneshot.ask_request))
    release = threading.Event()
    with raw_server(lambda conn, _: release.wait(5)) as (url, _):
        with pytest.raises(PulsingTimeoutError, match=r"no answer from the daemon within 0\.2s"):
            OneShotClient(url).ask("w", "work", timeout=0.2)
        release.set()


def _with_slack(slack: float, make: Callable[..., Any]) -> Callable[..., Any]:
    def ask_request(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        req = make(*args, timeout=timeout, **kwargs)
        req.wait = None if timeout is None else timeout + slack
        return req

    return ask_request


def test_unreachable_daemon() -> None:
    port = free_port()
    with pytest.raises(PulsingRuntimeError, match="daemon not reachable") as info:
        OneShotClient(f"http://127.0.0.1:{port}").ask("w", "work")
    assert info.value.recoverable and info.value.extra.get("sent") is False


def test_connection_lost_after_sending_may_have_run() -> None:
    short = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    with raw_server(short) as (url, _), pytest.raises(PulsingRuntimeError, match="lost") as info:
        OneShotClient(url).ask("w", "work")
    assert info.value.extra.get("sent") is True


def test_retry_rules_and_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(oneshot.time, "sleep", sleeps.append)
    outcomes: list[Any] = [PulsingRuntimeError("x", recoverable=True, retry_after=0.5), "ok"]

    def call() -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    seen: list[int] = []
    assert retry(call, 2, on_retry=lambda n, e, d: seen.append(n)) == "ok"
    assert seen == [1] and sleeps[0] >= 0.5
    with pytest.raises(PulsingBusinessError):
        retry(lambda: (_ for _ in ()).throw(PulsingBusinessError("bad", "no")), 3)
    assert len(sleeps) == 1
