"""Durable state in SQLite (WAL) under ``state_dir``: stream chunks and idempotency records.

One connection, used from the event loop thread only. With WAL and
``synchronous=NORMAL`` a committed transaction survives a crash or SIGKILL of the
daemon (not a power cut: that would need ``synchronous=FULL`` and an fsync per commit).
In the daemon its checkpoints (and their fsyncs) run on a thread of their own
(:meth:`Journal.checkpoint_in_background`, storage/checkpoint.py).
Chunk appends are batched into one transaction per flush by the stream writer.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulsing_daemon import log
from pulsing_daemon.storage.checkpoint import FALLBACK_PAGES, Checkpointer

ASKS_TABLE = """
CREATE TABLE IF NOT EXISTS asks (
    actor       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT,
    created     REAL NOT NULL,
    finished    REAL
)
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id         TEXT PRIMARY KEY,
    actor      TEXT NOT NULL,
    op         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    key        TEXT,
    open       INTEGER NOT NULL DEFAULT 1,
    terminal   TEXT,
    first_seq  INTEGER NOT NULL DEFAULT 0,
    next_seq   INTEGER NOT NULL DEFAULT 0,
    bytes      INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,
    finished   REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS streams_by_key ON streams(actor, key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS streams_by_created ON streams(created);
CREATE TABLE IF NOT EXISTS chunks (
    stream TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
""" + ASKS_TABLE + """;
-- One record per (actor, key). Rows live in arrival order (rowid) and only this small
-- index is keyed by the random keys: a commit of a group of keyed asks dirties a few
-- pages at the table's end plus one index page per key, where a table keyed by
-- (actor, key) put every whole record, outcome included, on a random page.
CREATE UNIQUE INDEX IF NOT EXISTS asks_by_key ON asks(actor, key);
-- The retention pass (every minute, on the event loop) finds expired records by
-- this index instead of scanning every key.
CREATE INDEX IF NOT EXISTS asks_by_created ON asks(created);
"""

ASK_COLUMNS = "actor, key, fingerprint, done, outcome, created, finished"


# Stores a keyed ask's outcome (parameters: Journal.finish_ask_row).
FINISH_ASK = "UPDATE asks SET done = 1, outcome = ?, finished = ? WHERE actor = ? AND key = ?"
# The same, for a record whose rowid its claim returned: found in the table directly,
# not through the index of the keys (the key is still checked).
FINISH_ASK_AT = (
    "UPDATE asks SET done = 1, outcome = ?, finished = ? WHERE rowid = ? AND actor = ? AND key = ?"
)

WAL_SIZE_LIMIT = 8 << 20  # bytes the WAL is truncated to after a checkpoint


@dataclass
class StreamRecord:
    id: str
    actor: str
    op: str
    fingerprint: str
    key: str | None
    open: bool
    terminal: str | None  # JSON text of the terminal record
    first_seq: int
    next_seq: int
    bytes: int
    created: float
    finished: float | None


@dataclass
class AskRecord:
    actor: str
    key: str
    fingerprint: str
    done: bool
    outcome: str | None  # JSON text: {"result": ...} or {"error": {...}}
    created: float


def _migrate_asks(db: sqlite3.Connection) -> None:
    """A journal written before the ``asks`` table had rowids (its records keyed by
    (actor, key), ``WITHOUT ROWID``) gets the current table, records kept, in one
    transaction at start-up, once (8.5 s for 1,000,000 records on a 2-vCPU VM; logged)."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'asks'")
    found = row.fetchone()
    if found is None or "WITHOUT ROWID" not in found[0].upper():
        return
    began = time.monotonic()
    log.event("journal_migrating", msg="rebuilding the idempotency records' table, once")
    with _Transaction(db):
        db.execute("ALTER TABLE asks RENAME TO asks_keyed")
        db.execute("DROP INDEX IF EXISTS asks_by_created")
        db.execute(ASKS_TABLE)
        db.execute(
            f"INSERT INTO asks ({ASK_COLUMNS}) "
            f"SELECT {ASK_COLUMNS} FROM asks_keyed ORDER BY created"
        )
        db.execute("DROP TABLE asks_keyed")
        records = db.execute("SELECT count(*) FROM asks").fetchone()[0]
    log.event("journal_migrated", records=records, seconds=round(time.monotonic() - began, 3))


class Journal:
    def __init__(self, state_dir: Path, wall_clock: Callable[[], float] = time.time) -> None:
        """``wall_clock`` stamps records and judges retention: wall-clock seconds, so
        that they mean the same after a restart (not the loop's clock, see deadline.py)."""
        self.wall_clock = wall_clock
        self.path = state_dir / "journal.db"
        fresh = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if fresh:
            os.chmod(self.path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.checkpointer: Checkpointer | None = None
        self._checkpoint_here()
        _migrate_asks(self.db)
        self.db.executescript(SCHEMA)

    def _checkpoint_here(self) -> None:
        """Checkpoints in this connection's commits, as SQLite does by default."""
        self.db.execute("PRAGMA wal_autocheckpoint=1000")
        # The WAL keeps the size of its largest transaction (a retention pass after a
        # long downtime deletes a whole day at once) unless truncated after checkpoints.
        self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")

    def checkpoint_in_background(self) -> None:
        """Checkpoint on a thread from now on; the loop's connection only past
        ``FALLBACK_PAGES`` (storage/checkpoint.py)."""
        if self.checkpointer is None:
            self.db.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
            # The WAL starts over at its beginning without truncating the file (a
            # filesystem call the loop would wait on); the thread truncates it when idle.
            self.db.execute("PRAGMA journal_size_limit=-1")
            self.checkpointer = Checkpointer(self.path)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    # ------------------------------------------------------------------ streams
    def create_stream(self, record: StreamRecord) -> None:
        self.db.execute(
            "INSERT INTO streams (id, actor, op, fingerprint, key, open, created) "
            "VALUES (?, ?, ?, ?, ?, 1, ?)",
            (record.id, record.actor, record.op, record.fingerprint, record.key, record.created),
        )

    def delete_stream(self, stream_id: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM chunks WHERE stream = ?", (stream_id,))
            self.db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def stream(self, stream_id: str) -> StreamRecord | None:
        row = self.db.execute("SELECT * FROM streams WHERE id = ?", (stream_id,)).fetchone()
        return _stream(row)

    def stream_by_key(self, actor: str, key: str) -> StreamRecord | None:
        row = self.db.execute(
            "SELECT * FROM streams WHERE actor = ? AND key = ?", (actor, key)
        ).fetchone()
        return _stream(row)

    def append_chunks(
        self, stream_id: str, first_seq: int, encoded: list[str], max_chunks: int, kept_from: int
    ) -> int:
        """Commit a batch of chunks; trims the stream to ``max_chunks``.

        ``kept_from`` is the stream's current earliest seq; returns the new one.
        """
        size = sum(len(text) for text in encoded)
        next_seq = first_seq + len(encoded)
        with self.transaction():
            self.db.executemany(
                "INSERT INTO chunks (stream, seq, data) VALUES (?, ?, ?)",
                ((stream_id, first_seq + i, text) for i, text in enumerate(encoded)),
            )
            self.db.execute(
                "UPDATE streams SET next_seq = ?, bytes = bytes + ? WHERE id = ?",
                (next_seq, size, stream_id),
            )
            earliest = next_seq - max_chunks
            if earliest > kept_from:
                self._trim(stream_id, earliest)
                kept_from = earliest
        return kept_from

    def _trim(self, stream_id: str, earliest: int) -> None:
        removed = self.db.execute(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM chunks WHERE stream = ? AND seq < ?",
            (stream_id, earliest),
        ).fetchone()[0]
        self.db.execute("DELETE FROM chunks WHERE stream = ? AND seq < ?", (stream_id, earliest))
        self.db.execute(
            "UPDATE streams SET first_seq = ?, bytes = MAX(0, bytes - ?) WHERE id = ?",
            (earliest, removed, stream_id),
        )

    def finish_stream(self, stream_id: str, terminal: str) -> None:
        self.db.execute(
            "UPDATE streams SET open = 0, terminal = ?, finished = ? WHERE id = ?",
            (terminal, self.wall_clock(), stream_id),
        )

    def read_chunks(self, stream_id: str, start: int, limit: int) -> list[tuple[int, str]]:
        return self.db.execute(
            "SELECT seq, data FROM chunks WHERE stream = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (stream_id, start, limit),
        ).fetchall()

    def list_streams(self, actor: str | None = None, limit: int = 100) -> list[StreamRecord]:
        """The newest ``limit`` streams (optionally one actor's), newest first."""
        query = "SELECT * FROM streams"
        params: list[Any] = []
        if actor is not None:
            query += " WHERE actor = ?"
            params.append(actor)
        query += " ORDER BY created DESC LIMIT ?"
        params.append(limit)
        rows = self.db.execute(query, params).fetchall()
        return [record for row in rows if (record := _stream(row)) is not None]

    def open_streams(self) -> list[StreamRecord]:
        rows = self.db.execute("SELECT * FROM streams WHERE open = 1").fetchall()
        return [record for row in rows if (record := _stream(row)) is not None]

    def prune_streams(self, max_age: float, max_total_bytes: int, now: float | None = None) -> int:
        """Drop finished streams older than ``max_age``, then the oldest until under the cap."""
        now = self.wall_clock() if now is None else now
        doomed = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM streams WHERE open = 0 AND finished < ?", (now - max_age,)
            )
        ]
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM streams").fetchone()[0]
        if total > max_total_bytes:
            for stream_id, size in self.db.execute(
                "SELECT id, bytes FROM streams WHERE open = 0 ORDER BY finished"
            ).fetchall():
                if total <= max_total_bytes:
                    break
                if stream_id not in doomed:
                    doomed.append(stream_id)
                total -= size
        with self.transaction():
            for stream_id in doomed:
                self.db.execute("DELETE FROM chunks WHERE stream = ?", (stream_id,))
                self.db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
        return len(doomed)

    def journal_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM streams").fetchone()[0]

    # ------------------------------------------------------------------ idempotency
    def ask_record(self, actor: str, key: str) -> AskRecord | None:
        row = self.db.execute(
            "SELECT actor, key, fingerprint, done, outcome, created FROM asks "
            "WHERE actor = ? AND key = ?",
            (actor, key),
        ).fetchone()
        if row is None:
            return None
        return AskRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5])

    def claim_ask(self, actor: str, key: str, fingerprint: str) -> bool:
        """Record, durably, that a keyed ask is about to run -- unless the key has a
        record already. True when this call created the record."""
        return self.claim_ask_at(actor, key, fingerprint) is not None

    def claim_ask_at(self, actor: str, key: str, fingerprint: str) -> int | None:
        """``claim_ask``, returning the rowid of the record it created (None: the key
        had one)."""
        cursor = self.db.execute(
            "INSERT INTO asks (actor, key, fingerprint, done, created) "
            "VALUES (?, ?, ?, 0, ?) ON CONFLICT (actor, key) DO NOTHING",
            (actor, key, fingerprint, self.wall_clock()),
        )
        return cursor.lastrowid if cursor.rowcount == 1 else None

    def finish_ask(self, actor: str, key: str, outcome: str) -> None:
        self.db.execute(FINISH_ASK, self.finish_ask_row(actor, key, outcome))

    def finish_ask_row(self, actor: str, key: str, outcome: str) -> tuple[Any, ...]:
        """The parameters of ``FINISH_ASK`` (for ``GroupCommit.add_row``)."""
        return (outcome, self.wall_clock(), actor, key)

    def finish_ask_at_row(
        self, rowid: int, actor: str, key: str, outcome: str
    ) -> tuple[Any, ...]:
        """The parameters of ``FINISH_ASK_AT``."""
        return (outcome, self.wall_clock(), rowid, actor, key)

    def forget_ask(self, actor: str, key: str) -> None:
        self.db.execute("DELETE FROM asks WHERE actor = ? AND key = ?", (actor, key))

    def prune_asks(self, retention: float, now: float | None = None) -> int:
        now = self.wall_clock() if now is None else now
        cursor = self.db.execute("DELETE FROM asks WHERE created < ?", (now - retention,))
        return cursor.rowcount

    # ------------------------------------------------------------------ helpers
    def transaction(self) -> _Transaction:
        if self.checkpointer is not None and self.checkpointer.failed:
            self.checkpointer = None
            self._checkpoint_here()
        return _Transaction(self.db, self.checkpointer)


class GroupCommit:
    """Statements queued during one event-loop iteration, committed as one transaction.

    One WAL commit for many writes. ``run(statement)`` returns a future resolved with
    the statement's result once the transaction holding it has committed. ``add`` and
    ``add_row`` are the lighter forms for the hot path, with no future: ``after(error)``
    is called right after the commit (with ``None``) or the rollback (with the error),
    in the flush. ``add_row(sql, params)`` queues one row of a statement: rows of the
    same statement queued one after another run as one ``executemany``.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        # (statement, its future or None) or (SQL text, [its rows]), in order
        self._pending: list[tuple[Any, Any]] = []
        self._after: list[Callable[[Exception | None], None]] = []

    def run(self, statement: Callable[[], Any]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._queue((statement, future))
        return future

    def add(
        self,
        statement: Callable[[], Any],
        after: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self._queue((statement, None))
        if after is not None:
            self._after.append(after)

    def add_row(
        self,
        sql: str,
        params: tuple[Any, ...],
        after: Callable[[Exception | None], None] | None = None,
    ) -> None:
        pending = self._pending
        if pending and pending[-1][0] is sql:
            pending[-1][1].append(params)
        else:
            self._queue((sql, [params]))
        if after is not None:
            self._after.append(after)

    def _queue(self, entry: tuple[Any, Any]) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(entry)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        after, self._after = self._after, []
        error: Exception | None = None
        results: list[Any] = []
        try:
            with self.journal.transaction() as db:
                for statement, extra in batch:
                    if type(statement) is str:
                        db.executemany(statement, extra)
                        results.append(None)
                    else:
                        results.append(statement())
        except Exception as exc:  # rolled back: every statement of the batch failed
            error = exc
        for callback in after:
            callback(error)
        for index, (statement, future) in enumerate(batch):
            if type(statement) is not str and future is not None and not future.done():
                if error is None:
                    future.set_result(results[index])
                else:
                    future.set_exception(error)


class _Transaction:
    def __init__(self, db: sqlite3.Connection, checkpointer: Checkpointer | None = None) -> None:
        self.db = db
        self.checkpointer = checkpointer

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type:
            self.db.execute("ROLLBACK")
            return
        self.db.execute("COMMIT")
        if self.checkpointer is not None:
            self.checkpointer.committed(self.db)


def _stream(row: Iterable[Any] | None) -> StreamRecord | None:
    if row is None:
        return None
    values = list(row)
    return StreamRecord(
        id=values[0],
        actor=values[1],
        op=values[2],
        fingerprint=values[3],
        key=values[4],
        open=bool(values[5]),
        terminal=values[6],
        first_seq=values[7],
        next_seq=values[8],
        bytes=values[9],
        created=values[10],
        finished=values[11],
    )
