"""A reload's reading side, in a child process (``reload_plan.main``, started by reload.py).

Reading and checking a large config (10,000 actors: ~0.3 s of TOML parsing, class
imports and comparisons) on a thread of the daemon would share the GIL with the event
loop, and every ask answered meanwhile would wait for it. Here it runs in a child on
another CPU; the daemon gets back only what it needs to apply the change: the plan,
the new ``[daemon]`` table and ``[[notify]]`` hooks, and the configs of the actors that
changed. Unchanged actors keep the objects the daemon already has.

The child checks the whole new file, then compares it against the text the daemon runs
on (``Config.text``), read again the same way -- classes imported, so that options a
class gives itself (``@remote(max_restarts=...)``) count on both sides -- with the
``[daemon]`` table the daemon really runs with. Of the running text, only the actors
whose tables differ from the new file's are built again (``build_config``'s ``known``);
its tables come from the reader's cache in ``state_dir`` when the last reload read it
(``_TablesCache``). Whether a changed actor is restarted or only updated depends on its
state, which the daemon decides when it applies the plan.

stdin: a pickled :class:`Request`; stdout: a pickled :class:`Answer`. Whatever user code
prints while its module is imported goes to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pulsing_daemon.config import (
    ActorConfig,
    Config,
    ConfigError,
    ConfigProblem,
    DaemonConfig,
    build_config,
    parse_toml,
    read_config_text,
    same_value,
    with_listen,
)

# Actor keys a running cell takes live (CONTRACT §9). ``autostart`` only matters when the
# daemon starts (or the actor is added), so it is live too. ``timeout`` is compared as the
# effective default (the actor's, else daemon.default_timeout).
SUPERVISION_KEYS = frozenset({
    "restart_policy", "max_restarts", "restart_window", "min_backoff", "max_backoff",
    "timeout", "mailbox_size", "during_restart", "reset_after", "autostart",
})  # fmt: skip

# [daemon] keys applied without a daemon restart. ``token``/``token_file`` are compared
# as the token they resolve to.
DAEMON_LIVE = frozenset({
    "token", "token_file", "default_timeout", "grace_period", "pythonpath",
    "stream_retention_age", "stream_retention_chunks", "stream_retention_bytes",
    "idempotency_retention", "events_keep",
})  # fmt: skip


@dataclass
class ReloadPlan:
    """What a reload does (or, with ``dry_run``, would do). ``to_dict`` is the wire answer."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    needs_daemon_restart: list[str] = field(default_factory=list)
    daemon_updated: list[str] = field(default_factory=list)  # [daemon] keys applied live
    changes: dict[str, list[str]] = field(default_factory=dict)  # actor -> changed keys

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**body, **extra}

    def summary(self) -> dict[str, Any]:
        """For the event and the log line: names, except the (possibly long) unchanged list."""
        body = {k: v for k, v in self.to_dict().items() if k != "changes"}
        body["unchanged"] = len(self.unchanged)
        return body


def _effective(actor: ActorConfig, daemon: DaemonConfig) -> dict[str, Any]:
    """Every key of an actor as the cell sees it (``timeout`` after the daemon default)."""
    values = {f.name: getattr(actor, f.name) for f in dataclasses.fields(actor) if f.compare}
    del values["name"]
    values.update(values.pop("host_keys"))  # a host's keys by their own names
    values["timeout"] = actor.timeout or daemon.default_timeout
    return values


def actor_changes(
    old: ActorConfig, new: ActorConfig, old_daemon: DaemonConfig, new_daemon: DaemonConfig
) -> list[str]:
    """The keys whose effective value differs, sorted (``class_path`` shown as ``class``)."""
    before, after = _effective(old, old_daemon), _effective(new, new_daemon)
    changed = [key for key in after if not same_value(before.get(key), after[key])]
    return sorted("class" if key == "class_path" else key for key in changed)


def _daemon_changes(old: DaemonConfig, new: DaemonConfig, tokens: tuple[Any, Any]) -> list[str]:
    changed = [
        f.name
        for f in dataclasses.fields(old)
        if f.name not in ("token", "token_file")
        and not same_value(getattr(old, f.name), getattr(new, f.name))
    ]
    if tokens[0] != tokens[1]:
        changed.append("token")
    return sorted(changed)


def make_plan(
    old: Config,
    new: Config,
    *,
    active: Collection[str] | Callable[[str], bool] = (),
    tokens: tuple[Any, Any] = (None, None),
) -> ReloadPlan:
    """Compare two configs. ``active``: actors with an instance to restart (running,
    starting or in backoff); ``tokens``: the (old, new) resolved tokens."""
    is_active = active if callable(active) else active.__contains__
    plan = ReloadPlan()
    same_default = same_value(old.daemon.default_timeout, new.daemon.default_timeout)
    for name, actor in new.actors.items():
        before = old.actors.get(name)
        if before is None:
            plan.added.append(name)
            continue
        # The common case, without the key walk: the reader gives the running config's
        # object for an actor whose table did not change (config.build_config's known).
        if same_default and before is actor:
            plan.unchanged.append(name)
            continue
        changed = actor_changes(before, actor, old.daemon, new.daemon)
        if not changed:
            plan.unchanged.append(name)
            continue
        plan.changes[name] = changed
        instance_keys = [key for key in changed if key not in SUPERVISION_KEYS]
        if instance_keys and is_active(name):
            plan.restarted.append(name)
        else:
            plan.updated.append(name)
    plan.removed = [name for name in old.actors if name not in new.actors]
    for key in _daemon_changes(old.daemon, new.daemon, tokens):
        target = plan.daemon_updated if key in DAEMON_LIVE else plan.needs_daemon_restart
        target.append(f"daemon.{key}")
    return plan


def kept_daemon(old: DaemonConfig, new: DaemonConfig) -> DaemonConfig:
    """The new [daemon] table with every key that needs a daemon restart kept as it runs."""
    keep = {
        f.name: getattr(old, f.name) for f in dataclasses.fields(old) if f.name not in DAEMON_LIVE
    }
    return dataclasses.replace(new, **keep)


# ---------------------------------------------------------------------- the child
@dataclass
class Request:
    path: str
    old_text: str
    running: DaemonConfig  # the [daemon] table the daemon runs with (kept keys included)
    token: str | None  # the token the daemon checks now
    listen_override: str | None
    sys_path: list[str]
    # Where the reader keeps the tables of the texts it last read (None: nowhere).
    tables_cache: str | None = None


@dataclass
class Answer:
    problems: list[ConfigProblem] = field(default_factory=list)
    plan: Any = None  # reload.ReloadPlan; restarted = changed keys of what the instance is
    daemon: DaemonConfig | None = None
    notify: tuple[Any, ...] = ()
    token: str | None = None
    text: str = ""
    # The new file's actors, in order; None: the same names in the same order as the
    # running text (the daemon then copies its own table instead of rebuilding it).
    order: list[str] | None = field(default_factory=list)
    changed: dict[str, ActorConfig] = field(default_factory=dict)  # classes not included
    # True: the running text no longer passes the checks that look outside the file
    # (a process actor's cwd or the token_file since removed, a CPU gone, a class that
    # no longer imports or takes its arguments): ``plan`` is
    # None, ``changed`` holds every actor, and the daemon compares with what it runs.
    whole: bool = False


def read(request: Request) -> Answer:
    """Check the new file and compare it with the running config."""
    try:
        text = read_config_text(request.path)
        tables = parse_toml(text, request.path)
        new = build_config(tables, text, request.path)
        if request.listen_override is not None:
            new = with_listen(new, request.listen_override)
        try:
            token = new.daemon.resolved_token()
        except OSError as exc:  # the file changed again since it was checked
            raise ConfigError(
                [ConfigProblem(request.path, "daemon.token_file", None, f"cannot read: {exc}")]
            ) from None
    except ConfigError as exc:
        return Answer(problems=exc.problems)
    answer = Answer(
        daemon=new.daemon, notify=new.notify, token=token, text=new.text, order=list(new.actors)
    )
    try:
        # Only the actors whose tables differ from the new file's are built again: the
        # others are the same config (build_config's ``known``).
        cache = _TablesCache(request.tables_cache)
        running_key = _digest(request.old_text)
        running_tables = cache.entries.get(running_key)
        if running_tables is None:
            running_tables = parse_toml(request.old_text, request.path)
        old = build_config(running_tables, request.old_text, request.path, known=(tables, new))
    except ConfigError:
        answer.whole = True
        answer.changed = {name: dataclasses.replace(a, cls=None) for name, a in new.actors.items()}
        return answer
    old = dataclasses.replace(old, daemon=request.running)
    if answer.order == list(old.actors):
        answer.order = None
    plan = make_plan(old, new, active=lambda _name: True, tokens=(request.token, token))
    touched = {*plan.added, *plan.updated, *plan.restarted}
    answer.plan = plan
    answer.changed = {name: dataclasses.replace(new.actors[name], cls=None) for name in touched}
    cache.put({running_key: running_tables, _digest(text): tables})
    return answer


class _TablesCache:
    """The TOML tables of the texts the reader last read, in a file in ``state_dir``.

    The next reload's running text is this reload's new one (or, after a dry run or a
    refused reload, still its running one): parsing it again is ~0.1 s of a
    10,000-actor file, loading its tables from here ~10 ms. Entries are found by the
    SHA-256 of their text; a file that is missing, unreadable or from another
    version is ignored, and the text is parsed. So is one that is not ours alone
    (another owner, or writable by others): ``state_dir`` may be group-writable, and
    what is unpickled here must come from this user.
    """

    VERSION = 1

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.entries: dict[bytes, Any] = {}  # _digest(text) -> its tables
        if path is None:
            return
        try:
            with open(path, "rb") as file:
                info = os.fstat(file.fileno())
                if info.st_uid != os.getuid() or info.st_mode & 0o077:
                    return
                version, entries = pickle.load(file)
            if version == self.VERSION and isinstance(entries, dict):
                self.entries = entries
        except Exception:  # missing, truncated, another version: parse instead
            pass

    def put(self, entries: dict[bytes, dict[str, Any]]) -> None:
        """Keep exactly these (``_digest`` of a text -> its tables); written to a new
        file, then renamed."""
        if self.path is None:
            return
        if entries.keys() == self.entries.keys():
            return
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            # Owner only, like the file it comes from may need (a [daemon] token).
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                pickle.dump((self.VERSION, entries), file, pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, self.path)
        except OSError:  # a full disk: the next reload parses the text
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def main() -> None:
    # Background work: where it shares a CPU with the daemon, the daemon's asks go first.
    os.nice(10)
    answer_to = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # user code's prints (Python or C) go to stderr, not into the answer
    request: Request = pickle.load(sys.stdin.buffer)
    sys.path[:] = request.sys_path
    answer = read(request)
    answer_to.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    answer_to.close()


if __name__ == "__main__":
    main()


__all__ = [
    "DAEMON_LIVE",
    "SUPERVISION_KEYS",
    "Answer",
    "ReloadPlan",
    "Request",
    "actor_changes",
    "kept_daemon",
    "make_plan",
    "read",
]
