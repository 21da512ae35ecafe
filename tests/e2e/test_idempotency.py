"""Idempotency keys end to end (CONTRACT §4): at most once per (actor, key), durable
across daemon restarts (SIGTERM and SIGKILL), which outcomes are stored, concurrent
repeats, conflicts, retries across an actor crash and a sync op past its deadline.

Every op appends a line to an effects file, so executions are counted from outside.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from e2e_helpers import wait_for

ACTORS = """
[actors.e]
class = "stream_actors:Effects"
args = {{ effects = "{effects}", marker = "{marker}" }}
min_backoff = 0.05
max_backoff = 0.1
max_restarts = 5

[actors.f]
class = "stream_actors:Effects"
args = {{ effects = "{effects}" }}
restart_policy = "never"
"""


def make(daemon_factory: Any, tmp_path: Path, grace: float = 3.0) -> Any:
    return daemon_factory(
        ACTORS.format(effects=tmp_path / "effects", marker=tmp_path / "marker"),
        f"grace_period = {grace}\n",
    )


def effects(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "effects").read_text().splitlines()
    except FileNotFoundError:
        return []


def keyed(
    d: Any, op: str, key: str, timeout: float | None = None, **args: Any
) -> tuple[int, dict[str, str], Any]:
    headers = {"Idempotency-Key": key}
    if timeout is not None:
        headers["Pulsing-Timeout"] = str(timeout)
    status, head, body = d.http("POST", "/v1/actors/e/ask", {"op": op, "args": args}, headers)
    return status, {k.lower(): v for k, v in head.items()}, body


# ---------------------------------------------------------------------- repeats
def test_sequential_repeats_run_once_and_are_marked_replayed(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    first = d.cli("ask", "e", "mark", "tag=a", "--idempotency-key", "k1", "--json")
    assert first.code == 0, first.stderr
    body = first.json()
    assert body["result"] == {"tag": "a", "n": 1}
    assert not body.get("replayed"), body
    again = d.cli("ask", "e", "mark", "tag=a", "--idempotency-key", "k1", "--json")
    assert again.code == 0, again.stderr
    assert again.json() == {"result": {"tag": "a", "n": 1}, "replayed": True}
    plain = d.cli("ask", "e", "mark", "tag=a", "--idempotency-key", "k1")
    assert plain.code == 0
    assert "replayed" in plain.stderr, plain.stderr

    status, head, body = keyed(d, "mark", "k1", tag="a")
    assert status == 200, body
    assert head.get("idempotency-replayed") == "true", head
    assert body == {"result": {"tag": "a", "n": 1}, "replayed": True}
    assert effects(tmp_path) == ["a"]

    # A different key runs again; a key is per actor, so unkeyed asks are unaffected.
    status, head, body = keyed(d, "mark", "k2", tag="a")
    assert status == 200 and body == {"result": {"tag": "a", "n": 2}}, body
    assert "idempotency-replayed" not in head
    assert effects(tmp_path) == ["a", "a"]
    # Keys are per actor: the same key on another actor is another ask.
    status, head, body = d.http(
        "POST", "/v1/actors/f/ask", {"op": "mark", "args": {"tag": "a"}}, {"Idempotency-Key": "k1"}
    )
    assert status == 200 and body["result"]["n"] == 3, body
    assert effects(tmp_path) == ["a", "a", "a"]

    # Same key, different args or op: a business error, nothing runs.
    assert d.cli("ask", "e", "mark", "tag=x", "--idempotency-key", "k").code == 0
    conflict = d.cli("ask", "e", "mark", "tag=y", "--idempotency-key", "k", "--json")
    assert conflict.code == 3, (conflict.stdout, conflict.stderr)
    error = conflict.json()["error"]
    assert error["category"] == "business" and error["recoverable"] is False, error
    other_op = d.cli("ask", "e", "ping", "--idempotency-key", "k")
    assert other_op.code == 3, (other_op.stdout, other_op.stderr)
    status, _, body = keyed(d, "mark", "k", tag="z")
    assert status == 422, body
    assert body["error"]["category"] == "business"
    assert effects(tmp_path) == ["a", "a", "a", "x"]


def test_success_is_durable_across_sigkill_right_after_the_answer(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    status, _, body = keyed(d, "mark", "kill-after", tag="d")
    assert status == 200, body
    d.kill()
    d.start()
    status, head, again = keyed(d, "mark", "kill-after", tag="d")
    assert status == 200, again
    assert again == {"result": body["result"], "replayed": True}
    assert head.get("idempotency-replayed") == "true"
    assert effects(tmp_path) == ["d"]


def test_ten_concurrent_repeats_run_once_and_share_the_result(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    results: list[Any] = []
    lock = threading.Lock()
    barrier = threading.Barrier(10)

    def one() -> None:
        barrier.wait(5)
        outcome = keyed(d, "amark", "same", tag="c", delay=0.5)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 10
    assert {status for status, _, _ in results} == {200}, results
    assert {json.dumps(body["result"]) for _, _, body in results} == {
        json.dumps({"tag": "c", "n": 1})
    }
    replayed = [head.get("idempotency-replayed") == "true" for _, head, _ in results]
    assert replayed.count(False) == 1, results
    assert effects(tmp_path) == ["c"]


def test_concurrent_repeats_of_a_finished_key_all_replay(daemon_factory, tmp_path) -> None:
    # Repeats arriving together for a key whose outcome is stored: one of them claims
    # the slot, finds the record and the others look it up again (no second run).
    d = make(daemon_factory, tmp_path)
    assert keyed(d, "mark", "done-key", tag="d")[0] == 200
    results: list[Any] = []
    lock = threading.Lock()
    barrier = threading.Barrier(10)

    def one() -> None:
        barrier.wait(5)
        outcome = keyed(d, "mark", "done-key", tag="d")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 10
    assert all(status == 200 and body.get("replayed") is True for status, _, body in results)
    assert effects(tmp_path) == ["d"]


def test_repeat_across_sigterm_restart_is_replayed(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    first = d.cli("ask", "e", "mark", "tag=r", "--idempotency-key", "durable", "--json")
    assert first.code == 0, first.stderr
    assert d.stop() == 0
    d.start()
    again = d.cli("ask", "e", "mark", "tag=r", "--idempotency-key", "durable", "--json")
    assert again.code == 0, again.stderr
    assert again.json() == {"result": {"tag": "r", "n": 1}, "replayed": True}
    assert effects(tmp_path) == ["r"]


# ---------------------------------------------------------------------- crashes / kills
def test_retries_across_an_actor_crash_run_the_op_once(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    result = d.cli("ask", "e", "crash_once", "tag=once", "--retries", "3", "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.json()["result"] == {"tag": "once"}
    assert "retry 1/3" in result.stderr, result.stderr
    assert (tmp_path / "marker").exists()  # it did crash first
    assert effects(tmp_path) == ["once"]
    assert d.actor("e")["restarts"] == 1


def test_sigkill_while_keyed_ask_runs_gives_outcome_unknown(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    answers: list[Any] = []

    def first() -> None:
        try:
            answers.append(keyed(d, "block", "killed", seconds=2.0, tag="k"))
        except Exception as exc:  # the daemon dies under it
            answers.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    wait_for(lambda: effects(tmp_path) == ["begin k"], 5.0, "the op to start")
    time.sleep(0.3)
    d.kill()
    thread.join(10)
    d.start()

    again = d.cli(
        "ask", "e", "block", "seconds=2.0", "tag=k", "--idempotency-key", "killed", "--json"
    )
    assert again.code == 4, (again.stdout, again.stderr)
    error = again.json()["error"]
    assert error["category"] == "system", error
    assert error["recoverable"] is False, error
    assert "outcome unknown" in error["message"], error
    plain = d.cli("ask", "e", "block", "seconds=2.0", "tag=k", "--idempotency-key", "killed")
    assert plain.code == 4
    assert "not recoverable" in plain.stderr and "outcome unknown" in plain.stderr
    status, _, body = keyed(d, "block", "killed", seconds=2.0, tag="k")
    assert status >= 500 and body["error"]["category"] == "system", (status, body)
    # With retries the CLI does not retry a non-recoverable error.
    retried = d.cli(
        "ask",
        "e",
        "block",
        "seconds=2.0",
        "tag=k",
        "--idempotency-key",
        "killed",
        "--retries",
        "2",
    )
    assert retried.code == 4
    assert "retry 1" not in retried.stderr
    assert effects(tmp_path) == ["begin k"]  # never ran a second time


def test_sigterm_past_grace_while_keyed_op_runs_never_reruns_it(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path, grace=0.2)
    first: list[Any] = []
    thread = threading.Thread(
        target=lambda: first.append(keyed(d, "block", "graceful", seconds=0.8, tag="g"))
    )
    thread.start()
    wait_for(lambda: effects(tmp_path) == ["begin g"], 5.0, "the op to start")
    assert d.stop() == 0
    thread.join(10)
    d.start()
    status, _, body = keyed(d, "block", "graceful", seconds=0.8, tag="g")
    # Either its real outcome (stored when it finished) or "outcome unknown" -- but the
    # op must not run again.
    assert effects(tmp_path).count("begin g") == 1, effects(tmp_path)
    if status == 200:
        assert body.get("replayed") is True, body
    else:
        error = body["error"]
        assert error["category"] == "system" and error["recoverable"] is False, body
        assert "outcome unknown" in error["message"], body


# ---------------------------------------------------------------------- stored outcomes
def test_which_error_outcomes_are_stored(daemon_factory, tmp_path) -> None:
    """Business and non-recoverable system errors are stored and replayed; a
    recoverable system error is not (a repeat runs the op again)."""
    d = make(daemon_factory, tmp_path)
    # business: stored
    first = d.cli("ask", "e", "business", "tag=b", "--idempotency-key", "bk", "--json")
    assert first.code == 3, (first.stdout, first.stderr)
    error = first.json()["error"]
    assert error["code"] == "rejected" and error["details"] == {"tag": "b"}, error
    again = d.cli("ask", "e", "business", "tag=b", "--idempotency-key", "bk", "--json")
    assert again.code == 3, (again.stdout, again.stderr)
    replay = again.json()["error"]
    assert replay["code"] == "rejected" and replay["message"] == error["message"], replay
    assert replay.get("replayed") is True, replay
    status, _, body = keyed(d, "business", "bk", tag="b")
    assert status == 422 and body["error"]["code"] == "rejected", body
    assert effects(tmp_path) == ["b"]
    (tmp_path / "effects").unlink()

    # recoverable system error: not stored
    first = d.cli("ask", "e", "recoverable", "tag=s", "--idempotency-key", "sk", "--json")
    assert first.code == 4, (first.stdout, first.stderr)
    assert first.json()["error"]["recoverable"] is True
    again = d.cli("ask", "e", "recoverable", "tag=s", "--idempotency-key", "sk", "--json")
    assert again.code == 4
    assert not again.json()["error"].get("replayed")
    assert effects(tmp_path) == ["s", "s"]
    # After a recoverable failure the key is free again: a successful op may use it.
    ok = d.cli("ask", "e", "mark", "tag=after", "--idempotency-key", "sk", "--json")
    assert ok.code == 0, (ok.stdout, ok.stderr)
    (tmp_path / "effects").unlink()

    # non-recoverable system error with no restart to follow (policy never): stored
    first = d.cli("ask", "f", "fatal", "tag=f", "--idempotency-key", "fk", "--json")
    assert first.code == 4, (first.stdout, first.stderr)
    error = first.json()["error"]
    assert error["recoverable"] is False and error["state"] == "failed", error
    again = d.cli("ask", "f", "fatal", "tag=f", "--idempotency-key", "fk", "--json")
    assert again.code == 4, (again.stdout, again.stderr)
    replay = again.json()["error"]
    assert replay["category"] == "system" and replay["message"] == error["message"], replay
    assert replay.get("replayed") is True, replay
    assert effects(tmp_path) == ["f"]


def test_timeout_while_queued_is_not_stored(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    busy = threading.Thread(target=lambda: keyed(d, "block", "busy", seconds=1.0, tag="busy"))
    busy.start()
    wait_for(lambda: effects(tmp_path) == ["begin busy"], 5.0, "the blocker to start")
    status, _, body = keyed(d, "mark", "qk", timeout=0.2, tag="q")
    assert status == 504, body
    assert body["error"]["category"] == "timeout" and body["error"].get("executed") is False
    busy.join(10)
    again = d.cli("ask", "e", "mark", "tag=q", "--idempotency-key", "qk", "--json")
    assert again.code == 0, (again.stdout, again.stderr)
    assert not again.json().get("replayed"), again.stdout
    assert effects(tmp_path) == ["begin busy", "busy", "q"]


def test_sync_op_past_deadline_stores_its_real_outcome(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    first = d.cli(
        "ask",
        "e",
        "block",
        "seconds=0.6",
        "tag=late",
        "--idempotency-key",
        "late",
        "--timeout",
        "0.3",
        "--json",
    )
    assert first.code == 124, (first.stdout, first.stderr)
    assert first.json()["error"]["category"] == "timeout"
    wait_for(lambda: "late" in effects(tmp_path), 5.0, "the blocking op to finish")
    again = d.cli(
        "ask",
        "e",
        "block",
        "seconds=0.6",
        "tag=late",
        "--idempotency-key",
        "late",
        "--timeout",
        "5",
        "--json",
    )
    assert again.code == 0, (again.stdout, again.stderr)
    assert again.json() == {"result": {"tag": "late", "slept": 0.6}, "replayed": True}
    assert effects(tmp_path) == ["begin late", "late"]


def test_repeat_while_sync_op_still_runs_waits_for_it(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    status, _, body = keyed(d, "block", "w", timeout=0.2, seconds=1.0, tag="w")
    assert status == 504 and body["error"]["category"] == "timeout", body
    assert "w" not in effects(tmp_path)  # still running
    again = d.cli("ask", "e", "block", "seconds=1.0", "tag=w", "--idempotency-key", "w", "--json")
    assert again.code == 0, (again.stdout, again.stderr)
    assert again.json()["result"] == {"tag": "w", "slept": 1.0}
    assert effects(tmp_path) == ["begin w", "w"]
