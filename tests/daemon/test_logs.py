"""storage/logs.py: records, rotation, reading back, since, and capture routed by actor."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from pulsing_daemon.storage import capture, logs, stamps
from pulsing_daemon.storage.logs import LogStore, describe_failure
from pulsing_daemon.storage.stamps import parse_since


def test_rotation_keeps_at_most_max_bytes_and_the_newest_lines(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    actor_log = store.actor("a", 8192)
    for index in range(2000):
        actor_log.write("stdout", f"line {index} " + "y" * 40)
        if index % 100 == 0:
            store.flush()
    store.flush()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["a.log", "a.log.1"]
    assert sum(f.stat().st_size for f in files) <= 8192
    tail = actor_log.tail(None)
    assert tail[-1]["text"].startswith("line 1999 ")
    numbers = [int(r["text"].split()[1]) for r in tail]
    assert numbers == list(range(numbers[0], 2000))  # contiguous, oldest first


def test_only_the_most_recently_written_logs_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_OPEN_FILES", 2)
    store = LogStore(tmp_path)
    names = ["a", "b", "c", "a", "d", "a"]
    for round_, name in enumerate(names):
        store.actor(name).write("stdout", f"round {round_}")
        store.flush()
        opened = [n for n, actor_log in store.logs.items() if actor_log._file is not None]
        assert len(opened) <= 2 and name in opened
    assert sorted(n for n, lg in store.logs.items() if lg._file is not None) == ["a", "d"]
    for name in "abcd":  # a log closed in between goes on appending
        expected = [f"round {i}" for i, n in enumerate(names) if n == name]
        assert [r["text"] for r in store.actor(name).tail(None)] == expected
    store.close()
    assert not any(lg._file for lg in store.logs.values())


def test_records_survive_a_new_store_and_instances_continue(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.actor("a").instance = 3
    store.actor("a").write("log", "kept")
    store.close()
    again = LogStore(tmp_path)
    assert again.actor("a").instance == 3
    assert [r["text"] for r in again.tail("a", 10)] == ["kept"]


def test_since_and_lines(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    actor_log = store.actor("a")
    for index in range(5):
        actor_log.write("stdout", str(index))
        time.sleep(0.001)  # distinct stamps
    records = store.tail("a", None)
    middle = records[2]["at"]
    assert [r["text"] for r in store.tail("a", None, middle)] == ["2", "3", "4"]
    assert [r["text"] for r in store.tail("a", 2, middle)] == ["3", "4"]
    assert store.tail("a", 0) == []


def test_parse_since() -> None:
    now = 1_800_000_000.0
    assert parse_since("10m", now) == stamps.stamp(now - 600)
    assert parse_since("1.5h", now) == stamps.stamp(now - 5400)
    assert parse_since("2026-12-01T10:00:00Z") == "2026-12-01T10:00:00.000000Z"
    assert parse_since("2026-12-01T10:00:00+01:00") == "2026-12-01T09:00:00.000000Z"
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday")


def test_partial_lines_are_joined_per_thread() -> None:
    actor_log = LogStore(None).actor("a")
    actor_log.write_partial("stdout", "hel")
    actor_log.write_partial("stdout", "lo\nwor")
    actor_log.flush_partial("stdout")
    assert [r["text"] for r in actor_log.flush()] == ["hello", "wor"]


def test_capture_routes_by_the_running_actor() -> None:
    store = LogStore(None)
    one, two = store.actor("one"), store.actor("two")
    capture.install()
    try:

        async def actor(actor_log: logs.ActorLog, tag: str) -> None:
            capture.enter(actor_log)
            for index in range(50):
                print(f"{tag} {index}")
                await asyncio.sleep(0)
            logging.getLogger("t").warning("%s done", tag)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: None
            )  # a bare executor job does not copy the context: the next print is ours again
            thread_lines: list[str] = []

            def in_thread() -> None:
                print(f"{tag} thread")
                thread_lines.append("ran")

            from pulsing_daemon.hosts.threads import run_sync

            await run_sync(in_thread)
            assert thread_lines == ["ran"]

        async def main() -> None:
            await asyncio.gather(actor(one, "ONE"), actor(two, "TWO"))

        asyncio.run(main())
    finally:
        capture.uninstall()
    for actor_log, tag in ((one, "ONE"), (two, "TWO")):
        records = actor_log.flush()
        out = [r["text"] for r in records if r["stream"] == "stdout"]
        assert out == [f"{tag} {i}" for i in range(50)] + [f"{tag} thread"]
        assert [r["text"] for r in records if r["stream"] == "log"] == [f"WARNING t: {tag} done"]
    assert sys.stdout is not None and not isinstance(sys.stdout, capture._Capture)


def test_writes_from_threads_are_never_lost() -> None:
    actor_log = LogStore(None).actor("a")
    taken: list[str] = []

    def writer(tag: int) -> None:
        for index in range(2000):
            actor_log.write("stdout", f"{tag}-{index}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        taken += [r["text"] for r in actor_log.flush()]
        time.sleep(0.001)
    taken += [r["text"] for r in actor_log.flush()]
    assert sorted(taken) == sorted(f"{n}-{i}" for n in range(4) for i in range(2000))


def test_describe_failure_names_the_raising_function() -> None:
    def raising_here() -> None:
        raise KeyError("missing")

    try:
        raising_here()
    except KeyError as exc:
        text = describe_failure(exc)
    assert text is not None and "in raising_here" in text and text.endswith("KeyError: 'missing'")
    assert describe_failure(None) is None
    remote = RuntimeError("x")
    remote.remote_traceback = "Traceback (most recent call last):\n  child\nRuntimeError: x"  # type: ignore[attr-defined]
    assert describe_failure(remote) == remote.remote_traceback  # type: ignore[attr-defined]


def test_a_written_line_is_the_json_of_its_record(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    actor_log = store.actor('we"ird\\name')
    actor_log.write("log", 'quotes " backslash \\ tab \t newline-free ünïcode ✓')
    actor_log.write("stdout", "")
    records = actor_log.flush()
    lines = (tmp_path / 'we"ird\\name.log').read_text(encoding="utf-8").splitlines()
    assert lines == [logs._encode_record(record) for record in records]
    assert [json.loads(line) for line in lines] == records
