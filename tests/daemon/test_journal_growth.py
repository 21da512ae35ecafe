"""The journal stays cheap and bounded as it grows: the retention pass reads an index,
not every record, and the WAL gives back what one large transaction took."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pulsing_daemon.journal import WAL_SIZE_LIMIT, Journal


def test_the_retention_pass_finds_expired_keys_by_index(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        plan = journal.db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM asks WHERE created < ?", (0.0,)
        ).fetchall()
        assert any("asks_by_created" in str(step) for step in plan), plan
        now = time.time()
        with journal.transaction():
            journal.claim_ask("a", "old", "fp")
            journal.db.execute("UPDATE asks SET created = ? WHERE key = 'old'", (now - 100,))
            journal.claim_ask("a", "new", "fp")
        assert journal.prune_asks(50.0, now=now) == 1
        assert journal.ask_record("a", "old") is None
        assert journal.ask_record("a", "new") is not None
    finally:
        journal.close()


def test_a_large_prune_does_not_leave_a_large_wal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    wal = tmp_path / "journal.db-wal"
    try:
        outcome = '{"result":"' + "x" * 200 + '"}'
        for _ in range(6):  # ~16 MB of records, in transactions the size of a busy minute
            with journal.transaction():
                for _ in range(10_000):
                    key = os.urandom(16).hex()
                    journal.claim_ask("a", key, "fp")
                    journal.finish_ask("a", key, outcome)
        # A retention pass after a long downtime: everything expires in one transaction.
        assert journal.prune_asks(1.0, now=time.time() + 10.0) == 60_000
        assert wal.stat().st_size > WAL_SIZE_LIMIT
        with journal.transaction():  # the next write starts the WAL over, truncated
            journal.claim_ask("a", "next", "fp")
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        journal.close()
