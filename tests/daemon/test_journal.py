"""journal.py on a real SQLite file: stream chunks, ask records, GroupCommit."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from pulsing_daemon.journal import GroupCommit, Journal, StreamRecord


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    opened = Journal(tmp_path)
    yield opened  # type: ignore[misc]
    opened.close()


def _record(stream_id: str = "s1", key: str | None = None, actor: str = "a") -> StreamRecord:
    return StreamRecord(stream_id, actor, "count", "fp", key, True, None, 0, 0, 0, 1000.0, None)


# ---------------------------------------------------------------------- file
def test_the_file_is_private_and_in_wal_mode(tmp_path: Path, journal: Journal) -> None:
    assert journal.path == tmp_path / "journal.db"
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_what_is_committed_survives_a_reopen(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.create_stream(_record())
    first.append_chunks("s1", 0, ["1", "2"], max_chunks=10, kept_from=0)
    assert first.claim_ask("a", "k", "fp")
    first.close()
    again = Journal(tmp_path)
    try:
        assert again.read_chunks("s1", 0, 10) == [(0, "1"), (1, "2")]
        record = again.ask_record("a", "k")
        assert record is not None and not record.done
    finally:
        again.close()


def test_a_failed_transaction_leaves_nothing(journal: Journal) -> None:
    journal.create_stream(_record())
    with pytest.raises(sqlite3.IntegrityError), journal.transaction():
        journal.db.execute("INSERT INTO chunks (stream, seq, data) VALUES ('s1', 0, '1')")
        journal.db.execute("INSERT INTO chunks (stream, seq, data) VALUES ('s1', 0, '2')")
    assert journal.read_chunks("s1", 0, 10) == []


# ---------------------------------------------------------------------- streams
def test_a_stream_is_found_by_id_and_by_key(journal: Journal) -> None:
    journal.create_stream(_record("s1", key="k1"))
    by_id = journal.stream("s1")
    assert by_id is not None and by_id.open and by_id.key == "k1"
    assert journal.stream_by_key("a", "k1") == by_id
    assert journal.stream_by_key("other", "k1") is None
    assert journal.stream("nope") is None
    with pytest.raises(sqlite3.IntegrityError):  # one stream per (actor, key)
        journal.create_stream(_record("s2", key="k1"))


def test_appended_chunks_are_read_back_in_order(journal: Journal) -> None:
    journal.create_stream(_record())
    kept = journal.append_chunks("s1", 0, ["10", "11", "12"], max_chunks=100, kept_from=0)
    kept = journal.append_chunks("s1", 3, ['"x"'], max_chunks=100, kept_from=kept)
    assert kept == 0
    assert journal.read_chunks("s1", 0, 100) == [(0, "10"), (1, "11"), (2, "12"), (3, '"x"')]
    assert journal.read_chunks("s1", 2, 1) == [(2, "12")]
    record = journal.stream("s1")
    assert record is not None
    assert (record.first_seq, record.next_seq, record.bytes) == (0, 4, 9)
    assert journal.journal_bytes() == 9


def test_a_stream_is_trimmed_to_max_chunks(journal: Journal) -> None:
    journal.create_stream(_record())
    kept = journal.append_chunks("s1", 0, ["1", "2", "3"], max_chunks=4, kept_from=0)
    assert kept == 0
    kept = journal.append_chunks("s1", 3, ["4", "5", "6"], max_chunks=4, kept_from=kept)
    assert kept == 2
    assert [seq for seq, _ in journal.read_chunks("s1", 0, 100)] == [2, 3, 4, 5]
    record = journal.stream("s1")
    assert record is not None and (record.first_seq, record.bytes) == (2, 4)


def test_finished_streams_keep_their_terminal(journal: Journal) -> None:
    journal.create_stream(_record("s1"))
    journal.create_stream(_record("s2"))
    journal.finish_stream("s1", '{"end":true}')
    assert [record.id for record in journal.open_streams()] == ["s2"]
    record = journal.stream("s1")
    assert record is not None and not record.open and record.terminal == '{"end":true}'
    assert record.finished is not None


def test_a_deleted_stream_takes_its_chunks(journal: Journal) -> None:
    journal.create_stream(_record())
    journal.append_chunks("s1", 0, ["1"], max_chunks=10, kept_from=0)
    journal.delete_stream("s1")
    assert journal.stream("s1") is None
    assert journal.read_chunks("s1", 0, 10) == []


def test_prune_drops_old_finished_streams_then_the_oldest_over_the_cap(journal: Journal) -> None:
    for stream_id in ("old", "mid", "new", "live"):
        journal.create_stream(_record(stream_id))
        journal.append_chunks(stream_id, 0, ["x" * 100], max_chunks=10, kept_from=0)
    for stream_id, finished in (("old", 100.0), ("mid", 900.0), ("new", 950.0)):
        journal.finish_stream(stream_id, '{"end":true}')
        journal.db.execute("UPDATE streams SET finished = ? WHERE id = ?", (finished, stream_id))
    # Older than 500 s at now=1000: "old". Then over 250 bytes: the oldest finished, "mid".
    assert journal.prune_streams(max_age=500.0, max_total_bytes=250, now=1000.0) == 2
    assert journal.stream("old") is None and journal.stream("mid") is None
    assert journal.stream("new") is not None and journal.stream("live") is not None
    assert journal.read_chunks("mid", 0, 10) == []
    # An open stream is never pruned, even over the cap.
    assert journal.prune_streams(max_age=500.0, max_total_bytes=0, now=1000.0) == 1
    assert journal.stream("live") is not None


# ---------------------------------------------------------------------- asks
def test_an_ask_is_claimed_once(journal: Journal) -> None:
    assert journal.claim_ask("a", "k", "fp") is True
    assert journal.claim_ask("a", "k", "other") is False
    assert journal.claim_ask("b", "k", "fp") is True  # keys are per actor
    record = journal.ask_record("a", "k")
    assert record is not None
    assert (record.fingerprint, record.done, record.outcome) == ("fp", False, None)


def test_a_finished_ask_keeps_its_outcome(journal: Journal) -> None:
    journal.claim_ask("a", "k", "fp")
    journal.finish_ask("a", "k", '{"result":1}')
    record = journal.ask_record("a", "k")
    assert record is not None and record.done and record.outcome == '{"result":1}'


def test_an_outcome_is_stored_at_the_rowid_its_claim_returned(journal: Journal) -> None:
    from pulsing_daemon.journal import FINISH_ASK_AT

    first = journal.claim_ask_at("a", "k", "fp")
    assert isinstance(first, int)
    assert journal.claim_ask_at("a", "k", "fp") is None  # taken: no record made
    other = journal.claim_ask_at("a", "other", "fp")
    # The key is checked as well: a rowid that is another key's record changes nothing.
    journal.db.execute(FINISH_ASK_AT, journal.finish_ask_at_row(other, "a", "k", '"wrong"'))
    journal.db.execute(FINISH_ASK_AT, journal.finish_ask_at_row(first, "a", "k", '"right"'))
    stored, untouched = journal.ask_record("a", "k"), journal.ask_record("a", "other")
    assert stored is not None and stored.done and stored.outcome == '"right"'
    assert untouched is not None and not untouched.done and untouched.outcome is None


def test_a_forgotten_ask_can_be_claimed_again(journal: Journal) -> None:
    journal.claim_ask("a", "k", "fp")
    journal.forget_ask("a", "k")
    assert journal.ask_record("a", "k") is None
    assert journal.claim_ask("a", "k", "fp") is True


def test_prune_asks_drops_records_older_than_retention(journal: Journal) -> None:
    journal.claim_ask("a", "old", "fp")
    journal.claim_ask("a", "new", "fp")
    journal.db.execute("UPDATE asks SET created = 100.0 WHERE key = 'old'")
    journal.db.execute("UPDATE asks SET created = 990.0 WHERE key = 'new'")
    assert journal.prune_asks(retention=50.0, now=1000.0) == 1
    assert journal.ask_record("a", "old") is None
    assert journal.ask_record("a", "new") is not None


# ---------------------------------------------------------------------- GroupCommit
def test_statements_of_one_loop_iteration_commit_together(journal: Journal) -> None:
    async def main() -> None:
        commits = GroupCommit(journal)
        begins = 0
        real = journal.transaction

        def counting():  # type: ignore[no-untyped-def]
            nonlocal begins
            begins += 1
            return real()

        journal.transaction = counting  # type: ignore[method-assign]
        futures = [commits.run(lambda key=key: journal.claim_ask("a", key, "fp")) for key in "xyz"]
        futures.append(commits.run(lambda: journal.claim_ask("a", "x", "fp")))
        assert await asyncio.wait_for(asyncio.gather(*futures), 3.0) == [True, True, True, False]
        assert begins == 1
        assert await asyncio.wait_for(commits.run(lambda: "next"), 3.0) == "next"
        assert begins == 2

    asyncio.run(main())


def test_a_failing_statement_fails_its_whole_group(journal: Journal) -> None:
    async def main() -> None:
        commits = GroupCommit(journal)

        def broken() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        good = commits.run(lambda: journal.claim_ask("a", "k", "fp"))
        bad = commits.run(broken)
        results = await asyncio.wait_for(asyncio.gather(good, bad, return_exceptions=True), 3.0)
        assert all(isinstance(result, sqlite3.OperationalError) for result in results)
        assert journal.ask_record("a", "k") is None  # rolled back with the rest

    asyncio.run(main())


def test_records_are_stamped_and_pruned_on_the_injected_wall_clock(tmp_path: Path) -> None:
    now = [1000.0]
    journal = Journal(tmp_path, wall_clock=lambda: now[0])
    try:
        journal.claim_ask("a", "k", "fp")
        journal.create_stream(_record("s1"))
        journal.finish_stream("s1", '{"end":true}')
        record = journal.stream("s1")
        assert record is not None and record.finished == 1000.0
        now[0] = 1049.0
        assert journal.prune_asks(retention=50.0) == 0
        assert journal.prune_streams(max_age=50.0, max_total_bytes=1 << 20) == 0
        now[0] = 1051.0
        assert journal.prune_asks(retention=50.0) == 1
        assert journal.prune_streams(max_age=50.0, max_total_bytes=1 << 20) == 1
    finally:
        journal.close()


def test_rows_of_one_statement_in_a_row_run_together_in_order(journal: Journal) -> None:
    """add_row merges consecutive rows of the same statement (one executemany); other
    statements between them keep their place, and every callback hears the commit."""
    from pulsing_daemon.journal import FINISH_ASK

    async def main() -> None:
        commits = GroupCommit(journal)
        heard: list[Exception | None] = []
        for key in "abc":
            commits.add(lambda key=key: journal.claim_ask("a", key, "fp"))
        commits.add_row(FINISH_ASK, journal.finish_ask_row("a", "a", '"1"'), heard.append)
        commits.add_row(FINISH_ASK, journal.finish_ask_row("a", "b", '"2"'), heard.append)
        commits.add(lambda: journal.forget_ask("a", "b"))
        commits.add(lambda: journal.claim_ask("a", "b", "fp2"))
        commits.add_row(FINISH_ASK, journal.finish_ask_row("a", "b", '"3"'), heard.append)
        await asyncio.wait_for(commits.run(lambda: None), 3.0)
        assert heard == [None, None, None]
        records = {key: journal.ask_record("a", key) for key in "abc"}
        assert records["a"] is not None and records["a"].outcome == '"1"'
        assert records["b"] is not None and (records["b"].outcome, records["b"].fingerprint) == (
            '"3"',
            "fp2",
        )
        assert records["c"] is not None and not records["c"].done

    asyncio.run(main())


def test_a_journal_from_before_rowids_keeps_its_ask_records(tmp_path: Path) -> None:
    """The asks table of a journal written before it had rowids (records keyed by
    (actor, key), WITHOUT ROWID) is rebuilt when the journal opens: every record kept,
    a stored key still taken, the indexes in place."""
    old = sqlite3.connect(tmp_path / "journal.db")
    old.executescript(
        """
        CREATE TABLE asks (
            actor TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0, outcome TEXT, created REAL NOT NULL,
            finished REAL, PRIMARY KEY (actor, key)
        ) WITHOUT ROWID;
        CREATE INDEX asks_by_created ON asks(created);
        INSERT INTO asks VALUES ('w', 'k2', 'fp2', 0, NULL, 20.0, NULL);
        INSERT INTO asks VALUES ('w', 'k1', 'fp1', 1, '{"result":1}', 10.0, 11.0);
        """
    )
    old.close()
    journal = Journal(tmp_path)
    try:
        record = journal.ask_record("w", "k1")
        assert record is not None and record.done and record.outcome == '{"result":1}'
        assert journal.ask_record("w", "k2") is not None
        assert not journal.claim_ask("w", "k1", "fp1")  # still taken
        assert journal.claim_ask("w", "k3", "fp3")
        sql = journal.db.execute("SELECT sql FROM sqlite_master WHERE name = 'asks'").fetchone()
        assert "WITHOUT ROWID" not in sql[0].upper()
        indexes = {row[1] for row in journal.db.execute("PRAGMA index_list(asks)")}
        assert {"asks_by_key", "asks_by_created"} <= indexes
        keys = [row[0] for row in journal.db.execute("SELECT key FROM asks ORDER BY rowid")]
        assert keys == ["k1", "k2", "k3"]  # in the order they came
        assert journal.prune_asks(15.0, now=30.0) == 1  # k1 (created 10) only
    finally:
        journal.close()
    Journal(tmp_path).close()  # opened again: nothing left to migrate
