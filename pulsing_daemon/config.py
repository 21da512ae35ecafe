"""The TOML config file -> frozen dataclasses, validated eagerly.

Every problem in a file is collected in one pass and raised together as a
``ConfigError`` whose ``problems`` name the file, the key path, the line (when it
can be found) and the reason::

    pulsing.toml:12: actors.worker.min_backoff: must be >= 0 (got -1.0)

Each key is described once, in ``DAEMON_SPECS`` / ``ACTOR_SPECS`` (type, default,
check, description); one function reads any table against such a list. An actor key
is looked up in four layers, highest first: the actor's own table, the class's
``@remote(...)`` options, ``[defaults]``, the built-in default.

Only the classes named in the config are imported, after the ``pythonpath``
directories are prepended to ``sys.path``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
from pulsing_daemon.remote import class_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ACTOR_KEYS",
    "ACTOR_SPECS",
    "DAEMON_KEYS",
    "DAEMON_SPECS",
    "ActorConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DaemonConfig",
    "KeySpec",
    "check_config",
    "import_class",
    "load_config",
    "parse_config",
]

ACTOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TOP_LEVEL_TABLES = ("daemon", "defaults", "actors", "notify")
# Shown in key paths for problems with a class's @remote(...) options.
DECORATOR = "class(@remote)"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    file: str
    key: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ActorConfig:
    """One ``[actors.NAME]`` table with every layer applied."""

    name: str
    class_path: str
    args: dict[str, Any] = field(default_factory=dict)
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
    max_restarts: int = 5
    restart_window: float | None = None
    min_backoff: float = 0.2
    max_backoff: float = 10.0
    timeout: float | None = None
    mailbox_size: int = 1024
    isolation: str = "inline"
    during_restart: str = "queue"
    reset_after: float | None = 300.0
    autostart: bool = True
    log_max_bytes: int = 10485760
    # The keys the hosts declare (hosts/registry.py), every host's, by key name.
    host_keys: dict[str, Any] = field(default_factory=registry.default_host_keys)
    # The imported class; None when the config was read with import_classes=False.
    cls: type | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DaemonConfig:
    """The ``[daemon]`` table. Paths are absolute once read from a file."""

    listen: str = "127.0.0.1:7480"
    state_dir: Path = Path(".pulsing")
    default_timeout: float = 30.0
    token: str | None = None
    token_file: Path | None = None
    grace_period: float = 10.0
    max_body: int = 1048576
    pythonpath: tuple[Path, ...] = ()
    stream_retention_age: float = 604800.0
    stream_retention_chunks: int = 1000000
    stream_retention_bytes: int = 1073741824
    idempotency_retention: float = 86400.0
    max_stream_readers: int = 1024
    cpu_affinity: tuple[int, ...] | None = None
    events_keep: int = 10000
    socket_group: str | None = None
    socket_mode: int = 0o600
    # The [daemon.ISOLATION] tables of the hosts that declare daemon keys, read whole.
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_unix(self) -> bool:
        return self.listen.startswith("unix:")

    @property
    def unix_path(self) -> Path | None:
        return Path(self.listen[len("unix:") :]) if self.is_unix else None

    @property
    def host(self) -> str | None:
        """The TCP host (IPv6 without brackets); None for a Unix socket."""
        return _parse_listen(self.listen).host

    @property
    def port(self) -> int | None:
        """The TCP port; None for a Unix socket."""
        return _parse_listen(self.listen).port

    def resolved_token(self) -> str | None:
        """The token, read from ``token_file`` when set there (raises OSError if unreadable)."""
        if self.token is not None:
            return self.token
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return None


@dataclass(frozen=True)
class Config:
    path: Path
    daemon: DaemonConfig
    actors: dict[str, ActorConfig]
    notify: tuple[Any, ...] = ()  # pulsing_daemon.notify.NotifyConfig, one per [[notify]]
    # The file's text as read: a reload compares the new file against it (reload_plan).
    text: str = field(default="", compare=False, repr=False)


# --------------------------------------------------------------------------- value checks
# The daemon's own checks; the generic ones are in keyspec.py.


def _restart_policy(value: Any) -> RestartPolicy:
    if isinstance(value, RestartPolicy):
        return value
    try:
        return RestartPolicy.parse(string_key(value))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _cpu_list(value: Any) -> tuple[int, ...]:
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


def _socket_mode(value: Any) -> int:
    mode = integer_key(0)(value)
    if mode & ~0o770 or (mode & 0o600) != 0o600:
        raise Invalid(
            f"must give the owner read and write and others nothing (0o600 or 0o660), got {mode:#o}"
        )
    return mode


def _nonempty_token(value: Any) -> str:
    token = string_key(value)
    if not _TOKEN_RE.fullmatch(token):
        raise Invalid("must be printable ASCII without spaces (it is sent in an HTTP header)")
    return token


_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_PATH_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?")


def _class_path(value: Any) -> str:
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
_MAX_UNIX_PATH = 107 if sys.platform.startswith("linux") else 103


@dataclass(frozen=True)
class _Endpoint:
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


def _parse_listen(listen: str) -> _Endpoint:
    """Split a listen address; raises ValueError with the reason when malformed."""
    if listen.startswith("unix:"):
        path = listen[len("unix:") :]
        if not path.strip():
            raise ValueError("unix socket path is empty")
        return _Endpoint(unix_path=path)
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
    return _Endpoint(host=host, port=int(port))


def _listen(value: Any) -> str:
    listen = string_key(value).strip()
    try:
        _parse_listen(listen)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return listen


# --------------------------------------------------------------------------- key specs


DAEMON_SPECS: tuple[KeySpec, ...] = (
    KeySpec("listen", "string", "127.0.0.1:7480", _listen,
            "address to serve on: 'HOST:PORT', '[IPv6]:PORT' or 'unix:/path' "
            "(any address but loopback or a Unix socket requires a token)"),
    KeySpec("state_dir", "path", Path(".pulsing"), path_key,
            "directory for durable state (stream journal, idempotency store); "
            "relative to the config file"),
    KeySpec("default_timeout", "float", 30.0, number_key(positive=True),
            "seconds an ask may take when neither the ask nor its actor sets a timeout"),
    KeySpec("token", "string", None, _nonempty_token,
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
    KeySpec("cpu_affinity", "array of integers", None, _cpu_list,
            "CPUs the daemon runs on (Linux), event loop included (sync ops follow the "
            "loop's CPU anyway); one CPU also keeps the loop from moving: lower latency "
            "for sync asks. Process-isolated actors are not confined (unset: any CPU)",
            nullable=True),
    KeySpec("events_keep", "integer", 10000, integer_key(100),
            "newest events kept in state_dir for `pulsing events` and resuming followers"),
    KeySpec("socket_group", "string", None, string_key,
            "Unix socket: group that owns the socket, so its members can use the CLI "
            "(with socket_mode = 0o660)", nullable=True),
    KeySpec("socket_mode", "integer", 0o600, _socket_mode,
            "Unix socket: permission bits, 0o600 (owner only) or 0o660 (owner and "
            "socket_group); no bits for others"),
)  # fmt: skip

# The keys every actor has; ACTOR_SPECS adds isolation and the hosts' keys.
_COMMON_ACTOR_SPECS: tuple[KeySpec, ...] = (
    KeySpec("class", "string", None, _class_path,
            "the actor class, 'module:Class' or 'module.Class' (required)"),
    KeySpec("args", "table", {}, table_key,
            "keyword arguments for the class's constructor"),
    KeySpec("restart_policy", "string", RestartPolicy.ON_FAILURE, _restart_policy,
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

_DAEMON = {spec.name: spec for spec in DAEMON_SPECS}
_ACTOR = {spec.name: spec for spec in ACTOR_SPECS}
# Keys only an actor's own table may set; every other actor key is layered.
_PER_ACTOR = {"class": "set it in each [actors.NAME] table", "args": "set it per actor"}
_LAYERED = {name: spec for name, spec in _ACTOR.items() if name not in _PER_ACTOR}
# The keys the hosts declare: they go to ActorConfig.host_keys.
_HOST_KEYS = tuple(spec.name for spec in registry.actor_keys())


# --------------------------------------------------------------------------- line locator

_SEGMENT = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_SEGMENT}(?:\s*\.\s*{_SEGMENT})*"
# A header is alone on its line, so a nested array like `  ["a"],` is not one.
_HEADER_RE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts = []
    for segment in re.findall(_SEGMENT, dotted):
        if segment.startswith('"'):
            try:
                segment = json.loads(segment)
            except ValueError:
                segment = segment[1:-1]
        elif segment.startswith("'"):
            segment = segment[1:-1]
        parts.append(segment)
    return tuple(parts)


class _LineLocator:
    """Finds the line of a key path in TOML source (tomllib reports none).

    Records table headers and ``key =`` lines under the current header, dotted keys
    included; keys inside an inline table resolve to the line of the table's key.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        open_string: str | None = None  # the delimiter of a multi-line string we are in
        for number, line in enumerate(text.splitlines(), start=1):
            if open_string is not None:
                if line.count(open_string) % 2 == 1:
                    open_string = None
                continue
            header = _HEADER_RE.match(line)
            assign = None if header else _ASSIGN_RE.match(line)
            if header:
                table = _split_dotted(header.group(1))
                self._record(table, number)
            elif assign:
                self._record(table + _split_dotted(assign.group(1)), number)
                for delimiter in ('"""', "'''"):
                    if line.count(delimiter) % 2 == 1:
                        open_string = delimiter

    def _record(self, path: tuple[str, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def line_of(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path``, else of its nearest enclosing table, else None."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return None


def _format_key(path: tuple[str, ...]) -> str:
    return ".".join(
        part if part == DECORATOR or re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
        for part in path
    )


class _Problems:
    """Collects problems, placing each on the line of its key."""

    def __init__(self, file: str, text: str | None = None) -> None:
        self.file = file
        self._text = text
        self._locator: _LineLocator | None = None  # built at the first problem
        self.items: list[ConfigProblem] = []

    def add(self, key: tuple[str, ...], reason: str, *, at: tuple[str, ...] | None = None) -> None:
        if self._locator is None and self._text is not None:
            self._locator = _LineLocator(self._text)
        line = self._locator.line_of(key if at is None else at) if self._locator else None
        problem = ConfigProblem(self.file, _format_key(key), line, reason)
        if problem not in self.items:
            self.items.append(problem)

    def sorted(self) -> list[ConfigProblem]:
        return sorted(self.items, key=lambda p: math.inf if p.line is None else p.line)


# --------------------------------------------------------------------------- reading tables

# Marks a key whose value was reported as invalid, so no later check trips over it.
_INVALID = object()


def _read_table(
    table: Mapping[str, Any],
    specs: Mapping[str, KeySpec],
    where: tuple[str, ...],
    problems: _Problems,
    *,
    forbidden: Mapping[str, str] | None = None,
    at: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Check every key of ``table`` against ``specs``; returns the converted values.

    ``forbidden`` maps keys that exist but are not allowed here to the hint shown;
    ``at`` is where problems are placed when the keys are not in the file (@remote).
    """
    values: dict[str, Any] = {}
    for key, raw in table.items():
        path = (*where, key)
        spec = specs.get(key)
        if forbidden and key in forbidden:
            problems.add(path, f"not allowed here; {forbidden[key]}", at=at)
        elif spec is None:
            problems.add(path, _unknown_key(key, [*specs, *(forbidden or ())]), at=at)
        elif raw is None and spec.nullable:
            values[key] = None
        else:
            try:
                values[key] = spec.check(raw)
            except Invalid as exc:
                for each in exc.each():
                    problems.add((*path, *each.at), str(each), at=at)
                values[key] = _INVALID
    return values


def _unknown_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _sub_table(
    data: Mapping[str, Any], key: str, where: tuple[str, ...], problems: _Problems
) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.add((*where, key), f"expected a table, got {got(value)}")
        return {}
    return value


def _absolute(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- [daemon]


def _daemon_config(table: Mapping[str, Any], base: Path, problems: _Problems) -> DaemonConfig:
    """The [daemon] table; invalid values (already reported) are replaced by defaults."""
    table, hosts = _host_tables(table, problems)
    values = _read_table(table, _DAEMON, ("daemon",), problems)
    invalid = {key for key, value in values.items() if value is _INVALID}
    settings: dict[str, Any] = {spec.name: spec.default for spec in DAEMON_SPECS}
    settings.update((key, value) for key, value in values.items() if key not in invalid)
    settings["hosts"] = hosts

    settings["state_dir"] = _absolute(base, settings["state_dir"])
    settings["pythonpath"] = tuple(_absolute(base, p) for p in settings["pythonpath"])
    for directory in settings["pythonpath"]:
        if not directory.is_dir():
            problems.add(("daemon", "pythonpath"), f"no such directory: {directory}")

    if "token" in values and "token_file" in values:
        problems.add(("daemon", "token_file"), "set either token or token_file, not both")
    if settings["token_file"] is not None:
        token_file = settings["token_file"] = _absolute(base, settings["token_file"])
        problem = _token_file_problem(token_file)
        if problem:
            problems.add(("daemon", "token_file"), problem)

    if "listen" not in invalid:
        endpoint = _parse_listen(settings["listen"])
        if endpoint.unix_path is not None:
            socket_path = _absolute(base, Path(endpoint.unix_path).expanduser())
            settings["listen"] = f"unix:{socket_path}"
            size = len(str(socket_path).encode())
            if size > _MAX_UNIX_PATH:
                problems.add(
                    ("daemon", "listen"),
                    f"unix socket path is too long ({size} bytes, at most {_MAX_UNIX_PATH}): "
                    f"{socket_path}",
                )
        has_token = "token" in values or "token_file" in values
        if not endpoint.is_loopback and not has_token:
            problems.add(
                ("daemon", "listen"),
                f"listening on {endpoint.host} requires a token (set token or token_file)",
            )
    return DaemonConfig(**settings)


def _host_tables(
    table: Mapping[str, Any], problems: _Problems
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Take the [daemon.ISOLATION] tables of the hosts with daemon keys out of [daemon]:
    (the rest of [daemon], each host's values with its defaults filled in)."""
    rest = dict(table)
    hosts: dict[str, dict[str, Any]] = {}
    for isolation, host in registry.hosts().items():
        if not host.keys.daemon:
            continue
        where = ("daemon", isolation)
        raw = rest.pop(isolation, {})
        if not isinstance(raw, dict):
            problems.add(where, f"expected a table, got {got(raw)}")
            raw = {}
        specs = {spec.name: spec for spec in host.keys.daemon}
        values = _read_table(raw, specs, where, problems)
        hosts[isolation] = {spec.name: spec.default for spec in host.keys.daemon}
        hosts[isolation].update((k, v) for k, v in values.items() if v is not _INVALID)
    return rest, hosts


def _token_file_problem(token_file: Path) -> str | None:
    try:
        content = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return f"cannot read {token_file}: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return f"cannot read {token_file}: not UTF-8 text"
    if not content:
        return f"token file {token_file} is empty"
    if not _TOKEN_RE.fullmatch(content):
        return f"the token in {token_file} must be printable ASCII without spaces"
    return None


# --------------------------------------------------------------------------- [actors.NAME]


class _NotAClass(TypeError):
    pass


def import_class(class_path: str) -> type:
    """Import ``"pkg.mod:Class"`` or ``"pkg.mod.Class"`` (nested classes need the colon form).

    Raises ImportError (malformed path, missing module, or any error raised while
    importing it propagates), AttributeError (no such name), TypeError (not a class).
    """
    if ":" in class_path:
        module_name, _, qualname = class_path.partition(":")
    else:
        module_name, _, qualname = class_path.rpartition(".")
    if not module_name or not qualname:
        raise ImportError(f"class path {class_path!r} must be 'module:Class' or 'module.Class'")
    target: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        target = getattr(target, attribute)
    if not isinstance(target, type):
        raise _NotAClass(f"{class_path!r} is not a class (it is a {type(target).__name__})")
    return target


def _prepend_sys_path(directories: Iterable[Path]) -> None:
    for directory in reversed(tuple(directories)):
        entry = str(directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    importlib.invalidate_caches()


def _load_class(class_path: str, where: tuple[str, ...], problems: _Problems) -> type | None:
    try:
        return import_class(class_path)
    except _NotAClass as exc:
        problems.add((*where, "class"), str(exc))
    except Exception as exc:  # user code: anything may go wrong while importing it
        problems.add(
            (*where, "class"), f"cannot import {class_path!r}: {type(exc).__name__}: {exc}"
        )
    return None


@functools.lru_cache(maxsize=4096)
def _class_signature(cls: type) -> inspect.Signature | None:
    """The constructor's signature, once per class: 10,000 actors of a class without its
    own ``__init__`` spent half of a reload parsing ``object``'s text signature."""
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):  # not introspectable (a C extension type, ...)
        return None


def _check_args(cls: type, args: dict[str, Any], where: tuple[str, ...], problems: _Problems):
    signature = _class_signature(cls)
    if signature is None:
        return
    try:
        signature.bind(**args)
    except TypeError as exc:
        problems.add((*where, "args"), f"do not match {cls.__name__}{signature}: {exc}")


def _actor_config(
    name: str,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base: Path,
    problems: _Problems,
    *,
    import_classes: bool,
) -> ActorConfig | None:
    where = ("actors", name)
    own = _read_table(table, _ACTOR, where, problems)
    valid = ACTOR_NAME_RE.fullmatch(name) is not None
    if not valid:
        problems.add(
            where,
            f"invalid actor name {name!r}: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 128 characters)",
        )
    class_path = own.pop("class", None)
    args = own.pop("args", {})
    if class_path is None:
        problems.add((*where, "class"), "required key missing")

    # The layers of every other key, highest first, as (values, where they came from).
    layers: list[tuple[Mapping[str, Any], tuple[str, ...]]] = [(own, where)]
    cls = None
    if import_classes and class_path not in (None, _INVALID):
        cls = _load_class(class_path, where, problems)
        if cls is not None:
            decorator = (*where, DECORATOR)
            options = _read_table(
                class_options(cls), _LAYERED, decorator, problems,
                forbidden=_PER_ACTOR, at=(*where, "class"),
            )  # fmt: skip
            layers.append((options, decorator))
            if args is not _INVALID:
                _check_args(cls, args, where, problems)
        else:
            valid = False
    layers.append((defaults, ("defaults",)))

    settings: dict[str, Any] = {}
    origin: dict[str, tuple[str, ...]] = {}
    for key, spec in _LAYERED.items():
        settings[key], origin[key] = spec.default, ()
        for values, source in layers:
            if key in values:
                settings[key], origin[key] = values[key], source
                break
    if _INVALID in settings.values() or class_path is _INVALID or args is _INVALID:
        return None

    if settings["min_backoff"] > settings["max_backoff"]:
        # Blame the more specific of the two settings (the min when equally specific).
        rank = [where, (*where, DECORATOR), ("defaults",), ()]
        blamed = min(("min_backoff", "max_backoff"), key=lambda k: rank.index(origin[k]))
        problems.add(
            (*(origin[blamed] or where), blamed),
            f"min_backoff ({settings['min_backoff']:g}) must be <= max_backoff "
            f"({settings['max_backoff']:g})",
        )
        valid = False
    for isolation, host in registry.hosts().items():
        if settings["isolation"] != isolation:
            # Only the actor's own table: [defaults] may well serve other actors too.
            for key in host.keys.exclusive:
                if key in own:
                    problems.add((*where, key), f'only applies with isolation = "{isolation}"')
                    valid = False
        elif (missing := host.unavailable()) is not None:  # e.g. Ray not installed
            problems.add(
                (*(origin["isolation"] or where), "isolation"),
                f'isolation = "{isolation}" {missing}',
            )
            valid = False
    host_keys = {key: settings.pop(key) for key in _HOST_KEYS}
    found: list[str] = []

    def problem(key: str, reason: str) -> None:
        problems.add((*(origin[key] or where), key), reason)
        found.append(key)

    for host in registry.hosts().values():
        if host.keys.finish is not None:
            host.keys.finish(host_keys, base, problem)
    if not valid or found:
        return None
    return ActorConfig(
        name=name, class_path=class_path, args=args, cls=cls, host_keys=host_keys, **settings
    )


# --------------------------------------------------------------------------- entry points


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line = int(found.group(1))
        message = f"{message[: found.start()]} (column {found.group(2)})"
    elif "(at end of document)" in message:
        line = max(1, len(text.splitlines()))
    return ConfigProblem(file, "", line, f"invalid TOML: {message}")


def parse_config(
    text: str, path: str | Path = "<string>", *, import_classes: bool = True
) -> Config:
    """Read config ``text`` (from the file ``path``, which anchors relative paths).

    Raises ConfigError listing every problem found.
    """
    file = str(path)
    config_path = Path(path).expanduser().absolute()
    base = config_path.parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(file, text, exc)]) from None

    problems = _Problems(file, text)
    for key in data:
        if key not in TOP_LEVEL_TABLES:
            problems.add((key,), _unknown_key(key, TOP_LEVEL_TABLES))

    daemon = _daemon_config(_sub_table(data, "daemon", (), problems), base, problems)
    defaults = _read_table(
        _sub_table(data, "defaults", (), problems), _LAYERED, ("defaults",), problems,
        forbidden=_PER_ACTOR,
    )  # fmt: skip
    if import_classes:
        _prepend_sys_path(daemon.pythonpath)

    actors: dict[str, ActorConfig] = {}
    for name, table in _sub_table(data, "actors", (), problems).items():
        if not isinstance(table, dict):
            problems.add(("actors", name), f"expected a table, got {got(table)}")
            continue
        actor = _actor_config(name, table, defaults, base, problems, import_classes=import_classes)
        if actor is not None:
            actors[name] = actor

    notify: tuple[Any, ...] = ()
    if "notify" in data:
        from pulsing_daemon.notify import parse_notify

        notify = parse_notify(data["notify"], problems)

    if problems.items:
        raise ConfigError(problems.sorted())
    return Config(path=config_path, daemon=daemon, actors=actors, notify=notify, text=text)


def load_config(path: str | Path, *, import_classes: bool = True) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError."""
    try:
        text = Path(path).expanduser().read_bytes().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigProblem(str(path), "", None, f"cannot read: {reason}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    str(path), "", None, f"not UTF-8 text: {exc.reason} at byte {exc.start}"
                )
            ]
        ) from None
    return parse_config(text, path, import_classes=import_classes)


def check_config(path: str | Path, *, import_classes: bool = True) -> list[ConfigProblem]:
    """Every problem with the config file at ``path`` ([] when it is valid)."""
    try:
        load_config(path, import_classes=import_classes)
    except ConfigError as exc:
        return exc.problems
    return []


def with_listen(config: Config, listen: str) -> Config:
    """``config`` with ``[daemon] listen`` overridden (``pulsing daemon --listen``).

    The override passes the same checks as the file's value -- a malformed address,
    or a non-loopback one without a token, is a ConfigError. A relative Unix socket
    path is relative to the working directory (it came from the command line).
    """
    source = "--listen"
    try:
        endpoint = _parse_listen(listen.strip())
    except ValueError as exc:
        raise ConfigError([ConfigProblem(source, "daemon.listen", None, str(exc))]) from None
    if endpoint.unix_path is not None:
        listen = f"unix:{Path(endpoint.unix_path).expanduser().resolve()}"
    elif not endpoint.is_loopback and not config.daemon.resolved_token():
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    "daemon.listen",
                    None,
                    f"listening on {endpoint.host} requires a token (set token or token_file)",
                )
            ]
        )
    return dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, listen=listen))
