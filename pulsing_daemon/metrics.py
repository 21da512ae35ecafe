"""Prometheus metrics at ``GET /metrics`` (prometheus-client, text format).

Hot-path updates are plain counters, a few list and dict updates per answered ask; gauges
(state, mailbox, in-flight, restarts, journal size) are read from the cells at
scrape time, so they cost nothing between scrapes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from pulsing_daemon.states import ActorState

if TYPE_CHECKING:
    from pulsing_daemon.cell import ActorCell
    from pulsing_daemon.streams import StreamManager
    from pulsing_daemon.supervisor import Supervisor

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_ASK_SERIES = 10000  # (actor, op, outcome) series; more ops count under op="_other"
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
    """The daemon's metrics: a registry with the restart counter and two collectors.

    Answered asks are counted in plain dicts (``observe``: a few dict and list updates,
    no locks -- it runs on the event loop for every ask) and turned into Prometheus
    families only when ``/metrics`` is scraped.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.restarts = Counter(
            "pulsing_restarts",
            "Restarts by actor and cause (op, start, run, process, timeout, exit, operator)",
            ("actor", "cause"),
            registry=self.registry,
        )
        self.asks: dict[tuple[str, str, str], int] = {}
        # actor -> [count per bucket (the last one is +Inf), sum of seconds]
        self.latency: dict[str, list[Any]] = {}
        self.registry.register(_AskCollector(self))

    def observe(self, actor: str, op: str, outcome: str, seconds: float) -> None:
        key = (actor, op, outcome)
        asks = self.asks
        if key in asks:
            asks[key] += 1
        elif len(asks) < MAX_ASK_SERIES:
            asks[key] = 1
        else:  # bound label cardinality
            key = (actor, "_other", outcome)
            asks[key] = asks.get(key, 0) + 1
        latency = self.latency.get(actor)
        if latency is None:
            latency = self.latency[actor] = [[0] * (len(LATENCY_BUCKETS) + 1), 0.0]
        latency[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency[1] += seconds

    def restarted(self, actor: str, cause: str) -> None:
        self.restarts.labels(actor, cause).inc()

    def attach(self, supervisor: Supervisor, streams: StreamManager) -> None:
        self.registry.register(_StateCollector(supervisor, streams))
        supervisor.metrics = self  # cells added later (reload) get it too
        for cell in supervisor.cells.values():
            cell.metrics = self

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _AskCollector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        asks = CounterMetricFamily(
            "pulsing_asks",
            "Answered asks by actor, op and outcome",
            labels=("actor", "op", "outcome"),
        )
        for key, count in list(self.metrics.asks.items()):
            asks.add_metric(key, count)
        yield asks
        latency = HistogramMetricFamily(
            "pulsing_ask_duration_seconds",
            "Time from arrival to answer, by actor",
            labels=("actor",),
        )
        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for actor, (counts, total) in list(self.metrics.latency.items()):
            cumulative = list(itertools.accumulate(counts))
            latency.add_metric((actor,), list(zip(bounds, cumulative, strict=True)), total)
        yield latency


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
