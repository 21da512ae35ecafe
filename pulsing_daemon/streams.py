"""Streams with resume offsets: every chunk gets a ``seq`` and is committed to the journal
before any reader sees it; readers follow at their own pace from any retained offset.

Writers batch commits (one transaction per ``FLUSH_CHUNKS`` chunks or ``FLUSH_DELAY``
seconds). Readers are served from a bounded in-memory window of recent chunks when
they are close behind, and from SQLite otherwise, so a slow reader never holds the
producer or other readers back, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pulsing_daemon import log
from pulsing_daemon.config import DaemonConfig
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
)
from pulsing_daemon.journal import Journal, StreamRecord
from pulsing_daemon.supervisor import Supervisor
from pulsing_daemon.wire import END, encode_chunk, fingerprint, terminal_body

FLUSH_CHUNKS = 512
FLUSH_DELAY = 0.002
RECENT_WINDOW = 4096  # chunks kept in memory per live stream for readers close behind
READ_PAGE = 2048


@dataclass(eq=False)
class LiveStream:
    """A stream this daemon is producing (or produced recently)."""

    id: str
    actor: str
    op: str
    journal: Journal
    max_chunks: int
    first_seq: int = 0
    committed: int = 0  # seqs below this are durable and visible
    pending: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)  # data of seqs recent_base ...
    recent_base: int = 0
    terminal: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    flush_handle: asyncio.TimerHandle | None = None
    broken: PulsingSystemError | None = None  # set when a commit failed

    # ------------------------------------------------------------------ writing
    async def append(self, chunk: Any) -> None:
        """The sink of the producing actor: stage one chunk for the next commit."""
        try:
            text = encode_chunk(chunk)
        except (TypeError, ValueError) as exc:
            raise PulsingSystemError(
                f"chunk {self.committed + len(self.pending)} of {self.op} is not "
                f"JSON-serializable: {exc}",
                recoverable=False,
            ) from None
        if self.broken is not None:
            raise self.broken
        self.pending.append(text)
        if len(self.pending) >= FLUSH_CHUNKS:
            self.flush()
            # A producer that never awaits would otherwise hold the event loop for the
            # whole stream: give readers and other actors a turn after every batch.
            await asyncio.sleep(0)
        elif self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Commit staged chunks, then make them visible to readers."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            self.first_seq = self.journal.append_chunks(
                self.id, self.committed, batch, self.max_chunks, self.first_seq
            )
        except Exception as exc:  # disk full, I/O error: the producer's next append fails
            self.broken = PulsingSystemError(
                f"cannot journal chunks of stream {self.id}: {type(exc).__name__}: {exc}",
                recoverable=False,
            )
            log.event("journal_error", actor=self.actor, category="system", msg=str(exc))
            return
        self.committed += len(batch)
        self.recent.extend(batch)
        if len(self.recent) > 2 * RECENT_WINDOW:
            drop = len(self.recent) - RECENT_WINDOW
            del self.recent[:drop]
            self.recent_base += drop
        self._notify()

    def finish(self, terminal: str) -> None:
        self.flush()
        if self.broken is not None and terminal == END:
            terminal = terminal_body(self.broken)
        self.terminal = terminal
        self.journal.finish_stream(self.id, terminal)
        self.recent = []
        self.recent_base = self.committed
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class Frame:
    """What a reader gets: chunks ``(seq, data_json)`` or the terminal record."""

    chunks: list[tuple[int, str]] = field(default_factory=list)
    terminal: str | None = None


class StreamManager:
    def __init__(self, journal: Journal, supervisor: Supervisor, config: DaemonConfig) -> None:
        self.journal = journal
        self.supervisor = supervisor
        self.config = config
        self.live: dict[str, LiveStream] = {}
        self.readers = 0
        self.chunks_total = 0
        self.shutting_down = False

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> int:
        """Close streams whose producer died with a previous daemon: a system error after
        their committed chunks."""
        dead = self.journal.open_streams()
        for record in dead:
            error = PulsingSystemError(
                f"the producer of stream {record.id} ({record.actor}.{record.op}) died with "
                f"the daemon; chunks up to seq {record.next_seq - 1} were committed",
                recoverable=False,
                actor=record.actor,
            )
            self.journal.finish_stream(record.id, terminal_body(error))
            log.event("stream_orphaned", actor=record.actor, category="system", stream=record.id)
        return len(dead)

    def prune(self) -> int:
        return self.journal.prune_streams(
            self.config.stream_retention_age, self.config.stream_retention_bytes
        )

    def shutdown(self) -> None:
        """Flush what producers staged; open streams are closed by their producers' ends."""
        for stream in self.live.values():
            if stream.terminal is None:
                stream.flush()

    # ------------------------------------------------------------------ starting
    def start(
        self, actor: str, op: str, args: list[Any], kwargs: dict[str, Any], key: str | None
    ) -> tuple[str, bool]:
        """Start a streaming op, or attach to the stream already started with ``key``.

        Returns (stream id, attached). No await: check-and-create is atomic on the loop.
        """
        self.supervisor.check_stream(actor, op, args, kwargs)
        request_fingerprint = fingerprint(op, args, kwargs)
        if key is not None:
            existing = self.journal.stream_by_key(actor, key)
            if existing is not None:
                if existing.fingerprint != request_fingerprint:
                    raise PulsingBusinessError(
                        "idempotency_conflict",
                        f"stream key {key!r} was used for a different request "
                        f"({existing.op} with other arguments)",
                        {"key": key, "stream": existing.id, "op": existing.op},
                    )
                return existing.id, True
        stream_id = "s" + secrets.token_hex(8)
        stream = LiveStream(stream_id, actor, op, self.journal, self.config.stream_retention_chunks)
        created = self.journal.wall_clock()
        self.journal.create_stream(
            StreamRecord(
                stream_id, actor, op, request_fingerprint, key, True, None, 0, 0, 0, created, None
            )
        )
        try:
            envelope = self.supervisor.stream(actor, op, args, kwargs, stream)
        except PulsingError:
            self.journal.delete_stream(stream_id)
            raise
        self.live[stream_id] = stream
        envelope.future.add_done_callback(lambda done: self._finished(stream, done))
        log.event("stream_started", actor=actor, op=op, stream=stream_id)
        return stream_id, False

    def _finished(self, stream: LiveStream, done: asyncio.Future[Any]) -> None:
        error = done.exception() if not done.cancelled() else None
        if done.cancelled():
            error = PulsingSystemError("the producer was cancelled", recoverable=False)
        if self.shutting_down and isinstance(error, PulsingRuntimeError):
            error = PulsingSystemError(
                f"the producer of stream {stream.id} stopped with the daemon; chunks up to "
                f"seq {stream.committed + len(stream.pending) - 1} were committed",
                recoverable=False,
                actor=stream.actor,
            )
        terminal = terminal_body(error)
        stream.finish(terminal)
        self.chunks_total += stream.committed
        log.event(
            "stream_finished",
            actor=stream.actor,
            stream=stream.id,
            chunks=stream.committed,
            category=getattr(error, "category", None),
        )
        # Readers that attached keep their reference; new ones read the journal.
        asyncio.get_running_loop().call_later(60.0, self.live.pop, stream.id, None)

    # ------------------------------------------------------------------ reading
    def describe(self, stream_id: str) -> dict[str, Any]:
        live = self.live.get(stream_id)
        record = self.journal.stream(stream_id)
        if record is None:
            raise _unknown_stream(stream_id)
        return {
            "stream": record.id,
            "actor": record.actor,
            "op": record.op,
            "first_seq": live.first_seq if live else record.first_seq,
            "next_seq": live.committed if live else record.next_seq,
            "open": record.open,
        }

    def listing(self, actor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` streams in the journal, newest first (``GET /v1/streams``)."""
        return [
            describe_record(record, self.live.get(record.id))
            for record in self.journal.list_streams(actor, limit)
        ]

    async def frames(
        self, stream_id: str, start: int, follow: bool = True, heartbeat: float = 15.0
    ) -> AsyncIterator[Frame]:
        """Chunks from ``start`` on, in order, then the terminal record.

        Yields an empty Frame every ``heartbeat`` seconds of silence (for keep-alives).
        With ``follow=False`` stops after what is committed now.
        """
        live = self.live.get(stream_id)
        record = self.journal.stream(stream_id) if live is None else None
        if live is None and record is None:
            raise _unknown_stream(stream_id)
        first = live.first_seq if live is not None else record.first_seq  # type: ignore[union-attr]
        if start < first:
            raise self._gone(stream_id, start, first)
        ended = live.terminal if live is not None else record.terminal  # type: ignore[union-attr]
        end_seq = live.committed if live is not None else record.next_seq  # type: ignore[union-attr]
        if ended is not None and start > end_seq:
            raise _past_end(stream_id, end_seq - 1, start)
        pos = start
        while True:
            committed = live.committed if live is not None else record.next_seq  # type: ignore[union-attr]
            if pos < committed:
                chunks = self._read(live, stream_id, pos, committed)
                if not chunks:  # trimmed by retention while we were behind
                    first = live.first_seq if live is not None else pos
                    raise self._gone(stream_id, pos, first)
                pos = chunks[-1][0] + 1
                yield Frame(chunks)
                continue
            terminal = live.terminal if live is not None else record.terminal  # type: ignore[union-attr]
            if terminal is not None:
                yield Frame(terminal=terminal)
                return
            if not follow or live is None:
                return
            try:
                await asyncio.wait_for(live.changed.wait(), heartbeat)
            except asyncio.TimeoutError:
                yield Frame()

    def _read(
        self, live: LiveStream | None, stream_id: str, pos: int, committed: int
    ) -> list[tuple[int, str]]:
        if live is not None and live.recent and live.recent_base <= pos:
            offset = pos - live.recent_base
            window = live.recent[offset : offset + READ_PAGE]
            return [(pos + i, text) for i, text in enumerate(window)]
        return self.journal.read_chunks(stream_id, pos, min(READ_PAGE, committed - pos))

    def _gone(self, stream_id: str, asked: int, earliest: int) -> PulsingRuntimeError:
        return PulsingRuntimeError(
            f"offset {asked} of stream {stream_id} is older than retention; the earliest "
            f"available offset is {earliest}",
            status=410,
            earliest=earliest,
            stream=stream_id,
            hint=f"resume with --resume {earliest}",
        )


def describe_record(record: StreamRecord, live: LiveStream | None = None) -> dict[str, Any]:
    """One row of the streams listing: where a stream stands and how it ended."""
    next_seq = live.committed if live is not None else record.next_seq
    row: dict[str, Any] = {
        "id": record.id,
        "key": record.key,
        "actor": record.actor,
        "op": record.op,
        "state": "running",
        "first_seq": live.first_seq if live is not None else record.first_seq,
        "last_seq": next_seq - 1 if next_seq > 0 else None,
        "started": iso_time(record.created),
        "ended": iso_time(record.finished) if record.finished is not None else None,
    }
    if not record.open and record.terminal is not None:
        terminal = json.loads(record.terminal)
        error = terminal.get("error") if isinstance(terminal, dict) else None
        row["state"] = "failed" if error else "completed"
        if error:
            row["error"] = {key: error.get(key) for key in ("category", "type", "message")}
    elif not record.open:
        row["state"] = "completed"
    return row


def iso_time(seconds: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds % 1 * 1000):03d}Z"


def _past_end(stream_id: str, last: int, start: int) -> PulsingRuntimeError:
    """Resuming a finished stream beyond its end: nothing will ever come (a usage error)."""
    last_text = f"its last seq is {last}" if last >= 0 else "it has no chunks"
    return PulsingRuntimeError(
        f"stream {stream_id} has ended and {last_text}; offset {start} is past its end",
        status=416,
        stream=stream_id,
        last_seq=last if last >= 0 else None,
        reason="past_end",
        hint=f"resume with --resume {last + 1} or less",
    )


def _unknown_stream(stream_id: str) -> PulsingRuntimeError:
    return PulsingRuntimeError(f"unknown stream {stream_id!r}", status=404, stream=stream_id)
