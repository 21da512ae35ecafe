"""The TOML config file -> frozen dataclasses, validated eagerly.

Every problem in a file is collected in one pass and raised together as a
``ConfigError`` whose ``problems`` name the file, the key path, the line (when it
can be found) and the reason::

    pulsing.toml:12: actors.worker.min_backoff: must be >= 0 (got -1.0)

Each key is described once, in ``DAEMON_SPECS`` / ``ACTOR_SPECS`` (config_keys.py:
type, default, check, description); ``config_tables.read_table`` reads any table
against such a list. An actor key
is looked up in four layers, highest first: the actor's own table, the class's
``@remote(...)`` options, ``[defaults]``, the built-in default.

Only the classes named in the config are imported (config_classes.py), after the
``pythonpath`` directories are prepended to ``sys.path``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulsing_daemon.config_classes import (
    check_args,
    import_class,
    load_class,
    prepend_sys_path,
)
from pulsing_daemon.config_keys import (
    ACTOR_KEYS,
    ACTOR_SPECS,
    DAEMON_KEYS,
    DAEMON_SPECS,
    MAX_UNIX_PATH,
    TOKEN_RE,
    parse_listen,
)
from pulsing_daemon.config_tables import (
    DECORATOR,
    INVALID,
    ConfigError,
    ConfigProblem,
    Problems,
    read_table,
    sub_table,
    syntax_problem,
    unknown_key,
)
from pulsing_daemon.hosts import registry
from pulsing_daemon.keyspec import KeySpec, got
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
    "build_config",
    "check_config",
    "import_class",
    "load_config",
    "parse_config",
    "parse_toml",
    "read_config_text",
    "same_value",
]

ACTOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TOP_LEVEL_TABLES = ("daemon", "defaults", "actors", "notify")


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

    def restart_rules(self) -> dict[str, Any]:
        """The restart settings, as ``policy.RestartTracker`` (and its reconfigure) takes them."""
        return {
            "policy": self.restart_policy,
            "max_restarts": self.max_restarts,
            "min_backoff": self.min_backoff,
            "max_backoff": self.max_backoff,
            "restart_window": self.restart_window,
            "reset_after": self.reset_after,
        }


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
        return parse_listen(self.listen).host

    @property
    def port(self) -> int | None:
        """The TCP port; None for a Unix socket."""
        return parse_listen(self.listen).port

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


_DAEMON = {spec.name: spec for spec in DAEMON_SPECS}
_ACTOR = {spec.name: spec for spec in ACTOR_SPECS}
# Keys only an actor's own table may set; every other actor key is layered.
_PER_ACTOR = {"class": "set it in each [actors.NAME] table", "args": "set it per actor"}
_LAYERED = {name: spec for name, spec in _ACTOR.items() if name not in _PER_ACTOR}
_LAYERED_DEFAULTS = {name: spec.default for name, spec in _LAYERED.items()}
# The keys the hosts declare: they go to ActorConfig.host_keys.
_HOST_KEYS = tuple(spec.name for spec in registry.actor_keys())


def _absolute(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------- [daemon]


def _daemon_config(table: Mapping[str, Any], base: Path, problems: Problems) -> DaemonConfig:
    """The [daemon] table; invalid values (already reported) are replaced by defaults."""
    table, hosts = _host_tables(table, problems)
    values = read_table(table, _DAEMON, ("daemon",), problems)
    invalid = {key for key, value in values.items() if value is INVALID}
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
        endpoint = parse_listen(settings["listen"])
        if endpoint.unix_path is not None:
            socket_path = _absolute(base, Path(endpoint.unix_path).expanduser())
            settings["listen"] = f"unix:{socket_path}"
            size = len(str(socket_path).encode())
            if size > MAX_UNIX_PATH:
                problems.add(
                    ("daemon", "listen"),
                    f"unix socket path is too long ({size} bytes, at most {MAX_UNIX_PATH}): "
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
    table: Mapping[str, Any], problems: Problems
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
        values = read_table(raw, specs, where, problems)
        hosts[isolation] = {spec.name: spec.default for spec in host.keys.daemon}
        hosts[isolation].update((k, v) for k, v in values.items() if v is not INVALID)
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
    if not TOKEN_RE.fullmatch(content):
        return f"the token in {token_file} must be printable ASCII without spaces"
    return None


# --------------------------------------------------------------------------- [actors.NAME]


class _Classes:
    """The classes of one config read, each imported and read once: a class path, and
    the options a class gives itself (``@remote``). 10,000 actors of a few classes did
    both per actor (with binding their args, ``config_classes.check_args``: a third of
    building each actor's config). What adds a problem is done again for each actor
    that meets it, so that each gets its own."""

    __slots__ = ("classes", "options_of")

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self.options_of: dict[type, dict[str, Any]] = {}

    def load(self, class_path: str, where: tuple[str, ...], problems: Problems) -> type | None:
        cls = self.classes.get(class_path)
        if cls is None:
            cls = load_class(class_path, where, problems)
            if cls is not None:
                self.classes[class_path] = cls
        return cls

    def options(self, cls: type, where: tuple[str, ...], problems: Problems) -> dict[str, Any]:
        """The class's own options as a layer (shared read-only by its actors)."""
        options = self.options_of.get(cls)
        if options is None:
            found = len(problems.items)
            options = read_table(
                class_options(cls), _LAYERED, (*where, DECORATOR), problems,
                forbidden=_PER_ACTOR, at=(*where, "class"),
            )  # fmt: skip
            if len(problems.items) == found:
                self.options_of[cls] = options
        return options


def _actor_config(
    name: str,
    table: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base: Path,
    problems: Problems,
    classes: _Classes,
    *,
    import_classes: bool,
) -> ActorConfig | None:
    where = ("actors", name)
    own = read_table(table, _ACTOR, where, problems)
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
    if import_classes and class_path not in (None, INVALID):
        cls = classes.load(class_path, where, problems)
        if cls is not None:
            decorator = (*where, DECORATOR)
            layers.append((classes.options(cls, where, problems), decorator))
            if args is not INVALID:
                check_args(cls, args, where, problems)
        else:
            valid = False
    layers.append((defaults, ("defaults",)))

    # The lowest layer first, each over the one below it (every layer holds only
    # layered keys: read_table keeps the keys of its specs).
    settings = dict(_LAYERED_DEFAULTS)
    for values, _ in reversed(layers):
        settings.update(values)
    if INVALID in settings.values() or class_path is INVALID or args is INVALID:
        return None

    def origin(key: str) -> tuple[str, ...]:
        """Where ``key``'s value came from (() for the built-in default)."""
        return next((source for values, source in layers if key in values), ())

    if settings["min_backoff"] > settings["max_backoff"]:
        # Blame the more specific of the two settings (the min when equally specific).
        rank = [where, (*where, DECORATOR), ("defaults",), ()]
        blamed = min(("min_backoff", "max_backoff"), key=lambda k: rank.index(origin(k)))
        problems.add(
            (*(origin(blamed) or where), blamed),
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
                (*(origin("isolation") or where), "isolation"),
                f'isolation = "{isolation}" {missing}',
            )
            valid = False
    host_keys = {key: settings.pop(key) for key in _HOST_KEYS}
    found: list[str] = []

    def problem(key: str, reason: str) -> None:
        problems.add((*(origin(key) or where), key), reason)
        found.append(key)

    for host in registry.hosts().values():
        if host.keys.finish is not None:
            host.keys.finish(host_keys, base, problem)
    if not valid or found:
        return None
    host_keys = registry.shared_host_keys(host_keys)
    return ActorConfig(
        name=name, class_path=class_path, args=args, cls=cls, host_keys=host_keys, **settings
    )


# --------------------------------------------------------------------------- entry points


def parse_config(
    text: str, path: str | Path = "<string>", *, import_classes: bool = True
) -> Config:
    """Read config ``text`` (from the file ``path``, which anchors relative paths).

    Raises ConfigError listing every problem found.
    """
    return build_config(parse_toml(text, path), text, path, import_classes=import_classes)


def parse_toml(text: str, path: str | Path = "<string>") -> dict[str, Any]:
    """The TOML document ``text`` as tables (a syntax error is a ConfigError)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([syntax_problem(str(path), text, exc)]) from None


def build_config(
    data: Mapping[str, Any],
    text: str,
    path: str | Path = "<string>",
    *,
    import_classes: bool = True,
    known: tuple[Mapping[str, Any], Config] | None = None,
) -> Config:
    """The config of the parsed document ``data`` (``parse_toml`` of ``text``).

    ``known``: (tables, config) of a document built before in this process from the
    same ``path``, with the same ``import_classes``. Where both have the same
    ``[daemon]`` and ``[defaults]`` tables, an actor whose own table is equal to its
    table there is taken as it was built there: the same tables give the same
    config. (A reload compares the running file with a new one this way, building
    only the actors whose tables differ.)
    """
    file = str(path)
    config_path = Path(path).expanduser().absolute()
    base = config_path.parent
    problems = Problems(file, text)
    for key in data:
        if key not in TOP_LEVEL_TABLES:
            problems.add((key,), unknown_key(key, TOP_LEVEL_TABLES))

    daemon = _daemon_config(sub_table(data, "daemon", (), problems), base, problems)
    defaults = read_table(
        sub_table(data, "defaults", (), problems), _LAYERED, ("defaults",), problems,
        forbidden=_PER_ACTOR,
    )  # fmt: skip
    if import_classes:
        prepend_sys_path(daemon.pythonpath)

    classes = _Classes()
    known_tables: Mapping[str, Any] = {}
    known_actors: Mapping[str, ActorConfig] = {}
    if known is not None and all(
        same_value(data.get(k), known[0].get(k)) for k in ("daemon", "defaults")
    ):
        known_tables, known_actors = known[0].get("actors", {}), known[1].actors
    actors: dict[str, ActorConfig] = {}
    for name, table in sub_table(data, "actors", (), problems).items():
        if not isinstance(table, dict):
            problems.add(("actors", name), f"expected a table, got {got(table)}")
            continue
        if name in known_actors and same_value(known_tables.get(name), table):
            actors[name] = known_actors[name]
            continue
        actor = _actor_config(
            name, table, defaults, base, problems, classes, import_classes=import_classes
        )
        if actor is not None:
            actors[name] = actor

    notify: tuple[Any, ...] = ()
    if "notify" in data:
        from pulsing_daemon.notify import parse_notify

        notify = parse_notify(data["notify"], problems)

    if problems.items:
        raise ConfigError(problems.sorted())
    return Config(path=config_path, daemon=daemon, actors=actors, notify=notify, text=text)


def same_value(a: Any, b: Any) -> bool:
    """Equal TOML values, types and key order included (``1 == 1.0 == True`` in Python;
    an actor's ``args`` must not take one for the other), ``nan`` equal to ``nan``."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return len(a) == len(b) and all(
            k == j and same_value(v, w) for (k, v), (j, w) in zip(a.items(), b.items(), strict=True)
        )
    if type(a) is list or type(a) is tuple:
        return len(a) == len(b) and all(map(same_value, a, b))
    return bool(a == b) or (type(a) is float and a != a and b != b)  # nan, as written


def load_config(path: str | Path, *, import_classes: bool = True) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError."""
    return parse_config(read_config_text(path), path, import_classes=import_classes)


def read_config_text(path: str | Path) -> str:
    """The text of the config file at ``path``; raises ConfigError when it cannot be read."""
    try:
        return Path(path).expanduser().read_bytes().decode("utf-8")
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
        endpoint = parse_listen(listen.strip())
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
