"""Owns every actor cell: creates them from the config, starts, asks, stops, shuts down.

The HTTP handlers talk to the actors through the :class:`Supervisor` only -- ``ask``,
``stream``, ``control``, ``status`` -- never to a cell.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pulsing_daemon import log
from pulsing_daemon.cell import ActorCell
from pulsing_daemon.config import ActorConfig, Config
from pulsing_daemon.envelope import Envelope, StreamSink, new_envelope
from pulsing_daemon.exceptions import PulsingRuntimeError
from pulsing_daemon.hosts.base import ActorHost
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.hosts.registry import make_host
from pulsing_daemon.states import ActorState
from pulsing_daemon.storage.events import EventLog
from pulsing_daemon.storage.logs import LogStore

if TYPE_CHECKING:
    from pulsing_daemon.idempotency import IdempotencyStore

STARTS_AT_ONCE = 64  # instances constructed concurrently (constructors run on threads)


class Supervisor:
    def __init__(
        self, config: Config, events: EventLog | None = None, logs: LogStore | None = None
    ) -> None:
        self.config = config
        self.events = events if events is not None else EventLog(None)
        self.logs = logs if logs is not None else LogStore(None)
        self.events.add_listener(self.logs.on_event)
        self.metrics: Any = None  # pulsing_daemon.metrics.Metrics, once attached
        self.start_gate: asyncio.Semaphore | None = None
        # Runs the asks that carry an idempotency key (set when the app is built).
        self.idempotency: IdempotencyStore | None = None
        self.cells: dict[str, ActorCell] = {}
        for actor in config.actors.values():
            self.add(actor)

    def add(self, actor: ActorConfig) -> ActorCell:
        """A cell for ``actor`` (not started), wired to the event log, its own actor log
        and the metrics."""
        cell = ActorCell(actor, self.make_host, self.config.daemon.default_timeout)
        self.attach(cell)
        cell.metrics = self.metrics
        cell.start_gate = self.start_gate
        self.cells[actor.name] = cell
        return cell

    def make_host(self, config: ActorConfig) -> ActorHost:
        """A host for ``config`` with this daemon's settings (``[daemon.ISOLATION]``)."""
        return make_host(config, self.config.daemon)

    def attach(self, cell: ActorCell) -> None:
        """Give a new cell the daemon's event log and its own actor log."""
        cell.emit = self.events.emit
        cell.log_sink = self.logs.actor(cell.name, cell.config.log_max_bytes)

    def start(self) -> None:
        self.start_gate = gate = asyncio.Semaphore(STARTS_AT_ONCE)
        for cell in self.cells.values():
            cell.start_gate = gate
            if cell.config.autostart:
                cell.start()
        log.event("started", actors=len(self.cells))

    def cell(self, name: str) -> ActorCell:
        cell = self.cells.get(name)
        if cell is None:
            known = ", ".join(sorted(self.cells)) or "none"
            raise PulsingRuntimeError(
                f"unknown actor {name!r} (actors: {known})", status=404, hint="see `pulsing status`"
            )
        return cell

    def envelope(
        self,
        name: str,
        op: str,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        sink: StreamSink | None = None,
    ) -> tuple[ActorCell, Envelope]:
        cell = self.cell(name)
        envelope = new_envelope(op, args, kwargs, timeout or cell.default_timeout, sink)
        return cell, envelope

    def actor_config(self, name: str) -> ActorConfig:
        """The config of an actor the daemon runs (an unknown name is a 404 error)."""
        return self.cell(name).config

    async def ask(
        self, name: str, op: str, args: list[Any], kwargs: dict[str, Any],
        timeout: float | None, key: str | None = None,
    ) -> tuple[Any, bool]:  # fmt: skip
        """Ask an actor and wait for its answer: (the result as JSON text, False), or for
        a key whose outcome is stored, (that outcome's value, True). A failed ask raises
        its PulsingError."""
        cell, envelope = self.envelope(name, op, args, kwargs, timeout)
        if key is None:
            cell.submit(envelope)
            await envelope.future
        else:
            assert self.idempotency is not None
            value, replayed = await self.idempotency.ask(cell, envelope, key)
            if replayed:
                return value, True
        return envelope.result_json or "null", False

    def check_stream(self, name: str, op: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise now what would fail a stream at once: an unknown actor, an op that is
        not a streaming op, bad arguments."""
        cls = self.cell(name).config.cls
        if cls is not None:
            info = resolve_op(cls, op, OpKind.STREAM)
            if info is not None:
                bind_arguments(info, args, kwargs)

    def stream(
        self, name: str, op: str, args: list[Any], kwargs: dict[str, Any], sink: StreamSink
    ) -> Envelope:
        """Queue a streaming op whose chunks go to ``sink``; its envelope resolves when
        the op ends. Raises the error that refuses it (stopped actor, full mailbox)."""
        cell, envelope = self.envelope(name, op, args, kwargs, timeout=None, sink=sink)
        cell.submit(envelope)
        return envelope

    async def control(self, name: str, action: str) -> tuple[str, str]:
        """An operator's ``start``, ``stop`` or ``restart``: (state before, state after).

        After a start or restart, waits (bounded) until the instance is past starting.
        """
        cell = self.cell(name)
        before = cell.state.value
        self.events.emit("operator", name, action=action, before=before)
        if action == "restart":
            await cell.restart()
        elif action == "stop":
            await cell.stop()
        else:
            cell.start()
        if action != "stop":
            await cell.wait_started(timeout=10.0)
        return before, cell.state.value

    def failed(self) -> list[str]:
        """The actors left failed (health reports them)."""
        return [cell.name for cell in self.cells.values() if cell.state is ActorState.FAILED]

    async def shutdown(self, grace: float) -> None:
        await asyncio.gather(*(cell.shutdown(grace) for cell in self.cells.values()))
        log.event("actors_stopped", actors=len(self.cells))

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every actor's status (or one's), with its ``autostart``."""
        cells = [self.cell(name)] if name is not None else self.cells.values()
        return [{**cell.status(), "autostart": cell.config.autostart} for cell in cells]
