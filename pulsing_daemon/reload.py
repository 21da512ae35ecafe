"""Reload: re-read the config file the daemon was started with and apply the difference.

All or nothing. The new file is read and checked in full first, in a child process
(``reload_plan``: the loop keeps answering at full speed); any problem and nothing
changes -- the problems come back as ``config check`` reports them. Then, per actor (``plan``):

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
import functools
import gc
import logging
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pulsing_daemon import log, spawn
from pulsing_daemon.config import (
    ActorConfig,
    Config,
    ConfigError,
    ConfigProblem,
)
from pulsing_daemon.config_classes import import_class, prepend_sys_path
from pulsing_daemon.exceptions import PulsingRuntimeError
from pulsing_daemon.notify import Notifier
from pulsing_daemon.readiness import notify_systemd
from pulsing_daemon.reload_plan import (
    DAEMON_LIVE,
    SUPERVISION_KEYS,
    Answer,
    ReloadPlan,
    Request,
    actor_changes,
    kept_daemon,
    make_plan,
)

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

# How long a reload answer waits for removed and restarted actors to finish their current
# message and for new instances to start; what is slower goes on after the answer.
SETTLE_WAIT = 10.0
# Seconds the config reader (a child process) may take before the reload is refused.
READ_TIMEOUT = 60.0
# The reader's cache of parsed config texts, in state_dir (reload_plan._TablesCache).
TABLES_CACHE = "reload-tables.pickle"
# The child runs ``reload_plan.main`` with this package importable.
_READER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pulsing_daemon.reload_plan import main; main()"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


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
        """Read, check and compare the file in a child process (``reload_plan``), so
        the loop keeps answering asks at full speed while a large file is parsed."""
        try:
            answer = await self._read_in_child(old)
            if answer.problems:
                raise ConfigError(answer.problems)
            if answer.whole:  # rare: compared here, with every actor's config (see Answer)
                new = _assemble(old, answer)
                plan = make_plan(old, new, active=self._active, tokens=(self.token, answer.token))
                return new, answer.token, plan
            new = _assemble(old, answer)
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
            raise ReloadRefused(old.path, exc.problems) from None
        plan: ReloadPlan = answer.plan
        # A changed instance with nothing running (stopped, failed) only takes the config.
        idle = [name for name in plan.restarted if not self._active(name)]
        if idle:
            now_updated = {*plan.updated, *idle}
            plan.updated = [name for name in new.actors if name in now_updated]
            plan.restarted = [name for name in plan.restarted if name not in now_updated]
        return new, answer.token, plan

    async def _read_in_child(self, old: Config) -> Answer:
        request = Request(
            path=str(old.path),
            old_text=old.text,
            running=old.daemon,
            token=self.token,
            listen_override=self.listen_override,
            sys_path=list(sys.path),
            tables_cache=str(old.daemon.state_dir / TABLES_CACHE),
        )
        problem = functools.partial(ConfigProblem, str(old.path), "", None)
        try:
            # The request from a file: no pipe for the loop to feed while the child reads.
            # Nameless, in state_dir (writable wherever the daemon runs, owner only).
            # spawn.start, not the loop's subprocess_exec: no loop stall while it forks.
            with tempfile.TemporaryFile(dir=old.daemon.state_dir) as data:
                pickle.dump(request, data, pickle.HIGHEST_PROTOCOL)
                data.seek(0)
                child = await spawn.start(
                    [sys.executable, "-c", _READER, _PACKAGE_ROOT],
                    stdin=data, stdout=spawn.PIPE, stderr=spawn.PIPE,
                )  # fmt: skip
        except OSError as exc:
            raise ConfigError([problem(f"cannot start the config reader: {exc}")]) from None
        assert child.stdout is not None and child.stderr is not None
        try:
            out, err, _ = await asyncio.wait_for(
                asyncio.gather(child.stdout.read(), child.stderr.read(), child.wait()),
                READ_TIMEOUT,
            )
        except asyncio.TimeoutError:
            raise ConfigError(
                [problem(f"reading took over {READ_TIMEOUT:g}s (does an actor module block "
                         "when imported?)")]
            ) from None  # fmt: skip
        finally:
            if child.returncode is None:  # timed out, or cancelled: no child left behind
                child.kill()
                await child.wait()
        if err.strip():  # what actor modules printed while imported
            text = err.decode(errors="replace")[-4000:]
            log.event("reload_output", level=logging.DEBUG, msg=text)
        if child.returncode != 0 or not out:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ConfigError(
                [problem(f"the config reader failed (exit {child.returncode}): {last[0][:300]}")]
            )
        answer: Answer = pickle.loads(out)
        return answer

    def _active(self, name: str) -> bool:
        cell = self.supervisor.cells.get(name)
        return cell is not None and cell.state.value in ("starting", "running", "backoff")

    async def _apply(self, old: Config, new: Config, token: str | None, plan: ReloadPlan) -> None:
        supervisor = self.supervisor
        daemon = kept_daemon(old.daemon, new.daemon)
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


def _assemble(old: Config, answer: Answer) -> Config:
    """The new config: the changed actors from the reader (their classes imported here),
    the unchanged ones as the daemon has them."""
    assert answer.daemon is not None
    prepend_sys_path(answer.daemon.pythonpath)
    changed: dict[str, ActorConfig] = {}
    problems = []
    for name, actor in answer.changed.items():
        try:
            changed[name] = dataclasses.replace(actor, cls=import_class(actor.class_path))
        except Exception as exc:  # it imported in the reader: something changed since
            problems.append(
                ConfigProblem(str(old.path), f"actors.{name}.class", None, f"cannot import: {exc}")
            )
    if problems:
        raise ConfigError(problems)
    current = old.actors
    if answer.order is None:  # same actors, same order: a copy in C, then the changed ones
        actors = dict(current)
        actors.update(changed)
    else:
        actors = {
            name: changed[name] if name in changed else current[name] for name in answer.order
        }
    return Config(
        path=old.path, daemon=answer.daemon, actors=actors, notify=answer.notify, text=answer.text
    )


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
