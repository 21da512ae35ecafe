"""Every config key, described once: ``DAEMON_SPECS`` and ``ACTOR_SPECS``.

A key's spec is its type, default, check and description (the man page is generated
from it). Actor keys are the common ones plus the keys each host brings
(``hosts/registry.py``). The daemon's own checks (listen addresses, tokens, CPUs,
class paths) are here; the generic ones (numbers, strings, paths, tables) are in
keyspec.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulsing_daemon.hosts import registry
from pulsing_daemon.keyspec import (
    Invalid,
    KeySpec,
    boolean_key,
    choice_key,
    got,
    integer_key,
    number_key,
    path_key,
    path_list_key,
    string_key,
    table_key,
)
from pulsing_daemon.policy import RestartPolicy


def restart_policy_key(value: Any) -> RestartPolicy:
    if isinstance(value, RestartPolicy):
        return value
    try:
        return RestartPolicy.parse(string_key(value))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def cpu_list_key(value: Any) -> tuple[int, ...]:
    """CPU numbers this process may run on (checked against this machine)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise Invalid(f"expected a non-empty array of CPU numbers, got {got(value)}")
    cpus = []
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise Invalid(
                f"item {index}: expected a CPU number (an integer >= 0), got {got(item)}"
            )
        cpus.append(item)
    if not hasattr(os, "sched_setaffinity"):
        raise Invalid("CPU affinity is not supported on this platform")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise Invalid(
            f"CPU {', '.join(map(str, missing))} not available here "
            f"(this process may use {', '.join(map(str, sorted(allowed)))})"
        )
    return tuple(sorted(set(cpus)))


def socket_mode_key(value: Any) -> int:
    mode = integer_key(0)(value)
    if mode & ~0o770 or (mode & 0o600) != 0o600:
        raise Invalid(
            f"must give the owner read and write and others nothing (0o600 or 0o660), got {mode:#o}"
        )
    return mode


def token_key(value: Any) -> str:
    token = string_key(value)
    if not TOKEN_RE.fullmatch(token):
        raise Invalid("must be printable ASCII without spaces (it is sent in an HTTP header)")
    return token


TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_PATH_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?")


def class_path_key(value: Any) -> str:
    path = string_key(value).strip()
    if not _CLASS_PATH_RE.fullmatch(path) or (":" not in path and "." not in path):
        raise Invalid(f"expected 'module:Class' or 'module.Class' (got {path!r})")
    return path


# --- listen addresses

_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LISTEN_FORMS = "expected 'HOST:PORT', '[IPv6]:PORT' or 'unix:/path'"
# sun_path holds 108 bytes on Linux (104 on macOS/BSD), including the final NUL.
MAX_UNIX_PATH = 107 if sys.platform.startswith("linux") else 103


@dataclass(frozen=True)
class Endpoint:
    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    @property
    def is_loopback(self) -> bool:
        if self.unix_path is not None:
            return True
        assert self.host is not None
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name other than localhost
            return False


def parse_listen(listen: str) -> Endpoint:
    """Split a listen address; raises ValueError with the reason when malformed."""
    if listen.startswith("unix:"):
        path = listen[len("unix:") :]
        if not path.strip():
            raise ValueError("unix socket path is empty")
        return Endpoint(unix_path=path)
    bracketed = re.fullmatch(r"\[([^\]]*)\]:(\d+)", listen)
    plain = re.fullmatch(r"([^:\[\]\s]+):(\d+)", listen)
    if bracketed:
        host, port = bracketed.groups()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r}") from None
    elif plain:
        host, port = plain.groups()
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"invalid IPv4 address {host!r}") from None
        elif not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"invalid host name {host!r}")
    else:
        raise ValueError(f"{_LISTEN_FORMS} (got {listen!r})")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be between 0 and 65535 (got {port})")
    return Endpoint(host=host, port=int(port))


def listen_key(value: Any) -> str:
    listen = string_key(value).strip()
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return listen


# --------------------------------------------------------------------------- key specs

DAEMON_SPECS: tuple[KeySpec, ...] = (
    KeySpec("listen", "string", "127.0.0.1:7480", listen_key,
            "address to serve on: 'HOST:PORT', '[IPv6]:PORT' or 'unix:/path' "
            "(any address but loopback or a Unix socket requires a token)"),
    KeySpec("state_dir", "path", Path(".pulsing"), path_key,
            "directory for durable state (stream journal, idempotency store); "
            "relative to the config file"),
    KeySpec("default_timeout", "float", 30.0, number_key(positive=True),
            "seconds an ask may take when neither the ask nor its actor sets a timeout"),
    KeySpec("token", "string", None, token_key,
            "bearer token every request but /v1/health must present", nullable=True),
    KeySpec("token_file", "path", None, path_key,
            "file whose content (stripped) is the token; relative to the config file",
            nullable=True),
    KeySpec("grace_period", "float", 10.0, number_key(minimum=0),
            "seconds in-flight asks get to finish on SIGTERM/SIGINT before they are cancelled"),
    KeySpec("max_body", "integer", 1048576, integer_key(1024),
            "largest request body accepted, in bytes (at least 1024)"),
    KeySpec("pythonpath", "array of paths", (), path_list_key,
            "directories prepended to sys.path before actor classes are imported; "
            "relative to the config file"),
    KeySpec("stream_retention_age", "float", 604800.0, number_key(positive=True),
            "seconds the chunks of a finished stream are kept"),
    KeySpec("stream_retention_chunks", "integer", 1000000, integer_key(1),
            "most chunks kept per stream (the oldest go first)"),
    KeySpec("stream_retention_bytes", "integer", 1073741824, integer_key(1),
            "most journal bytes kept across all streams (the oldest chunks go first)"),
    KeySpec("idempotency_retention", "float", 86400.0, number_key(positive=True),
            "seconds the outcome of an ask with an idempotency key is remembered"),
    KeySpec("max_stream_readers", "integer", 1024, integer_key(1),
            "most stream readers connected at once"),
    KeySpec("cpu_affinity", "array of integers", None, cpu_list_key,
            "CPUs the daemon runs on (Linux), event loop included (sync ops follow the "
            "loop's CPU anyway); one CPU also keeps the loop from moving: lower latency "
            "for sync asks. Process-isolated actors are not confined (unset: any CPU)",
            nullable=True),
    KeySpec("events_keep", "integer", 10000, integer_key(100),
            "newest events kept in state_dir for `pulsing events` and resuming followers"),
    KeySpec("socket_group", "string", None, string_key,
            "Unix socket: group that owns the socket, so its members can use the CLI "
            "(with socket_mode = 0o660)", nullable=True),
    KeySpec("socket_mode", "integer", 0o600, socket_mode_key,
            "Unix socket: permission bits, 0o600 (owner only) or 0o660 (owner and "
            "socket_group); no bits for others"),
)  # fmt: skip

# The keys every actor has; ACTOR_SPECS adds isolation and the hosts' keys.
_COMMON_ACTOR_SPECS: tuple[KeySpec, ...] = (
    KeySpec("class", "string", None, class_path_key,
            "the actor class, 'module:Class' or 'module.Class' (required)"),
    KeySpec("args", "table", {}, table_key,
            "keyword arguments for the class's constructor"),
    KeySpec("restart_policy", "string", RestartPolicy.ON_FAILURE, restart_policy_key,
            "never | on_failure | always ('on-failure' accepted): restart after a failure, "
            "and with always also after run() returns"),
    KeySpec("max_restarts", "integer", 5, integer_key(0),
            "automatic restarts allowed (within restart_window when set) before the actor "
            "is left failed"),
    KeySpec("restart_window", "float", None, number_key(positive=True),
            "seconds of the sliding window max_restarts counts within (unset: since the "
            "last reset)", nullable=True),
    KeySpec("min_backoff", "float", 0.2, number_key(minimum=0),
            "seconds before the first restart; later delays double, with jitter"),
    KeySpec("max_backoff", "float", 10.0, number_key(minimum=0),
            "cap on the restart delay in seconds (at least min_backoff)"),
    KeySpec("timeout", "float", None, number_key(positive=True),
            "default ask timeout in seconds for this actor (unset: daemon.default_timeout)",
            nullable=True),
    KeySpec("mailbox_size", "integer", 1024, integer_key(1),
            "messages that may wait for the actor; a full mailbox rejects asks"),
    KeySpec("during_restart", "string", "queue", choice_key("queue", "fail_fast"),
            "queue (asks wait for the restart within their deadline) | fail_fast "
            "(recoverable error with retry-after; 'fail-fast' accepted)"),
    KeySpec("reset_after", "float", 300.0, number_key(positive=True),
            "seconds of healthy running after which backoff and restart count start over",
            nullable=True),
    KeySpec("autostart", "boolean", True, boolean_key,
            "start with the daemon; false leaves the actor stopped until 'pulsing start'"),
    KeySpec("log_max_bytes", "integer", 10485760, integer_key(4096),
            "bytes of this actor's logs kept in state_dir/logs (output, logging records, "
            "the daemon's events about it); the oldest half goes first"),
)  # fmt: skip



def _actor_specs() -> tuple[KeySpec, ...]:
    """Every actor key: the common ones, with ``isolation`` and the keys each host
    brings (hosts/registry.py) after ``mailbox_size``."""
    common = _COMMON_ACTOR_SPECS
    at = next(i for i, spec in enumerate(common) if spec.name == "mailbox_size") + 1
    return (*common[:at], registry.isolation_spec(), *registry.actor_keys(), *common[at:])


ACTOR_SPECS = _actor_specs()
DAEMON_KEYS: dict[str, str] = {spec.name: spec.description for spec in DAEMON_SPECS}
ACTOR_KEYS: dict[str, str] = {spec.name: spec.description for spec in ACTOR_SPECS}
