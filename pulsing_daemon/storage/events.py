"""The daemon's event log: what happened to which actor, numbered, kept in ``state_dir``.

An event is a JSON object ``{"id", "at", "actor", "kind", ...fields}``. Kinds:

========== ==================================================================
``state``    an actor changed state (``from``, ``to``, and what the change carries)
``failure``  an instance failed (``category``, ``type``, ``message``, ``where``)
``restart``  a restart is scheduled (``restarts``, ``max_restarts``, ``cause``, ``delay``)
``failed``   the policy gave up: the actor stays failed (``reason``)
``operator`` an operator action (``action``: restart | stop | start)
``reload``   the config was reloaded (what the reload reports)
``daemon``   the daemon itself (``event``: ready | stopping), ``actor`` is null
========== ==================================================================

Ids grow by one per event and keep growing across daemon restarts: they come from
blocks reserved durably in SQLite before use, so even after a SIGKILL no id is handed
out twice (a crash leaves a gap instead). ``emit`` never blocks its caller: it numbers
the event, hands it to the followers and queues the row; the rows are written in one
transaction per batch, on a timer, off the ask path. History is bounded to the newest
``keep`` events.

A follower whose reader keeps up gets each event written straight to its connection by
``emit`` (its ``send``: the event encoded once for all of them, no task woken per
follower per event); a follower that is behind -- its connection's buffer full, or
events still queued for it -- gets the event queued, and its own task writes the queue
in order, waiting for the reader. Either way every event reaches a follower once, in
order.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pulsing_daemon import log

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    actor TEXT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

ID_BLOCK = 1000  # ids reserved durably at a time
FLUSH_DELAY = 0.2  # seconds a new event may wait before its batch is written
FOLLOWER_BACKLOG = 10_000  # events queued for one follower before it is cut off
TEXTS_KEPT = 4096  # encoded events kept for followers (EventLog.text)
_encode_event = json.JSONEncoder(separators=(",", ":"), default=str).encode


class FollowerOverrun(Exception):
    """A follower fell too far behind; it reconnects and resumes from its last id."""


# Writes one event (its id and JSON text) straight to a reader; False when it cannot now
# (the reader is behind), and the event is queued for the follower's task instead.
Send = Callable[[int, str], bool]


class _Follower:
    __slots__ = ("actor", "overrun", "queue", "send", "wakeup")

    def __init__(self, actor: str | None) -> None:
        self.actor = actor
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.overrun = False
        self.wakeup = asyncio.Event()
        # Set only while the follower's task waits with nothing queued (see ``follow``).
        self.send: Send | None = None


class EventLog:
    """Numbered events: a bounded SQLite history plus an in-memory fan-out to followers.

    ``path`` None keeps everything in memory (tests of the cell alone).
    """

    def __init__(self, path: Path | None, *, keep: int = 10_000) -> None:
        self.keep = keep
        fresh = path is not None and not path.exists()
        self.db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            isolation_level=None,
            check_same_thread=False,
        )
        if fresh and path is not None:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE name = 'reserved'").fetchone()
        last = self.db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        self._reserved = row[0] if row else last
        self._next_id = max(self._reserved, last) + 1
        self._pending: list[tuple[int, str | None, str]] = []
        self._followers: set[_Follower] = set()
        self._texts: dict[int, str] = {}  # the newest events' JSON, see ``text``
        self._flush_handle: asyncio.TimerHandle | None = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._closed = False

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 when there has been none)."""
        return self._next_id - 1

    # ------------------------------------------------------------------ writing
    def emit(self, kind: str, actor: str | None = None, **fields: Any) -> None:
        """Record one event. Never blocks, never raises into the caller."""
        if self._closed:
            return
        try:
            self._emit(kind, actor, fields)
        except Exception as exc:  # an event must never break what it reports on
            log.event(
                "event_dropped", kind=kind, actor=actor, type=type(exc).__name__, msg=str(exc)
            )

    def _emit(self, kind: str, actor: str | None, fields: dict[str, Any]) -> None:
        event_id = self._next_id
        if event_id > self._reserved:
            self._reserved = event_id + ID_BLOCK - 1
            self.db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('reserved', ?)",
                (self._reserved,),
            )
        self._next_id += 1
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        event = {
            "id": event_id,
            "at": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
            "actor": actor,
            "kind": kind,
        }
        event.update((key, value) for key, value in fields.items() if key not in event)
        body = _encode_event(event)  # stored, and sent as is to followers (``text``)
        self._pending.append((event_id, actor, body))
        if self._followers:
            self._keep_text(event_id, body)
        for follower in self._followers:
            if follower.actor is not None and follower.actor != actor:
                continue
            send = follower.send
            if send is not None:
                try:
                    if send(event_id, body):
                        continue
                except Exception:  # a broken reader: its task finds out when it writes
                    pass
            follower.send = None  # queued from here on, until its task has caught up
            if len(follower.queue) >= FOLLOWER_BACKLOG:
                follower.overrun = True
            else:
                follower.queue.append(event)
            follower.wakeup.set()
        for listener in self._listeners:
            listener(event)
        self._schedule_flush()

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every new event (it must not block)."""
        self._listeners.append(listener)

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): write now
            self.flush()
            return
        self._flush_handle = loop.call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Write the queued events in one transaction and trim the history."""
        self._flush_handle = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO events (id, actor, body) VALUES (?, ?, ?)", batch)
            self.db.execute("DELETE FROM events WHERE id <= ?", (batch[-1][0] - self.keep,))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            log.event("events_not_saved", category="runtime", count=len(batch), msg=str(exc))

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        self._closed = True
        for follower in self._followers:
            follower.wakeup.set()
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    # ------------------------------------------------------------------ reading
    def history(
        self, since: int = 0, actor: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Kept events with ``id > since`` (optionally one actor's), oldest first.

        ``limit`` keeps the newest ``limit`` of them.
        """
        query = "SELECT id, body FROM events WHERE id > ?"
        params: list[Any] = [since]
        if actor is not None:
            query += " AND actor = ?"
            params.append(actor)
        if limit is not None:
            query = f"SELECT id, body FROM ({query} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params.append(limit)
        else:
            query += " ORDER BY id"
        rows = [json.loads(body) for _, body in self.db.execute(query, params)]
        pending = [
            json.loads(body)
            for event_id, who, body in self._pending
            if event_id > since and (actor is None or who == actor)
        ]
        events = rows + pending
        return events[-limit:] if limit is not None else events

    async def follow(
        self,
        since: int | None = None,
        actor: str | None = None,
        limit: int | None = None,
        heartbeat: float | None = None,
        send: Send | None = None,
    ) -> AsyncIterator[list[dict[str, Any]] | None]:
        """Kept events after ``since`` (None: the newest ``limit``, or none), then new ones,
        in batches: the events that are there when the reader comes back for more (a
        crash makes several at once, and a reader writes each batch in one go).

        With ``send``, new events that come while this generator waits (everything
        before them yielded and written) go through ``send`` instead, straight from
        ``emit``; what ``send`` refuses is queued and yielded here, in order.

        Yields None every ``heartbeat`` seconds it waits (a keep-alive for the reader;
        events sent meanwhile do not count).
        Raises FollowerOverrun if the reader falls ``FOLLOWER_BACKLOG`` events behind;
        ends when the log is closed (daemon shutdown).
        """
        follower = _Follower(actor)
        self._followers.add(follower)  # before reading history: nothing falls between
        try:
            last = since if since is not None else self.last_id
            if since is not None or limit is not None:
                kept = [
                    event
                    for event in self.history(since or 0, actor, limit)
                    if event["id"] > last or since is None
                ]
                if kept:
                    last = kept[-1]["id"]
                    yield kept
            while not self._closed:
                if follower.queue:
                    batch = [event for event in follower.queue if event["id"] > last]
                    follower.queue.clear()
                    if batch:
                        last = batch[-1]["id"]
                        yield batch
                    continue
                if follower.overrun:
                    raise FollowerOverrun(f"follower fell behind at event {last}")
                follower.wakeup.clear()
                if follower.queue or self._closed:
                    continue
                follower.send = send  # the reader has everything so far: direct from here
                try:
                    await asyncio.wait_for(follower.wakeup.wait(), heartbeat)
                except asyncio.TimeoutError:
                    follower.send = None
                    yield None
        finally:
            follower.send = None
            self._followers.discard(follower)

    def text(self, event: dict[str, Any]) -> str:
        """An event as compact JSON, encoded once for all the followers that send it."""
        event_id = event["id"]
        text = self._texts.get(event_id)
        if text is None:
            text = _encode_event(event)
            self._keep_text(event_id, text)
        return text

    def _keep_text(self, event_id: int, text: str) -> None:
        if len(self._texts) >= TEXTS_KEPT:
            self._texts.clear()
        self._texts[event_id] = text

    @property
    def followers(self) -> int:
        return len(self._followers)
