"""The floor servers (``benchmarks/floors.py``) do the work their guarantee needs: a
floor that skipped it would make every ratio to it meaningless. One server process,
a few requests each; no load."""

from __future__ import annotations

import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import floors
from benchmarks.harness import FloorServer, http_json


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloorServer]:
    proc = FloorServer(tmp_path_factory.mktemp("floors")).start(timeout=30)
    try:
        yield proc
    finally:
        proc.stop()


def db_of(server: FloorServer) -> sqlite3.Connection:
    return sqlite3.connect(server.workdir / "floors-state" / "floors.db")


def test_sqlite_is_opened_as_pulsing_opens_its_journal(tmp_path: Path) -> None:
    db = floors.open_db(tmp_path / "x.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    from pulsing_daemon.journal import WAL_SIZE_LIMIT
    from pulsing_daemon.streams import FLUSH_CHUNKS

    assert floors.WAL_SIZE_LIMIT == WAL_SIZE_LIMIT and floors.BATCH == FLUSH_CHUNKS


@pytest.mark.parametrize("path", ["/mailbox", "/process"])
def test_mailbox_and_process_floors_answer_the_echo(server: FloorServer, path: str) -> None:
    url = f"http://127.0.0.1:{server.port}{path}"
    for i in range(3):
        assert http_json(url, {"op": "echo", "args": {"x": i}}) == (200, {"result": {"x": i}})


@pytest.mark.parametrize("path", ["/keyed", "/keyed_mailbox", "/keyed_thread"])
def test_keyed_floor_is_durable_at_most_once(server: FloorServer, path: str) -> None:
    url = f"http://127.0.0.1:{server.port}{path}"
    key = {"Idempotency-Key": f"k-floor-{path}"}
    assert http_json(url, {"op": "echo", "args": {"x": 1}}, key) == (200, {"result": {"x": 1}})
    with db_of(server) as db:  # committed before the answer
        row = db.execute(
            "SELECT done, outcome FROM asks WHERE key = ?", (key["Idempotency-Key"],)
        ).fetchone()
    assert row == (1, '{"result": {"x": 1}}')
    assert http_json(url, {"op": "echo", "args": {"x": 1}}, key) == (200, {"result": {"x": 1}})
    assert http_json(url, {"op": "echo", "args": {"x": 2}}, key)[0] == 422


def test_stream_floor_commits_every_chunk_it_sends(server: FloorServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stream?n=1500") as resp:
        lines = resp.read().decode().splitlines()
    assert len(lines) == 1501 and lines[-1] == '{"end":true}'
    assert lines[1499] == '{"seq":1499,"data":{"i":1499}}'
    with db_of(server) as db:
        stream, next_seq, terminal = db.execute(
            "SELECT id, next_seq, terminal FROM streams ORDER BY created DESC LIMIT 1"
        ).fetchone()
        chunks = db.execute("SELECT COUNT(*) FROM chunks WHERE stream = ?", (stream,)).fetchone()
    assert (next_seq, terminal, chunks[0]) == (1500, '{"end":true}', 1500)
