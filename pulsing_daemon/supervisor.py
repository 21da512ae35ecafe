"""Owns every actor cell: creates them from the config, starts, asks, stops, shuts down."""

from __future__ import annotations

import asyncio
from typing import Any

from pulsing_daemon import log
from pulsing_daemon.actor import ActorCell, Envelope, StreamSink, new_envelope
from pulsing_daemon.config import ActorConfig, Config
from pulsing_daemon.exceptions import PulsingRuntimeError
from pulsing_daemon.hosts.base import ActorHost
from pulsing_daemon.hosts.registry import make_host
from pulsing_daemon.storage.events import EventLog
from pulsing_daemon.storage.logs import LogStore

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

    async def shutdown(self, grace: float) -> None:
        await asyncio.gather(*(cell.shutdown(grace) for cell in self.cells.values()))
        log.event("actors_stopped", actors=len(self.cells))

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is not None:
            return [self.cell(name).status()]
        return [cell.status() for cell in self.cells.values()]
