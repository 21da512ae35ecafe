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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "RAY_OPTION_SPECS",
    "RAY_SPECS",
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
    kill_on_timeout: bool = False
    memory_limit: int | None = None
    cpu_limit: float | None = None
    during_restart: str = "queue"
    reset_after: float | None = 300.0
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    autostart: bool = True
    log_max_bytes: int = 10485760
    # isolation = "ray": placement and resources of the Ray actor (RAY_OPTION_SPECS).
    ray: dict[str, Any] = field(default_factory=dict)
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
    # [daemon.ray] (RAY_SPECS): where isolation = "ray" actors live.
    ray_address: str = "local"
    ray_namespace: str = "pulsing"

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


# --------------------------------------------------------------------------- value checks
#
# A check takes the raw value (from TOML, or from @remote(...) in Python) and returns
# the value to store, or raises _Invalid with the reason shown to the user.


class _Invalid(Exception):
    """A bad value; ``at`` names the sub-key inside a table value (``ray.num_cpus``)."""

    def __init__(
        self, reason: str, at: tuple[str, ...] = (), also: tuple[_Invalid, ...] = ()
    ) -> None:
        super().__init__(reason)
        self.at = at
        self.also = also  # more problems in the same table value

    def each(self) -> tuple[_Invalid, ...]:
        return (self, *self.also)


Check = Callable[[Any], Any]


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string",
             list: "array", tuple: "array", dict: "table"}  # fmt: skip
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _got(value: Any) -> str:
    """``boolean (true)``, ``string ('x')``: what the user wrote, briefly."""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, (dict, list, tuple)):
        return _type_name(value)
    else:
        shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{_type_name(value)} ({shown})"


def _integer(minimum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_got(value)}")
        if value < minimum:
            raise _Invalid(f"must be >= {minimum} (got {value})")
        return value

    return check


def _number(*, minimum: float | None = None, positive: bool = False) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number, got {_got(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise _Invalid(f"must be a finite number (got {number})")
        if positive and number <= 0:
            raise _Invalid(f"must be > 0 (got {number!r})")
        if minimum is not None and number < minimum:
            raise _Invalid(f"must be >= {minimum:g} (got {number!r})")
        return number

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected a boolean (true or false), got {_got(value)}")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_got(value)}")
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _choice(*choices: str) -> Check:
    """A string among ``choices``, any case, with ``-`` accepted for ``_``."""

    def check(value: Any) -> str:
        normalised = _string(value).strip().lower().replace("-", "_")
        if normalised not in choices:
            raise _Invalid(f"unknown value {value!r} (expected one of: {', '.join(choices)})")
        return normalised

    return check


def _restart_policy(value: Any) -> RestartPolicy:
    if isinstance(value, RestartPolicy):
        return value
    try:
        return RestartPolicy.parse(_string(value))
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table, got {_got(value)}")
    return dict(value)


def _string_table(value: Any) -> dict[str, str]:
    table = _table(value)
    for key, item in table.items():
        if not key or "=" in key or "\0" in key:
            raise _Invalid(f"invalid variable name {key!r}")
        if not isinstance(item, str):
            raise _Invalid(f"{key}: expected a string, got {_got(item)}")
    return table


def _path(value: Any) -> Path:
    """A path as written (``~`` expanded); made absolute against the config dir later."""
    if isinstance(value, Path):  # from @remote(...)
        return value.expanduser()
    return Path(_string(value)).expanduser()


def _path_list(value: Any) -> tuple[Path, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Invalid(f"expected an array of strings, got {_got(value)}")
    paths = []
    for index, item in enumerate(value):
        try:
            paths.append(_path(item))
        except _Invalid as exc:
            raise _Invalid(f"item {index}: {exc}") from None
    return tuple(paths)


def _cpu_list(value: Any) -> tuple[int, ...]:
    """CPU numbers this process may run on (checked against this machine)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid(f"expected a non-empty array of CPU numbers, got {_got(value)}")
    cpus = []
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise _Invalid(
                f"item {index}: expected a CPU number (an integer >= 0), got {_got(item)}"
            )
        cpus.append(item)
    if not hasattr(os, "sched_setaffinity"):
        raise _Invalid("CPU affinity is not supported on this platform")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise _Invalid(
            f"CPU {', '.join(map(str, missing))} not available here "
            f"(this process may use {', '.join(map(str, sorted(allowed)))})"
        )
    return tuple(sorted(set(cpus)))


def _socket_mode(value: Any) -> int:
    mode = _integer(0)(value)
    if mode & ~0o770 or (mode & 0o600) != 0o600:
        raise _Invalid(
            f"must give the owner read and write and others nothing (0o600 or 0o660), got {mode:#o}"
        )
    return mode


def _nonempty_token(value: Any) -> str:
    token = _string(value)
    if not _TOKEN_RE.fullmatch(token):
        raise _Invalid("must be printable ASCII without spaces (it is sent in an HTTP header)")
    return token


_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_PATH_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?")


def _class_path(value: Any) -> str:
    path = _string(value).strip()
    if not _CLASS_PATH_RE.fullmatch(path) or (":" not in path and "." not in path):
        raise _Invalid(f"expected 'module:Class' or 'module.Class' (got {path!r})")
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
    listen = _string(value).strip()
    try:
        _parse_listen(listen)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return listen


# --- isolation = "ray"

_RAY_ADDRESS_FORMS = "expected 'local', 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"


def _ray_address(value: Any) -> str:
    address = _string(value).strip()
    if address in ("local", "auto"):
        return address
    target = address[len("ray://") :] if address.startswith("ray://") else address
    try:
        endpoint = _parse_listen(target)
    except ValueError:
        raise _Invalid(f"{_RAY_ADDRESS_FORMS} (got {address!r})") from None
    if endpoint.unix_path is not None:
        raise _Invalid(f"{_RAY_ADDRESS_FORMS} (got {address!r})")
    return address


def _ray_namespace(value: Any) -> str:
    namespace = _string(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", namespace):
        raise _Invalid("use letters, digits, '_', '.' and '-' (at most 128 characters)")
    return namespace


def _resources(value: Any) -> dict[str, float]:
    table = _table(value)
    found: list[_Invalid] = []
    for key, amount in table.items():
        if not key.strip():
            found.append(_Invalid("a resource name must not be empty", (key,)))
        elif key in ("CPU", "GPU", "memory"):
            found.append(_Invalid(f"set {key!r} with num_cpus, num_gpus or memory", (key,)))
        else:
            try:
                table[key] = _number(minimum=0)(amount)
            except _Invalid as exc:
                found.append(_Invalid(str(exc), (key,)))
    if found:
        raise _Invalid(str(found[0]), found[0].at, tuple(found[1:]))
    return table


def _runtime_env(value: Any) -> dict[str, Any]:
    table = _table(value)
    try:
        json.dumps(table)
    except (TypeError, ValueError) as exc:  # pragma: no cover - TOML values always are
        raise _Invalid(f"must be plain data: {exc}") from None
    return table


def _ray_options(value: Any) -> dict[str, Any]:
    """The per-actor ``ray = {...}`` table, every sub-key checked (a problem names it)."""
    table = _table(value)
    specs = {spec.name: spec for spec in RAY_OPTION_SPECS}
    options: dict[str, Any] = {}
    found: list[_Invalid] = []
    for key, raw in table.items():
        spec = specs.get(key)
        if spec is None:
            found.append(_Invalid(_unknown_key(key, specs), (key,)))
            continue
        try:
            options[key] = spec.check(raw)
        except _Invalid as exc:
            found.extend(_Invalid(str(each), (key, *each.at)) for each in exc.each())
    if found:
        raise _Invalid(str(found[0]), found[0].at, tuple(found[1:]))
    return options


# --------------------------------------------------------------------------- key specs


@dataclass(frozen=True)
class KeySpec:
    """One config key: how it is checked, its default, and what it means (for docs)."""

    name: str
    type: str  # as documented: "float", "integer", "string", "table", ...
    default: Any
    check: Check
    description: str
    # None is accepted (from @remote(...); TOML has no null) and means "unset".
    nullable: bool = False

    @property
    def toml_default(self) -> str:
        """The default as it would be written in TOML ("" when there is none)."""
        value = self.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, RestartPolicy):
            return json.dumps(value.value)
        if isinstance(value, (str, Path)):
            return json.dumps(str(value))
        if isinstance(value, (tuple, list)):
            return json.dumps([str(v) for v in value])
        if isinstance(value, dict):
            return "{}" if not value else json.dumps(value)
        return repr(value)


DAEMON_SPECS: tuple[KeySpec, ...] = (
    KeySpec("listen", "string", "127.0.0.1:7480", _listen,
            "address to serve on: 'HOST:PORT', '[IPv6]:PORT' or 'unix:/path' "
            "(any address but loopback or a Unix socket requires a token)"),
    KeySpec("state_dir", "path", Path(".pulsing"), _path,
            "directory for durable state (stream journal, idempotency store); "
            "relative to the config file"),
    KeySpec("default_timeout", "float", 30.0, _number(positive=True),
            "seconds an ask may take when neither the ask nor its actor sets a timeout"),
    KeySpec("token", "string", None, _nonempty_token,
            "bearer token every request but /v1/health must present", nullable=True),
    KeySpec("token_file", "path", None, _path,
            "file whose content (stripped) is the token; relative to the config file",
            nullable=True),
    KeySpec("grace_period", "float", 10.0, _number(minimum=0),
            "seconds in-flight asks get to finish on SIGTERM/SIGINT before they are cancelled"),
    KeySpec("max_body", "integer", 1048576, _integer(1024),
            "largest request body accepted, in bytes (at least 1024)"),
    KeySpec("pythonpath", "array of paths", (), _path_list,
            "directories prepended to sys.path before actor classes are imported; "
            "relative to the config file"),
    KeySpec("stream_retention_age", "float", 604800.0, _number(positive=True),
            "seconds the chunks of a finished stream are kept"),
    KeySpec("stream_retention_chunks", "integer", 1000000, _integer(1),
            "most chunks kept per stream (the oldest go first)"),
    KeySpec("stream_retention_bytes", "integer", 1073741824, _integer(1),
            "most journal bytes kept across all streams (the oldest chunks go first)"),
    KeySpec("idempotency_retention", "float", 86400.0, _number(positive=True),
            "seconds the outcome of an ask with an idempotency key is remembered"),
    KeySpec("max_stream_readers", "integer", 1024, _integer(1),
            "most stream readers connected at once"),
    KeySpec("cpu_affinity", "array of integers", None, _cpu_list,
            "CPUs the daemon runs on (Linux), event loop included (sync ops follow the "
            "loop's CPU anyway); one CPU also keeps the loop from moving: lower latency "
            "for sync asks. Process-isolated actors are not confined (unset: any CPU)",
            nullable=True),
    KeySpec("events_keep", "integer", 10000, _integer(100),
            "newest events kept in state_dir for `pulsing events` and resuming followers"),
    KeySpec("socket_group", "string", None, _string,
            "Unix socket: group that owns the socket, so its members can use the CLI "
            "(with socket_mode = 0o660)", nullable=True),
    KeySpec("socket_mode", "integer", 0o600, _socket_mode,
            "Unix socket: permission bits, 0o600 (owner only) or 0o660 (owner and "
            "socket_group); no bits for others"),
)  # fmt: skip

ACTOR_SPECS: tuple[KeySpec, ...] = (
    KeySpec("class", "string", None, _class_path,
            "the actor class, 'module:Class' or 'module.Class' (required)"),
    KeySpec("args", "table", {}, _table,
            "keyword arguments for the class's constructor"),
    KeySpec("restart_policy", "string", RestartPolicy.ON_FAILURE, _restart_policy,
            "never | on_failure | always ('on-failure' accepted): restart after a failure, "
            "and with always also after run() returns"),
    KeySpec("max_restarts", "integer", 5, _integer(0),
            "automatic restarts allowed (within restart_window when set) before the actor "
            "is left failed"),
    KeySpec("restart_window", "float", None, _number(positive=True),
            "seconds of the sliding window max_restarts counts within (unset: since the "
            "last reset)", nullable=True),
    KeySpec("min_backoff", "float", 0.2, _number(minimum=0),
            "seconds before the first restart; later delays double, with jitter"),
    KeySpec("max_backoff", "float", 10.0, _number(minimum=0),
            "cap on the restart delay in seconds (at least min_backoff)"),
    KeySpec("timeout", "float", None, _number(positive=True),
            "default ask timeout in seconds for this actor (unset: daemon.default_timeout)",
            nullable=True),
    KeySpec("mailbox_size", "integer", 1024, _integer(1),
            "messages that may wait for the actor; a full mailbox rejects asks"),
    KeySpec("isolation", "string", "inline", _choice("inline", "process", "ray"),
            "inline (in the daemon) | process (own child process; survives hard crashes) | "
            "ray (a Ray actor on the cluster of [daemon.ray]; needs the [ray] extra)"),
    KeySpec("kill_on_timeout", "boolean", False, _boolean,
            "process and ray isolation: kill and restart an instance whose op is still "
            "running at its deadline (counted as a restart with cause timeout)"),
    KeySpec("memory_limit", "integer", None, _integer(1),
            "process isolation: memory limit in bytes; exceeding it is a failure",
            nullable=True),
    KeySpec("cpu_limit", "float", None, _number(positive=True),
            "process isolation: CPU time limit in seconds; exceeding it is a failure",
            nullable=True),
    KeySpec("during_restart", "string", "queue", _choice("queue", "fail_fast"),
            "queue (asks wait for the restart within their deadline) | fail_fast "
            "(recoverable error with retry-after; 'fail-fast' accepted)"),
    KeySpec("reset_after", "float", 300.0, _number(positive=True),
            "seconds of healthy running after which backoff and restart count start over",
            nullable=True),
    KeySpec("env", "table of strings", {}, _string_table,
            "process isolation: extra environment variables for the child process"),
    KeySpec("cwd", "path", None, _path,
            "process isolation: working directory of the child process; relative to the "
            "config file", nullable=True),
    KeySpec("autostart", "boolean", True, _boolean,
            "start with the daemon; false leaves the actor stopped until 'pulsing start'"),
    KeySpec("log_max_bytes", "integer", 10485760, _integer(4096),
            "bytes of this actor's logs kept in state_dir/logs (output, logging records, "
            "the daemon's events about it); the oldest half goes first"),
    KeySpec("ray", "table", {}, _ray_options,
            "ray isolation: the Ray actor's resources and placement, a table of the keys "
            "below (ray.num_cpus, ...)"),
)  # fmt: skip

# [daemon.ray]: the cluster isolation = "ray" actors live on.
RAY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("address", "string", "local", _ray_address,
            "'local': a private Ray instance the daemon starts and stops itself (no "
            "dashboard, no usage reporting, session files under state_dir/ray); 'auto', "
            "'HOST:PORT' or 'ray://HOST:PORT': join an existing cluster"),
    KeySpec("namespace", "string", "pulsing", _ray_namespace,
            "Ray namespace the daemon's actors are created in"),
)  # fmt: skip

# The per-actor ray = {...} table.
RAY_OPTION_SPECS: tuple[KeySpec, ...] = (
    KeySpec("num_cpus", "float", None, _number(minimum=0),
            "CPUs the Ray actor reserves (unset: Ray's default for actors, 1 to be placed "
            "and 0 while it runs)", nullable=True),
    KeySpec("num_gpus", "float", None, _number(minimum=0),
            "GPUs the Ray actor reserves; it lands on a node that has them", nullable=True),
    KeySpec("memory", "integer", None, _integer(1),
            "bytes of memory the Ray actor reserves for scheduling", nullable=True),
    KeySpec("resources", "table", {}, _resources,
            "custom Ray resources to reserve, name = amount (places the actor on nodes "
            "started with them)"),
    KeySpec("runtime_env", "table", {}, _runtime_env,
            "Ray runtime_env of the actor (env_vars, working_dir, pip, ...)"),
)  # fmt: skip

DAEMON_KEYS: dict[str, str] = {spec.name: spec.description for spec in DAEMON_SPECS}
ACTOR_KEYS: dict[str, str] = {spec.name: spec.description for spec in ACTOR_SPECS}

_DAEMON = {spec.name: spec for spec in DAEMON_SPECS}
_ACTOR = {spec.name: spec for spec in ACTOR_SPECS}
# Keys only an actor's own table may set; every other actor key is layered.
_PER_ACTOR = {"class": "set it in each [actors.NAME] table", "args": "set it per actor"}
_LAYERED = {name: spec for name, spec in _ACTOR.items() if name not in _PER_ACTOR}
# Keys that only mean something with isolation = "process" / "ray".
_PROCESS_ONLY = ("memory_limit", "cpu_limit", "env", "cwd")
_RAY_ONLY = ("ray",)
_RAY = {spec.name: spec for spec in RAY_SPECS}
RAY_INSTALL_HINT = "pip install 'pulsing-supervisor[ray]'"


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

    def __init__(self, file: str, locator: _LineLocator | None = None) -> None:
        self.file = file
        self.locator = locator
        self.items: list[ConfigProblem] = []

    def add(self, key: tuple[str, ...], reason: str, *, at: tuple[str, ...] | None = None) -> None:
        line = self.locator.line_of(key if at is None else at) if self.locator else None
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
            except _Invalid as exc:
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
        problems.add((*where, key), f"expected a table, got {_got(value)}")
        return {}
    return value


def _absolute(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- [daemon]


def _daemon_config(table: Mapping[str, Any], base: Path, problems: _Problems) -> DaemonConfig:
    """The [daemon] table; invalid values (already reported) are replaced by defaults."""
    table = dict(table)
    ray_table = table.pop("ray", None)
    values = _read_table(table, _DAEMON, ("daemon",), problems)
    invalid = {key for key, value in values.items() if value is _INVALID}
    settings = {spec.name: spec.default for spec in DAEMON_SPECS}
    settings.update((key, value) for key, value in values.items() if key not in invalid)
    if ray_table is not None:
        if not isinstance(ray_table, dict):
            problems.add(("daemon", "ray"), f"expected a table, got {_got(ray_table)}")
        else:
            ray_values = _read_table(ray_table, _RAY, ("daemon", "ray"), problems)
            for key, value in ray_values.items():
                if value is not _INVALID:
                    settings[f"ray_{key}"] = value

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


def ray_available() -> bool:
    """Whether Ray can be imported here (looked up, not imported: Ray is slow to import)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


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
    if settings["isolation"] != "process":
        # Only the actor's own table: [defaults] may well serve inline actors too.
        for key in _PROCESS_ONLY:
            if key in own:
                problems.add((*where, key), 'only applies with isolation = "process"')
                valid = False
    if settings["isolation"] != "ray":
        for key in _RAY_ONLY:
            if key in own:
                problems.add((*where, key), 'only applies with isolation = "ray"')
                valid = False
    elif not ray_available():
        problems.add(
            (*(origin["isolation"] or where), "isolation"),
            f'isolation = "ray" needs Ray, which is not installed: {RAY_INSTALL_HINT}',
        )
        valid = False
    if settings["cwd"] is not None:
        settings["cwd"] = str(_absolute(base, settings["cwd"]))
        if not Path(settings["cwd"]).is_dir():
            problems.add(
                (*(origin["cwd"] or where), "cwd"), f"no such directory: {settings['cwd']}"
            )
            valid = False
    if not valid:
        return None
    settings["env"] = dict(settings["env"])
    settings["ray"] = dict(settings["ray"])
    return ActorConfig(name=name, class_path=class_path, args=args, cls=cls, **settings)


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

    problems = _Problems(file, _LineLocator(text))
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
            problems.add(("actors", name), f"expected a table, got {_got(table)}")
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
    return Config(path=config_path, daemon=daemon, actors=actors, notify=notify)


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
