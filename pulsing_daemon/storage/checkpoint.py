"""WAL checkpoints on a thread of their own, so that the event loop seldom waits on fsync.

With ``synchronous=NORMAL`` a commit writes its pages to the WAL and does not sync;
the checkpoint, which copies the WAL's pages into the database file, syncs the WAL and
then the database file. SQLite runs it in whichever connection's commit crosses
``wal_autocheckpoint`` pages (1,000 by default): for the journal that is the event
loop, which then waits on two fsyncs and on writing a thousand pages, scattered over
the file when keys are random: milliseconds every few hundred keyed asks, none of it CPU.

A :class:`Checkpointer` moves that to a thread with its own connection:

- after a commit the loop calls :meth:`Checkpointer.committed` (an attribute test, and
  a ``threading.Event.set`` at most once per thread cycle);
- the thread, once woken, waits ``INTERVAL`` for more commits to gather and runs a
  ``PASSIVE`` checkpoint: it copies what is committed and syncs, while the loop goes on
  writing;
- the WAL starts over from its beginning only at a commit that finds every frame
  copied, which under load never happens after the thread's passes (the loop has
  committed more meanwhile). So once the WAL holds ``RESTART_PAGES`` the thread asks the
  loop to copy the rest itself, right after its next commit (:meth:`committed`): only
  what came in since the thread's last pass, a few pages and two syncs, once per
  ``RESTART_PAGES``; the loop's next commit starts the WAL over. A ``RESTART``
  checkpoint from the thread would do the same but hold the loop's writes back for as
  long as it takes to get the write lock and copy;
- the WAL file keeps its size as it starts over (no truncation on the loop); when no
  commit has come for ``IDLE_AFTER`` seconds the thread truncates it to nothing (a
  reader elsewhere, a backup say, puts that off to a later idle spell: the thread never
  waits for a lock, which would hold the loop's writes back meanwhile).

What is left on the loop: a read of a database page that the thread's fsync is
writing back waits for that write (the kernel locks the page meanwhile); rarer than
the loop's own checkpoints were, but longer when it happens (benchmarks/README.md,
"Performance tricks").

Checkpoints change where committed pages live, never what is committed: a SIGKILL at
any point leaves every commit in the WAL or the database file, as before. Should the
thread end on an error, the journal hands checkpoints back to SQLite (``failed``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from pulsing_daemon import log

# Seconds the thread lets commits gather after a commit woke it before it checkpoints.
INTERVAL = 0.05
# WAL pages (4 KB each) past which the loop is asked to finish a checkpoint.
RESTART_PAGES = 16384
# WAL pages past which the loop's own connection checkpoints, as SQLite does by itself
# (a safety net: the thread far behind).
FALLBACK_PAGES = 4 * RESTART_PAGES
# Seconds without a commit after which the thread truncates the WAL file.
IDLE_AFTER = 1.0


class Checkpointer:
    """Checkpoints the WAL of the database at ``path`` on a thread (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.woken = False  # set by the loop, cleared by the thread as it starts a pass
        self.finish_due = False  # set by the thread: the loop copies the rest (committed)
        self.failed = False  # the thread ended on an error: checkpoints are SQLite's again
        self.passes = 0  # checkpoints run by the thread
        self.finishes = 0  # checkpoints the loop finished
        self.truncations = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulsing-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, db: sqlite3.Connection) -> None:
        """The loop's connection ``db`` has just committed (called on the loop)."""
        if self.finish_due:
            self.finish_due = False
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:  # e.g. a read still open on db: the thread goes on, and
                self.finish_due = True  # the loop tries again after its next commit
            else:
                self.finishes += 1
        if not self.woken:
            self.woken = True
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, after the checkpoint it may be running."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            # Never wait for a lock: a TRUNCATE that waited for the loop to finish a
            # read would hold the loop's writes back meanwhile. Busy, it is tried again
            # after the next idle spell (a passive pass never waits anyway).
            db.execute("PRAGMA busy_timeout=0")
            db.execute("PRAGMA synchronous=NORMAL")
            truncated = True
            while True:
                if not self._wake.wait(None if truncated else IDLE_AFTER):
                    busy, _pages, _copied = db.execute(
                        "PRAGMA wal_checkpoint(TRUNCATE)"
                    ).fetchone()
                    if not busy:
                        self.truncations += 1
                        truncated = True
                    continue
                self._wake.clear()
                # Commits made meanwhile join this pass (woken stays set).
                if self._closed.wait(INTERVAL):
                    return
                self.woken = False
                _busy, pages, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.passes += 1
                truncated = False
                if pages >= RESTART_PAGES:
                    # once more: what came in during that pass, so that the loop's
                    # part is what comes in during this shorter one
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.passes += 1
                    self.finish_due = True
        except Exception as exc:  # the journal gives checkpoints back to SQLite
            self.failed = True
            log.event(
                "checkpoint_stopped",
                level=logging.WARNING,
                msg="WAL checkpoints are back on the event loop",
                error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            if db is not None:
                db.close()
