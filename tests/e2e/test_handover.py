"""A keyed ask is "outcome unknown" after a crash only if its op may have begun (CONTRACT §4).

The durable record is written when the op is handed to its instance, not when the ask
arrives (pulsing_daemon/handover.py). These tests SIGKILL a real daemon (or a
process-isolated actor's child) at chosen points and count executions from the
actor's own side-effect file:

- killed while the ask waits in the mailbox behind a slow op: the repeat runs it once;
- the same for asks handed over ahead with the slow op (taken back after 20 ms);
- killed while the op runs: the repeat gets "outcome unknown", never a second run;
- a child process dying under a handed-over op: "outcome unknown"; the asks queued
  behind it run once on the next child;
- killed between the handover record and the op's first line (the child is stopped, so
  it never reads the call): "outcome unknown", the safe answer, and the op never ran.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from e2e_helpers import wait_for

ACTORS = """
[actors.e]
class = "stream_actors:Effects"
args = {{ effects = "{effects}" }}

[actors.p]
class = "stream_actors:Effects"
args = {{ effects = "{effects}" }}
isolation = "process"
min_backoff = 0.05
max_backoff = 0.1
"""


def make(daemon_factory: Any, tmp_path: Path) -> Any:
    return daemon_factory(ACTORS.format(effects=tmp_path / "effects"))


def effects(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "effects").read_text().splitlines()
    except FileNotFoundError:
        return []


def keyed(d: Any, actor: str, op: str, key: str, **args: Any) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key, "Pulsing-Timeout": "20"}
    status, _, body = d.http("POST", f"/v1/actors/{actor}/ask", {"op": op, "args": args}, headers)
    return status, body


def in_background(d: Any, actor: str, op: str, key: str | None, **args: Any) -> threading.Thread:
    """Send an ask on a thread; its answer is lost with the daemon (that is the point)."""

    def send() -> None:
        try:
            if key is None:
                d.http("POST", f"/v1/actors/{actor}/ask", {"op": op, "args": args})
            else:
                keyed(d, actor, op, key, **args)
        except Exception:  # the daemon died under it
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def mailbox(d: Any, actor: str) -> int:
    return d.actor(actor)["mailbox"]


def records(tmp_path: Path) -> dict[str, int]:
    """key -> done, from the daemon's journal (read-only, beside the running daemon)."""
    db = sqlite3.connect(f"file:{tmp_path / 'state' / 'journal.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, done FROM asks").fetchall())
    finally:
        db.close()


def assert_unknown(status: int, body: Any) -> None:
    assert status >= 500, (status, body)
    error = body["error"]
    assert error["category"] == "system" and error["recoverable"] is False, body
    assert "outcome unknown" in error["message"], body


def test_killed_while_queued_behind_a_slow_op_the_repeat_runs_once(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = make(daemon_factory, tmp_path)
    threads = [in_background(d, "e", "block", "slow", seconds=5.0, tag="slow")]
    wait_for(lambda: effects(tmp_path) == ["begin slow"], 10.0, "the slow op to start")
    threads += [in_background(d, "e", "mark", f"q{i}", tag=f"q{i}") for i in range(3)]
    wait_for(lambda: mailbox(d, "e") == 3, 10.0, "three asks queued behind it")
    assert set(records(tmp_path)) == {"slow"}  # queued asks are not recorded
    d.kill()
    for thread in threads:
        thread.join(10)
    d.start()

    for i in range(3):
        status, body = keyed(d, "e", "mark", f"q{i}", tag=f"q{i}")
        assert status == 200 and body["result"]["tag"] == f"q{i}", (status, body)
        status, body = keyed(d, "e", "mark", f"q{i}", tag=f"q{i}")
        assert status == 200 and body.get("replayed") is True, body
    assert_unknown(*keyed(d, "e", "block", "slow", seconds=5.0, tag="slow"))
    assert sorted(effects(tmp_path)) == ["begin slow", "q0", "q1", "q2"]


def test_asks_handed_over_ahead_are_taken_back_behind_a_slow_op(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """A slow keyed op and keyed asks behind it reach the actor together: all are handed
    over in one commit, then the ones that have not started are taken back."""
    d = make(daemon_factory, tmp_path)
    threads = [in_background(d, "e", "block", None, seconds=1.0, tag="busy")]
    wait_for(lambda: effects(tmp_path) == ["begin busy"], 10.0, "the actor to be busy")
    threads.append(in_background(d, "e", "block", "slow", seconds=5.0, tag="slow"))
    wait_for(lambda: mailbox(d, "e") == 1, 10.0, "the slow op queued")
    threads += [in_background(d, "e", "mark", f"q{i}", tag=f"q{i}") for i in range(3)]
    threads += [in_background(d, "e", "amark", f"a{i}", tag=f"a{i}", delay=0) for i in range(2)]
    wait_for(lambda: mailbox(d, "e") == 6, 10.0, "five asks queued behind it")
    wait_for(lambda: "begin slow" in effects(tmp_path), 10.0, "the slow op to start")
    # Handed over with it, then taken back: only the slow one keeps its record.
    wait_for(lambda: set(records(tmp_path)) == {"slow"}, 5.0, "the others taken back")
    d.kill()
    for thread in threads:
        thread.join(10)
    d.start()

    for key in ("q0", "q1", "q2", "a0", "a1"):
        op, args = ("mark", {}) if key[0] == "q" else ("amark", {"delay": 0})
        status, body = keyed(d, "e", op, key, tag=key, **args)
        assert status == 200 and body["result"]["tag"] == key, (status, body)
    assert_unknown(*keyed(d, "e", "block", "slow", seconds=5.0, tag="slow"))
    assert sorted(effects(tmp_path)) == sorted(
        ["begin busy", "busy", "begin slow", "q0", "q1", "q2", "a0", "a1"]
    )


def test_killed_while_the_op_runs_the_repeat_gets_outcome_unknown(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = make(daemon_factory, tmp_path)
    thread = in_background(d, "e", "block", "running", seconds=5.0, tag="r")
    wait_for(lambda: effects(tmp_path) == ["begin r"], 10.0, "the op to start")
    d.kill()
    thread.join(10)
    d.start()
    for _ in range(2):
        assert_unknown(*keyed(d, "e", "block", "running", seconds=5.0, tag="r"))
    assert effects(tmp_path) == ["begin r"]  # never ran a second time


def test_child_dies_under_a_handed_over_op_outcome_unknown_queued_ones_run_once(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = make(daemon_factory, tmp_path)
    pid = d.wait_state("p", "running")["pid"]
    answer: list[tuple[int, Any]] = []
    first = threading.Thread(
        target=lambda: answer.append(keyed(d, "p", "block", "c", seconds=10.0, tag="c"))
    )
    first.start()
    wait_for(lambda: effects(tmp_path) == ["begin c"], 10.0, "the op to start in the child")
    queued: dict[str, tuple[int, Any]] = {}
    behind = [
        threading.Thread(
            target=lambda k=f"m{i}": queued.__setitem__(k, keyed(d, "p", "mark", k, tag=k))
        )
        for i in range(2)
    ]
    for thread in behind:
        thread.start()
    wait_for(lambda: mailbox(d, "p") == 2, 10.0, "two asks queued behind it")
    os.kill(pid, signal.SIGKILL)
    first.join(20)
    for thread in behind:
        thread.join(20)

    assert_unknown(*answer[0])
    assert_unknown(*keyed(d, "p", "block", "c", seconds=10.0, tag="c"))  # stored
    for key in ("m0", "m1"):
        status, body = queued[key]
        assert status == 200 and body["result"]["tag"] == key, (status, body)
    assert sorted(effects(tmp_path)) == ["begin c", "m0", "m1"]


def test_killed_between_the_handover_record_and_the_op_outcome_unknown(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The child is stopped, so the op is handed over (recorded, sent) but never begins."""
    d = make(daemon_factory, tmp_path)
    pid = d.wait_state("p", "running")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        thread = in_background(d, "p", "mark", "window", tag="w")
        wait_for(lambda: records(tmp_path) == {"window": 0}, 10.0, "the handover record")
        d.kill()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    thread.join(10)
    d.start()
    assert_unknown(*keyed(d, "p", "mark", "window", tag="w"))
    assert effects(tmp_path) == []  # it never ran: "unknown" is the safe answer here
