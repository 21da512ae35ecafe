"""Per-actor logs in ``state_dir/logs``: what an instance writes, and what happened to it.

A record is ``{"at", "actor", "instance", "stream", "text"}``; ``stream`` is

========== ================================================================
``stdout``  a line the instance printed (inline: ``print``/``sys.stdout``;
            process: the child's standard output)
``stderr``  the same for standard error
``log``     a record of Python's ``logging`` (level, logger, message, traceback)
``event``   the daemon's own account: state changes, failures with their full
            traceback, restarts, operator actions (from the event log)
========== ================================================================

``instance`` counts the actor's instances (one more at every start), continuing
across daemon restarts.

Capture of inline actors (``storage/capture.py``) routes by the actor that is
*running*, not by thread or by stream, so concurrent actors never mix lines.

Writing never blocks the writer: a record is appended to its actor's pending queue
(any thread); a timer on the event loop writes the pending records every
``FLUSH_EVERY`` seconds, one ``write`` per actor, and hands them to followers.
Each actor's log is two files, ``NAME.log`` and ``NAME.log.1``: when the first
reaches half of ``log_max_bytes`` it becomes the second (replacing it), so an
actor's logs never take more than ``log_max_bytes`` (plus one line).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from pulsing_daemon import log
from pulsing_daemon.storage.stamps import stamp

FLUSH_EVERY = 0.2  # seconds between writes of pending records (and follower wake-ups)
MAX_TEXT = 64 * 1024  # characters of one record's text; the rest is cut
MAX_PENDING = 50_000  # records waiting for a write, per actor; beyond, lines are dropped
MAX_TRACEBACK = 32 * 1024  # characters of a failure's traceback kept in status and logs
FOLLOWER_BACKLOG = 10_000  # records queued for one follower before it is cut off
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# Log files kept open at once (least recently written closed first): an open file
# holds a descriptor and ~5 KB of buffers, which 10,000 quiet actors would each pay.
MAX_OPEN_FILES = 64
STREAMS = ("stdout", "stderr", "log", "event")



# One encoder for every record written (json.dumps with options builds one per call).
_encode_record = json.JSONEncoder(ensure_ascii=False).encode


class FollowerOverrun(Exception):
    """A follower fell too far behind; it reconnects and resumes from its last record."""


class _Follower:
    __slots__ = ("overrun", "queue", "wakeup")

    def __init__(self) -> None:
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.overrun = False
        self.wakeup = asyncio.Event()


_NO_FOLLOWERS: frozenset[Any] = frozenset()  # shared by the logs nobody follows


class ActorLog:
    """One actor's records: the pending ones in memory, the written ones in two files."""

    def __init__(
        self,
        name: str,
        directory: Path | None,
        max_bytes: int,
        dirty: collections.deque[ActorLog] | None = None,
        open_files: collections.OrderedDict[ActorLog, None] | None = None,
    ) -> None:
        self.name = name
        # The store's queue of logs with pending records: a flush visits those only
        # (10,000 quiet actors cost nothing every FLUSH_EVERY). ``marked``: queued there.
        self.dirty = dirty
        self.marked = False
        self.max_bytes = max_bytes
        self.directory = directory
        # (time, instance, stream, text): appended by any thread, taken from the front
        # by the loop (append is atomic, and the loop removes only what it has read,
        # so none is lost between the two). A list: an empty one is 56 bytes, an empty
        # deque ~700, and most actors are quiet.
        self.pending: list[tuple[float, int, str, str]] = []
        self.dropped = 0  # records not kept because too many were pending
        self.partial: dict[tuple[str, int], str] = {}  # (stream, thread id) -> unfinished line
        # A set of its own once someone follows.
        self.followers: set[_Follower] = _NO_FOLLOWERS  # type: ignore[assignment]
        self.instance = self._last_instance()
        # The store's open logs, least recently written first (MAX_OPEN_FILES).
        self.open_files = open_files if open_files is not None else collections.OrderedDict()
        self._file: Any = None
        self._size = 0

    # ------------------------------------------------------------------ writing
    def write(self, stream: str, text: str) -> None:
        """Record one line (any thread; never blocks, never raises)."""
        pending = self.pending
        if len(pending) >= MAX_PENDING:
            self.dropped += 1
        else:
            if len(text) > MAX_TEXT:
                text = text[:MAX_TEXT] + f" [... {len(text) - MAX_TEXT} characters cut]"
            pending.append((time.time(), self.instance, stream, text))
        # After the append: a flush clears ``marked`` before it takes the pending
        # records, so a record is either taken by it or queues this log again.
        if not self.marked and self.dirty is not None:
            self.marked = True
            self.dirty.append(self)

    def write_partial(self, stream: str, data: str) -> None:
        """Text written to a stream, maybe part of a line: whole lines are recorded."""
        key = (stream, threading.get_ident())
        held = self.partial.pop(key, None)
        if held is not None:
            data = held + data
        if "\n" not in data:
            if len(data) >= MAX_TEXT:
                self.write(stream, data)
            elif data:
                self.partial[key] = data
            return
        *whole, rest = data.split("\n")
        for line in whole:
            self.write(stream, line)
        if rest:
            self.partial[key] = rest

    def flush_partial(self, stream: str) -> None:
        """``flush()`` on a stream: an unfinished line of this thread is recorded as is."""
        held = self.partial.pop((stream, threading.get_ident()), None)
        if held:
            self.write(stream, held)

    def flush(self) -> list[dict[str, Any]]:
        """Loop only: write the pending records, rotate if due; returns them as records."""
        if not self.pending and not self.dropped:
            return []
        pending = self.pending
        batch = pending[:]
        del pending[: len(batch)]
        rows = [(stamp(at), instance, stream, text) for at, instance, stream, text in batch]
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            text = f"{dropped} lines dropped (written too fast)"
            rows.append((stamp(time.time()), self.instance, "event", text))
        if self.directory is not None:
            # The line _encode_record makes of the record, put together directly: the
            # stamp and the stream need no escaping, the name is encoded once.
            name = _encode_record(self.name)
            self._append([
                f'{{"at": "{at}", "actor": {name}, "instance": {instance}, '
                f'"stream": "{stream}", "text": {_encode_record(text)}}}\n'
                for at, instance, stream, text in rows
            ])  # fmt: skip
        records = [
            {"at": at, "actor": self.name, "instance": instance, "stream": stream, "text": text}
            for at, instance, stream, text in rows
        ]
        for follower in self.followers:
            if len(follower.queue) + len(records) > FOLLOWER_BACKLOG:
                follower.overrun = True
            else:
                follower.queue.extend(records)
            follower.wakeup.set()
        return records

    @property
    def path(self) -> Path | None:
        """The current file (made when needed: a Path per actor costs ~0.3 KB)."""
        return self.directory / f"{self.name}.log" if self.directory is not None else None

    def _append(self, lines: list[str]) -> None:
        half = max(1, self.max_bytes // 2)
        try:
            if self._file is None:
                self._open()
            else:
                self.open_files.move_to_end(self)
            chunk: list[str] = []
            size = self._size
            for line in lines:
                length = len(line.encode("utf-8", "replace")) if not line.isascii() else len(line)
                if size + length > half and (size or chunk):
                    self._file.write("".join(chunk))
                    self._rotate()
                    chunk, size = [], 0
                chunk.append(line)
                size += length
            self._file.write("".join(chunk))
            self._file.flush()
            self._size = size
        except (OSError, ValueError) as exc:
            log.event("log_not_saved", actor=self.name, category="runtime", msg=str(exc))
            self.close()

    def _open(self) -> None:
        assert self.path is not None
        self._file = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._size = self._file.tell()
        open_files = self.open_files
        open_files[self] = None
        while len(open_files) > MAX_OPEN_FILES:
            open_files.popitem(last=False)[0].close()

    def _rotate(self) -> None:
        assert self.path is not None
        self._file.close()
        path = self.path
        os.replace(path, path.with_name(path.name + ".1"))
        self._open()

    def close(self) -> None:
        self.open_files.pop(self, None)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    # ------------------------------------------------------------------ reading
    def files(self) -> list[Path]:
        """Oldest first."""
        path = self.path
        if path is None:
            return []
        return [path.with_name(path.name + ".1"), path]

    def tail(self, lines: int | None, since: str | None = None) -> list[dict[str, Any]]:
        """The newest ``lines`` records (None: all) at or after ``since``, oldest first."""
        out: list[dict[str, Any]] = []
        if lines == 0:
            return out
        for raw in _reverse_lines(self.files()):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line cut by a crash
            if since is not None and record.get("at", "") < since:
                break
            out.append(record)
            if lines is not None and len(out) >= lines:
                break
        out.reverse()
        return out

    def _last_instance(self) -> int:
        for raw in _reverse_lines(self.files()):
            try:
                return int(json.loads(raw).get("instance", 0))
            except (ValueError, TypeError, AttributeError):
                continue
        return 0


def _reverse_lines(paths: list[Path], block: int = 65536) -> Iterator[str]:
    """The lines of ``paths`` (taken as one file, in order), last first."""
    for path in reversed(paths):
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except OSError:
            continue
        with handle:
            position = handle.seek(0, os.SEEK_END)
            rest = b""
            while position > 0:
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + rest
                parts = data.split(b"\n")
                rest = parts[0]
                for part in reversed(parts[1:]):
                    if part:
                        yield part.decode("utf-8", "replace")
            if rest:
                yield rest.decode("utf-8", "replace")


class LogStore:
    """Every actor's :class:`ActorLog`, the flush timer, and reading and following."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs: dict[str, ActorLog] = {}
        self._dirty: collections.deque[ActorLog] = collections.deque()
        self._open_files: collections.OrderedDict[ActorLog, None] = collections.OrderedDict()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False

    def actor(self, name: str, max_bytes: int | None = None) -> ActorLog:
        """The log of ``name``, created on first use; ``max_bytes`` (``log_max_bytes``)
        applies from now on when given."""
        actor_log = self.logs.get(name)
        if actor_log is None:
            actor_log = self.logs[name] = ActorLog(
                name,
                self.directory,
                max_bytes or DEFAULT_MAX_BYTES,
                self._dirty,
                self._open_files,
            )
        elif max_bytes is not None:
            actor_log.max_bytes = max_bytes
        return actor_log

    def start(self) -> None:
        """Start writing pending records every FLUSH_EVERY seconds (needs a running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.flush()

    def flush(self) -> None:
        dirty = self._dirty
        for _ in range(len(dirty)):
            actor_log = dirty.popleft()
            actor_log.marked = False
            actor_log.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for actor_log in self.logs.values():
            actor_log.flush()
        self._closed = True
        for actor_log in self.logs.values():
            actor_log.close()
            for follower in actor_log.followers:
                follower.wakeup.set()

    # ------------------------------------------------------------------ events
    def on_event(self, event: dict[str, Any]) -> None:
        """An event-log listener: an actor's events go to its log as ``event`` lines."""
        name = event.get("actor")
        if name is None:
            return
        actor_log = self.logs.get(name)
        if actor_log is None:
            return
        kind = event.get("kind")
        if kind == "state" and event.get("to") == "starting":
            actor_log.instance += 1
        actor_log.write("event", describe_event(event))
        if kind == "failure" and event.get("traceback"):
            log.event("traceback", actor=name, level=logging.DEBUG, traceback=event["traceback"])

    # ------------------------------------------------------------------ reading
    def tail(self, name: str, lines: int | None, since: str | None = None) -> list[dict[str, Any]]:
        actor_log = self.logs.get(name)
        if actor_log is None:
            return []
        actor_log.flush()
        return actor_log.tail(lines, since)

    async def follow(
        self, name: str, lines: int | None, since: str | None = None, heartbeat: float | None = None
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The kept records as ``tail`` gives them, then new ones as they are written.

        Yields None after ``heartbeat`` idle seconds; raises FollowerOverrun when the
        reader falls behind; ends when the store closes (daemon shutdown).
        """
        actor_log = self.logs.get(name)
        if actor_log is None:
            actor_log = self.actor(name)
        actor_log.flush()
        follower = _Follower()
        # Registered right after the flush, with no await between: every later record
        # reaches the follower, and none that the history below holds.
        if actor_log.followers is _NO_FOLLOWERS:
            actor_log.followers = set()
        actor_log.followers.add(follower)
        try:
            for record in actor_log.tail(lines, since):
                yield record
            while True:
                while follower.queue:
                    yield follower.queue.popleft()
                if follower.overrun:
                    raise FollowerOverrun(f"log follower of {name} fell behind")
                if self._closed:
                    return  # after the last records: close() flushed them first
                follower.wakeup.clear()
                if follower.queue:
                    continue
                try:
                    await asyncio.wait_for(follower.wakeup.wait(), heartbeat)
                except asyncio.TimeoutError:
                    yield None
        finally:
            actor_log.followers.discard(follower)


def describe_event(event: dict[str, Any]) -> str:
    """An event as one line of an actor's log (a failure adds its traceback below)."""
    kind = event.get("kind")
    skip = {"id", "at", "actor", "kind", "traceback"}
    if kind == "state":
        text = f"state {event.get('from')} -> {event.get('to')}"
        skip |= {"from", "to"}
    elif kind == "failure":
        text = f"failure in {event.get('where')}: {event.get('type')}: {event.get('message')}"
        skip |= {"where", "type", "message", "category"}
    elif kind == "restart":
        text = (
            f"restart {event.get('restarts')}/{event.get('max_restarts')} in "
            f"{event.get('delay')}s (cause {event.get('cause')})"
        )
        skip |= {"restarts", "max_restarts", "delay", "cause"}
    elif kind == "operator":
        text = f"operator {event.get('action')} (was {event.get('before')})"
        skip |= {"action", "before"}
    else:
        text = str(kind)
    rest = " ".join(f"{key}={value}" for key, value in event.items() if key not in skip)
    if rest:
        text += " " + rest
    if kind == "failure" and event.get("traceback"):
        text += "\n" + str(event["traceback"]).rstrip("\n")
    return text


# ---------------------------------------------------------------------- tracebacks
def describe_failure(cause: BaseException | None) -> str | None:
    """The full traceback of a failure, as Python prints it (a child process's own
    traceback when the failure came from one); None when there is none to tell."""
    if cause is None:
        return None
    remote = getattr(cause, "remote_traceback", None)
    if isinstance(remote, str) and remote:
        text = remote
    elif cause.__traceback__ is None:
        return None
    else:
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    if len(text) > MAX_TRACEBACK:
        half = MAX_TRACEBACK // 2
        text = text[:half] + "\n[... traceback cut ...]\n" + text[-half:]
    return text.rstrip("\n")


__all__ = [
    "ActorLog",
    "FollowerOverrun",
    "LogStore",
    "describe_event",
    "describe_failure",
]
