"""Prometheus metrics at ``GET /metrics`` (prometheus-client, text format).

Hot-path updates are two cached counter/histogram children per answered ask; gauges
(state, mailbox, in-flight, restarts, journal size) are read from the cells at
scrape time, so they cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pulsing_daemon.states import ActorState

if TYPE_CHECKING:
    from pulsing_daemon.actor import ActorCell
    from pulsing_daemon.streams import StreamManager
    from pulsing_daemon.supervisor import Supervisor

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.asks = Counter(
            "pulsing_asks",
            "Answered asks by actor, op and outcome",
            ("actor", "op", "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "pulsing_ask_duration_seconds",
            "Time from arrival to answer, by actor",
            ("actor",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.restarts = Counter(
            "pulsing_restarts",
            "Restarts by actor and cause (op, start, run, process, timeout, exit, operator)",
            ("actor", "cause"),
            registry=self.registry,
        )
        self._ask_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe(self, actor: str, op: str, outcome: str, seconds: float) -> None:
        key = (actor, op, outcome)
        child = self._ask_children.get(key)
        if child is None:
            if len(self._ask_children) > 10000:  # bound label cardinality
                key = (actor, "_other", outcome)
            child = self._ask_children.setdefault(key, self.asks.labels(*key))
        child.inc()
        latency = self._latency_children.get(actor)
        if latency is None:
            latency = self._latency_children.setdefault(actor, self.latency.labels(actor))
        latency.observe(seconds)

    def restarted(self, actor: str, cause: str) -> None:
        self.restarts.labels(actor, cause).inc()

    def attach(self, supervisor: Supervisor, streams: StreamManager) -> None:
        self.registry.register(_StateCollector(supervisor, streams))
        for cell in supervisor.cells.values():
            cell.metrics = self

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, supervisor: Supervisor, streams: StreamManager) -> None:
        self.supervisor = supervisor
        self.streams = streams

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        cells: list[ActorCell] = list(self.supervisor.cells.values())
        state = GaugeMetricFamily(
            "pulsing_actor_state", "1 for the actor's current state", labels=("actor", "state")
        )
        mailbox = GaugeMetricFamily("pulsing_actor_mailbox", "Queued messages", labels=("actor",))
        in_flight = GaugeMetricFamily(
            "pulsing_actor_in_flight", "Messages being executed", labels=("actor",)
        )
        counted = GaugeMetricFamily(
            "pulsing_actor_restarts_counted",
            "Restarts counted against max_restarts",
            labels=("actor",),
        )
        for cell in cells:
            for candidate in ActorState:
                state.add_metric(
                    (cell.name, candidate.value), 1.0 if cell.state is candidate else 0.0
                )
            mailbox.add_metric((cell.name,), cell.queued)
            in_flight.add_metric((cell.name,), cell.in_flight)
            counted.add_metric((cell.name,), cell.tracker.count)
        yield from (state, mailbox, in_flight, counted)
        chunks = GaugeMetricFamily(
            "pulsing_stream_chunks", "Chunks committed by finished streams since start"
        )
        chunks.add_metric(
            (),
            self.streams.chunks_total
            + sum(s.committed for s in self.streams.live.values() if s.terminal is None),
        )
        yield chunks
        readers = GaugeMetricFamily("pulsing_stream_readers", "Connected stream readers")
        readers.add_metric((), self.streams.readers)
        yield readers
        size = GaugeMetricFamily("pulsing_journal_bytes", "Bytes of chunk data in the journal")
        size.add_metric((), self.streams.journal.journal_bytes())
        yield size
