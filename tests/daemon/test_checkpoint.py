"""WAL checkpoints on the checkpointer's thread (pulsing_daemon/storage/checkpoint.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pulsing_daemon.journal import WAL_SIZE_LIMIT, Journal
from pulsing_daemon.storage import checkpoint
from pulsing_daemon.storage.checkpoint import FALLBACK_PAGES


def _write(journal: Journal, first: int, count: int) -> None:
    with journal.transaction() as db:
        for i in range(first, first + count):
            db.execute(
                "INSERT INTO asks (actor, key, fingerprint, created) VALUES ('a', ?, 'f', 0)",
                (f"k{i:08d}",),
            )


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _count(journal: Journal) -> int:
    return journal.db.execute("SELECT count(*) FROM asks").fetchone()[0]


def _pragma(journal: Journal, name: str) -> int:
    return journal.db.execute(f"PRAGMA {name}").fetchone()[0]


def _background(state_dir: Path) -> tuple[Journal, checkpoint.Checkpointer]:
    journal = Journal(state_dir)
    journal.checkpoint_in_background()
    assert journal.checkpointer is not None
    return journal, journal.checkpointer


def _wal_bytes_per_row(state_dir: Path, rows: int = 20_000) -> float:
    """What the WAL grows by per row written as ``_write`` writes them (50 a transaction)
    when it never starts over: no checkpoint at all."""
    state_dir.mkdir()
    journal = Journal(state_dir)
    try:
        journal.db.execute("PRAGMA wal_autocheckpoint=0")
        for first in range(0, rows, 50):
            _write(journal, first, 50)
        return (state_dir / "journal.db-wal").stat().st_size / rows
    finally:
        journal.close()


def _count_reopened(state_dir: Path) -> int:
    journal = Journal(state_dir)
    try:
        return _count(journal)
    finally:
        journal.close()


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.005)
    monkeypatch.setattr(checkpoint, "IDLE_AFTER", 0.2)


def test_the_loop_connection_leaves_checkpoints_to_the_thread(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        assert _pragma(journal, "wal_autocheckpoint") == 1000
        journal.checkpoint_in_background()
        assert _pragma(journal, "wal_autocheckpoint") == FALLBACK_PAGES
        assert _pragma(journal, "journal_size_limit") == -1
        first = journal.checkpointer
        journal.checkpoint_in_background()  # twice: still one thread
        assert journal.checkpointer is first
    finally:
        journal.close()


def test_commits_are_checkpointed_and_the_idle_wal_truncated(tmp_path: Path, fast: None) -> None:
    journal, cp = _background(tmp_path)
    wal = tmp_path / "journal.db-wal"
    try:
        for n in range(20):
            _write(journal, n * 100, 100)
        assert wal.stat().st_size > 0
        assert _wait(lambda: cp.passes >= 1)
        # no commit for IDLE_AFTER: every page is in the database file, the WAL empty
        assert _wait(lambda: cp.truncations >= 1 and wal.stat().st_size == 0)
        assert _count(journal) == 2000
        _write(journal, 2000, 10)  # and it goes on from there
        assert _wait(lambda: cp.truncations >= 2 and wal.stat().st_size == 0)
    finally:
        journal.close()
    assert not cp._thread.is_alive()
    assert _count_reopened(tmp_path) == 2010


def test_a_reader_holding_the_wal_puts_the_truncation_off(tmp_path: Path, fast: None) -> None:
    # The thread never waits for a lock: with a read open elsewhere its TRUNCATE is
    # busy at once, the loop's writes go on undelayed, and the WAL is emptied at the
    # first idle spell after the read ends.
    journal, cp = _background(tmp_path)
    wal = tmp_path / "journal.db-wal"
    reader = sqlite3.connect(journal.path, isolation_level=None)
    try:
        _write(journal, 0, 100)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM asks").fetchone() == (100,)
        time.sleep(3 * checkpoint.IDLE_AFTER)  # idle spells: each TRUNCATE busy
        assert cp.truncations == 0 and wal.stat().st_size > 0
        began = time.monotonic()
        _write(journal, 100, 10)
        assert time.monotonic() - began < 0.5
        reader.execute("COMMIT")
        assert _wait(lambda: cp.truncations >= 1 and wal.stat().st_size == 0)
        assert not cp.failed
    finally:
        reader.close()
        journal.close()
    assert _count_reopened(tmp_path) == 110


def test_the_wal_starts_over_under_constant_writes(
    tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "RESTART_PAGES", 64)
    journal, cp = _background(tmp_path)
    wal = tmp_path / "journal.db-wal"
    try:
        written, largest = 0, 0
        until = time.monotonic() + 1.5
        while time.monotonic() < until:  # never a pause for the WAL to start over in
            _write(journal, written, 50)
            written += 50
            largest = max(largest, wal.stat().st_size)
        assert cp.passes >= 2
        assert cp.finishes >= 1  # the loop copied the rest: the WAL started over
        # Without that it would hold every page written. How far it grows between two
        # starts depends on how long a pass's fsyncs take on this disk (tens of ms on a
        # busy CI machine, with ~150k rows a second written), so the bound is a share of
        # what it would hold, measured here, not a size.
        unbounded = written * _wal_bytes_per_row(tmp_path / "unbounded")
        assert largest < unbounded / 4, (largest, unbounded, written, cp.passes, cp.finishes)
        assert _count(journal) == written
    finally:
        journal.close()
    assert _count_reopened(tmp_path) == written


def test_a_read_open_on_the_loop_connection_puts_the_finish_off(tmp_path: Path) -> None:
    # SQLite refuses a checkpoint on a connection with a statement still reading
    # ("database table is locked"): the commit before it stands, and the loop finishes
    # after a later commit.
    journal, cp = _background(tmp_path)
    try:
        _write(journal, 0, 10)
        reading = journal.db.execute("SELECT key FROM asks")
        assert reading.fetchone() is not None
        cp.finish_due = True
        _write(journal, 10, 10)
        assert cp.finish_due and cp.finishes == 0
        reading.close()
        _write(journal, 20, 10)
        assert not cp.finish_due and cp.finishes == 1
        assert _count(journal) == 30
    finally:
        journal.close()
    assert _count_reopened(tmp_path) == 30


def test_a_failed_thread_leaves_checkpoints_to_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path)
    real = checkpoint.Checkpointer

    def unopenable(path: Path) -> checkpoint.Checkpointer:
        return real(tmp_path / "missing" / "journal.db")

    monkeypatch.setattr("pulsing_daemon.journal.Checkpointer", unopenable)
    with caplog.at_level("WARNING", logger="pulsing"):
        journal.checkpoint_in_background()
        cp = journal.checkpointer
        assert cp is not None
        try:
            assert _wait(lambda: cp.failed)
            _write(journal, 0, 10)
            assert journal.checkpointer is None
            assert _pragma(journal, "wal_autocheckpoint") == 1000
            assert _pragma(journal, "journal_size_limit") == WAL_SIZE_LIMIT
        finally:
            journal.close()
    assert any("checkpoint_stopped" in r.getMessage() for r in caplog.records)
