"""The HTTP/1.1 rules both CLI transports follow, without any I/O.

``transport.py`` speaks them over asyncio streams (pooled connections, streaming
bodies); ``oneshot.py`` over one blocking socket, for commands that send one request
and need no event loop. Endpoints, the request's bytes, the response head, how its
body is framed and the errors are defined here once.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

USER_AGENT = "pulsing-cli"

_HEX = frozenset(b"0123456789abcdefABCDEF")
READ_SIZE = 65536


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


def build_request(
    endpoint: Endpoint, method: str, path: str, headers: dict[str, str] | None, body: bytes | None
) -> bytes:
    """The request's bytes: head (Host, User-Agent, keep-alive, Content-Length) and body."""
    if not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"invalid request path {path!r}")
    host = "localhost" if endpoint.kind == "unix" else endpoint.host_port
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


def body_framing(
    method: str, status: int, headers: dict[str, str], version: str
) -> tuple[str, int, bool]:
    """How the response body is framed -- ``"none"``, ``"length"`` (with its length),
    ``"chunked"`` or ``"close"`` -- and whether the connection may be reused after it."""
    conn_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.1":
        keep_alive = "close" not in conn_tokens
    else:
        keep_alive = "keep-alive" in conn_tokens
    if method.upper() == "HEAD" or status in (204, 304) or status < 200:
        return "none", 0, keep_alive
    te = headers.get("transfer-encoding", "").lower()
    if te:
        if te.split(",")[-1].strip() != "chunked":
            raise TransportProtocolError(f"unsupported Transfer-Encoding {te!r}")
        return "chunked", 0, keep_alive
    if "content-length" in headers:
        value = headers["content-length"].strip()
        if not value.isdigit():
            raise TransportProtocolError(f"invalid Content-Length {value!r}")
        return "length", int(value), keep_alive
    return "close", 0, False


def chunk_size(size_line: bytes) -> int:
    """The size on a chunk-size line (extensions after ``;`` ignored)."""
    size_line = size_line.split(b";", 1)[0].strip()
    if not size_line or not _HEX.issuperset(size_line):
        raise TransportProtocolError(f"invalid chunk size line {size_line!r}")
    return int(size_line, 16)


def parse_head(head: bytes) -> tuple[int, str, dict[str, str], str]:
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


def connect_reason(ep: Endpoint, e: OSError) -> str:
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
