"""Reload: re-read the config file the daemon was started with and apply the difference.

All or nothing. The new file is read and checked in full first (on a thread, so the
loop keeps answering); any problem and nothing changes -- the problems come back as
``config check`` reports them. Then, per actor (``plan``):

============ ============================================================================
added        a new ``[actors.NAME]``: a cell is created, started when ``autostart``
removed      its table is gone: unknown to new asks at once; the current message
             finishes, asks still queued get a ``runtime`` error saying it was removed
updated      only supervision keys changed (``SUPERVISION_KEYS``): applied to the live
             cell -- same instance, same restart count, mailbox untouched
restarted    a key of what the instance is changed (anything else): the cell takes the
             new config and restarts once, as ``pulsing restart`` does (mailbox kept,
             counted as an operator restart). A stopped or failed actor is not started:
             it takes the new config and is listed as updated
unchanged    nothing that reaches it changed: not touched at all
============ ============================================================================

``[daemon]`` keys in ``DAEMON_LIVE`` apply at once (a new token, including new content
in the same ``token_file``, is the one checked from the next request on); any other
changed ``[daemon]`` key keeps its old value and is listed in ``needs_daemon_restart``.
A key this module does not know is treated the safe way: a restart of the actor, or
of the daemon.

Inline actors' modules are imported once per daemon: a changed ``class`` path loads the
new class, but new code behind the same path needs ``isolation = "process"`` (each
instance is a fresh interpreter) or a daemon restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pulsing_daemon import log
from pulsing_daemon.config import (
    ActorConfig,
    Config,
    ConfigError,
    ConfigProblem,
    DaemonConfig,
    load_config,
    with_listen,
)
from pulsing_daemon.exceptions import PulsingRuntimeError
from pulsing_daemon.notify import Notifier
from pulsing_daemon.readiness import notify_systemd

if TYPE_CHECKING:
    from pulsing_daemon.http import Auth
    from pulsing_daemon.idempotency import IdempotencyStore
    from pulsing_daemon.streams import StreamManager
    from pulsing_daemon.supervisor import Supervisor

__all__ = [
    "DAEMON_LIVE",
    "SUPERVISION_KEYS",
    "ReloadPlan",
    "Reloader",
    "actor_changes",
    "add_routes",
    "make_plan",
]

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

# How long a reload answer waits for removed and restarted actors to finish their current
# message and for new instances to start; what is slower goes on after the answer.
SETTLE_WAIT = 10.0
# sys.setswitchinterval while the file is parsed on a thread (default 5 ms): the event
# loop waits at most this long for the GIL, so asks keep their p99 during a reload.
PARSE_SWITCH_INTERVAL = 0.0005


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
    changed = [key for key in after if before.get(key) != after[key]]
    return sorted("class" if key == "class_path" else key for key in changed)


def _daemon_changes(old: DaemonConfig, new: DaemonConfig, tokens: tuple[Any, Any]) -> list[str]:
    changed = [
        f.name
        for f in dataclasses.fields(old)
        if f.name not in ("token", "token_file") and getattr(old, f.name) != getattr(new, f.name)
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
    same_default = old.daemon.default_timeout == new.daemon.default_timeout
    for name, actor in new.actors.items():
        before = old.actors.get(name)
        if before is None:
            plan.added.append(name)
            continue
        if same_default and before == actor:  # the common case, without the key walk
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


def _kept_daemon(old: DaemonConfig, new: DaemonConfig) -> DaemonConfig:
    """The new [daemon] table with every key that needs a daemon restart kept as it runs."""
    keep = {
        f.name: getattr(old, f.name) for f in dataclasses.fields(old) if f.name not in DAEMON_LIVE
    }
    return dataclasses.replace(new, **keep)


class ReloadRefused(PulsingRuntimeError):
    """The new config has problems; nothing changed (``problems`` in the envelope)."""

    def __init__(self, path: Path, problems: list[ConfigProblem]) -> None:
        super().__init__(
            f"{len(problems)} problem(s) in {path}; nothing changed, the daemon keeps "
            "running on its current config",
            status=422,
            file=str(path),
            changed=False,
            problems=[
                {"file": p.file, "key": p.key, "line": p.line, "reason": p.reason} for p in problems
            ],
            hint=f"run `pulsing config check {path}`, fix the file, reload again",
        )
        self.type = "ConfigError"
        self.problems = problems


class Reloader:
    """Applies reloads to a running daemon, one at a time."""

    def __init__(
        self,
        supervisor: Supervisor,
        streams: StreamManager,
        idempotency: IdempotencyStore,
        auth: Auth,
        *,
        listen_override: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.notifier = notifier
        self.streams = streams
        self.idempotency = idempotency
        self.auth = auth
        self.listen_override = listen_override
        self.token = auth.token
        self.shutting_down = False
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    async def reload(self, *, dry_run: bool = False, trigger: str = "http") -> ReloadPlan:
        """Read the file again and apply it; raises ReloadRefused when it has problems."""
        if self.shutting_down:
            raise PulsingRuntimeError("daemon is shutting down", recoverable=False, status=503)
        async with self._lock:
            began = time.monotonic()
            if not dry_run:
                # MONOTONIC_USEC: systemd (>= 253) matches the READY=1 that follows to it.
                now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                notify_systemd(f"RELOADING=1\nMONOTONIC_USEC={now_us}")
            collecting = gc.isenabled()
            gc.disable()  # see _settle_heap
            applied = False
            try:
                old = self.supervisor.config
                new, token, plan = await self._read(trigger, old)
                if not dry_run:
                    await self._apply(old, new, token, plan)
                    if self.notifier is not None and new.notify != old.notify:
                        self.notifier.configure(new.notify)  # [[notify]] hooks apply at once
                    applied = True
            finally:
                _settle_heap(collecting, applied)
                if not dry_run:
                    notify_systemd("READY=1")
            took = round(time.monotonic() - began, 3)
            if not dry_run:
                summary = plan.summary()
                log.event("reload", trigger=trigger, seconds=took, **_log_fields(summary))
                self.supervisor.events.emit("reload", None, trigger=trigger, **summary)
            return plan

    async def _read(self, trigger: str, old: Config) -> tuple[Config, str | None, ReloadPlan]:
        """Read, check and compare the file on a thread (the GIL handed back often, so
        asks keep their latency while a large file is parsed)."""
        path = old.path
        switch = sys.getswitchinterval()
        sys.setswitchinterval(PARSE_SWITCH_INTERVAL)
        try:
            return await asyncio.to_thread(self._load, old)
        except ConfigError as exc:
            for problem in exc.problems:
                log.event(
                    "reload_failed", category="runtime", level=logging.WARNING,
                    trigger=trigger, msg=str(problem),
                )  # fmt: skip
            log.event(
                "reload_failed", category="runtime", level=logging.WARNING, trigger=trigger,
                problems=len(exc.problems), msg="nothing changed; still running the old config",
            )  # fmt: skip
            self.supervisor.events.emit(
                "reload", None, trigger=trigger, ok=False, problems=[str(p) for p in exc.problems]
            )
            raise ReloadRefused(path, exc.problems) from None
        finally:
            sys.setswitchinterval(switch)

    def _load(self, old: Config) -> tuple[Config, str | None, ReloadPlan]:
        """On the reload thread. Reading a cell's state from here is a plain attribute
        read; ``_apply`` checks it again on the loop before restarting anything."""
        path = old.path
        new = load_config(path)
        if self.listen_override is not None:
            new = with_listen(new, self.listen_override)
        try:
            token = new.daemon.resolved_token()
        except OSError as exc:  # the file changed again since it was checked
            raise ConfigError(
                [ConfigProblem(str(path), "daemon.token_file", None, f"cannot read: {exc}")]
            ) from None
        return new, token, make_plan(old, new, active=self._active, tokens=(self.token, token))

    def _active(self, name: str) -> bool:
        cell = self.supervisor.cells.get(name)
        return cell is not None and cell.state.value in ("starting", "running", "backoff")

    async def _apply(self, old: Config, new: Config, token: str | None, plan: ReloadPlan) -> None:
        supervisor = self.supervisor
        daemon = _kept_daemon(old.daemon, new.daemon)
        supervisor.config = dataclasses.replace(new, daemon=daemon)
        # [daemon] keys that take effect at once.
        self.token = token
        self.auth.set(token)
        self.streams.config = daemon
        self.idempotency.retention = daemon.idempotency_retention
        supervisor.events.keep = daemon.events_keep
        for name in plan.updated:
            supervisor.cells[name].reconfigure(new.actors[name], daemon.default_timeout)
        waits: list[asyncio.Future[Any]] = []
        for name in plan.removed:
            cell = supervisor.cells.pop(name)
            reason = f"actor {name} was removed from the config (reload)"
            waits.append(asyncio.ensure_future(cell.retire(reason)))
        for name in plan.restarted:
            cell = supervisor.cells[name]
            cell.reconfigure(new.actors[name], daemon.default_timeout)
            if self._active(name):  # it may have stopped while the file was read
                waits.append(asyncio.ensure_future(_restart(cell)))
        for name in plan.added:
            cell = supervisor.add(new.actors[name])
            if cell.config.autostart:
                cell.start()
                waits.append(asyncio.ensure_future(cell.wait_started(timeout=SETTLE_WAIT)))
        if waits:
            _, pending = await asyncio.wait(waits, timeout=SETTLE_WAIT)
            for task in pending:  # an op still running on a removed or restarted actor
                self._background.add(task)
                task.add_done_callback(self._background.discard)


def _settle_heap(collecting: bool, applied: bool) -> None:
    """The cyclic garbage collector is off while a reload reads and applies the file.

    A 10,000-actor file makes ~10^5 long-lived objects; left on, their arrival triggers
    a full collection over the whole heap -- 10^5..10^6 objects, 50-200 ms holding the
    GIL -- in the middle of the asks. After an applied reload the heap is frozen
    (``gc.freeze``): what is alive now (the new config, the cells) is never scanned
    again, so later collections stay small. The price: a reference cycle among objects
    alive at that moment that becomes garbage later is never collected (acyclic
    garbage is freed by reference counting as always); the daemon's long-lived objects
    do not form such cycles.
    """
    if applied:
        gc.freeze()
    if collecting:
        gc.enable()


async def _restart(cell: Any) -> None:
    await cell.restart()
    await cell.wait_started(timeout=SETTLE_WAIT)


def _log_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """Lists as comma-joined names for the logfmt line; empty ones left out."""
    fields: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, list):
            if value:
                fields[key] = ",".join(value)
        else:
            fields[key] = value
    return fields


# ---------------------------------------------------------------------- HTTP
RELOADER = web.AppKey("reloader", Reloader)


async def reload_route(request: web.Request) -> web.Response:
    """``POST /v1/reload`` with ``{"dry_run": bool}``: the plan, or a 422 with the problems."""
    from pulsing_daemon.http import bad_request, json_response, read_json

    body = await read_json(request)
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad_request('"dry_run" must be true or false')
    unknown = sorted(set(body) - {"dry_run"})
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(map(repr, unknown))}; expected dry_run")
    reloader = request.app[RELOADER]
    plan = await reloader.reload(dry_run=dry_run, trigger="http")
    return json_response(plan.to_dict(dry_run=dry_run, config=str(reloader.supervisor.config.path)))


def add_routes(app: web.Application, reloader: Reloader, expect_handler: Any) -> None:
    app[RELOADER] = reloader
    app.router.add_post("/v1/reload", reload_route, expect_handler=expect_handler)
