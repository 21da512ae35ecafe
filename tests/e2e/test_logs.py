"""Logs per actor (CONTRACT §9): output, logging and the daemon's events about each actor,
kept in state_dir across restarts, read with `pulsing logs` and GET /v1/actors/{name}/logs."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_for


def talker(name: str, tag: str, isolation: str = "inline", extra: str = "") -> str:
    return f"""
[actors.{name}]
class = "log_actors:Talker"
args = {{ tag = "{tag}", greet = true }}
isolation = "{isolation}"
min_backoff = 0.01
max_backoff = 0.02
{extra}
"""


def records(d: Any, actor: str, *args: str) -> list[dict[str, Any]]:
    result = d.cli("logs", actor, "--json", *args)
    assert result.code == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in result.stdout.splitlines()]


def texts(found: list[dict[str, Any]], stream: str) -> list[str]:
    return [r["text"] for r in found if r["stream"] == stream]


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_output_logging_and_events_reach_the_actors_log(
    daemon_factory: Any, isolation: str
) -> None:
    d = daemon_factory(talker("t", "T", isolation))
    assert d.cli("ask", "t", "say", "text=hi", "times=2").code == 0
    assert d.cli("ask", "t", "warn", "text=careful").code == 0

    def complete() -> list[dict[str, Any]] | None:
        found = records(d, "t")
        return found if len(texts(found, "log")) == 2 else None

    found = wait_for(complete, 10, "the log records")
    assert texts(found, "stdout") == ["T constructed", "T hi 0", "T hi 1"]
    assert texts(found, "stderr") == ["T careful"]
    assert texts(found, "log") == [
        "WARNING log_actors: T logged careful",
        "INFO log_actors: T info careful",
    ]
    assert any(t.startswith("state starting -> running") for t in texts(found, "event"))
    for record in found:
        assert set(record) == {"at", "actor", "instance", "stream", "text"}
        assert record["actor"] == "t" and record["instance"] == 1
    assert [r["at"] for r in found] == sorted(r["at"] for r in found)
    # The daemon's own log stays one line per event: the actor's output is not in it.
    assert "T hi 0" not in d.log()

    text = d.cli("logs", "t", "-n", "3")
    assert text.code == 0 and len(text.stdout.splitlines()) == 3, text.stdout
    assert text.stdout.splitlines()[-1].split()[1] == "t[1]"


def test_concurrent_actors_never_mix_lines(daemon_factory: Any) -> None:
    tags = {"s1": "S1", "s2": "S2", "a1": "A1", "a2": "A2"}
    d = daemon_factory("".join(talker(name, tag) for name, tag in tags.items()))
    calls = [("s1", "say", {}), ("s2", "say", {}), ("a1", "asay", {"pause": 0.001}),
             ("a2", "asay", {"pause": 0.001})] * 4  # fmt: skip
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda c: d.ask(c[0], c[1], text="line", times=50, **c[2]), calls))
    assert all(status == 200 for status, _, _ in answers), answers
    for name, tag in tags.items():
        out = wait_for(
            lambda name=name: (
                (o := texts(records(d, name, "-n", "1000"), "stdout")) and len(o) == 201 and o
            ),
            10,
            f"{name}'s lines",
        )
        assert out[0] == f"{tag} constructed"
        assert sorted(out[1:]) == sorted(f"{tag} line {i}" for i in range(50) for _ in range(4))


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_a_failure_shows_its_traceback_in_status_and_logs(
    daemon_factory: Any, isolation: str
) -> None:
    d = daemon_factory(talker("t", "T", isolation))
    crash = d.cli("ask", "t", "explode")
    assert crash.code == 4, (crash.stdout, crash.stderr)
    d.wait_state("t", "running")
    failure = d.cli("status", "t", "--json").json()["actors"][0]["last_failure"]
    assert failure["type"] == "KeyError"
    traceback = failure["traceback"]
    assert traceback.startswith("Traceback (most recent call last):"), traceback
    assert "in deeply_nested_failure" in traceback and "table[key]" in traceback
    assert traceback.rstrip().endswith("KeyError: 'missing'")

    shown = d.cli("status", "t")
    assert shown.code == 0 and "in deeply_nested_failure" in shown.stdout, shown.stdout
    events = texts(records(d, "t"), "event")
    logged = next(t for t in events if t.startswith("failure in op: KeyError"))
    assert "in deeply_nested_failure" in logged
    assert any(t.startswith("restart 1/5") for t in events)
    # The daemon's log keeps one line per event (no traceback without --debug).
    assert "deeply_nested_failure" not in d.log()


def test_logs_survive_a_daemon_restart(daemon_factory: Any) -> None:
    d = daemon_factory(talker("t", "T"))
    assert d.cli("ask", "t", "say", "text=before").code == 0
    wait_for(lambda: "T before 0" in texts(records(d, "t"), "stdout"), 5, "the first line")
    assert d.stop() == 0
    d.start()
    assert d.cli("ask", "t", "say", "text=after").code == 0
    found = wait_for(
        lambda: (f := records(d, "t")) and "T after 0" in texts(f, "stdout") and f, 5, "after"
    )
    lines = [(r["instance"], r["text"]) for r in found if r["stream"] == "stdout"]
    assert lines == [
        (1, "T constructed"),
        (1, "T before 0"),
        (2, "T constructed"),
        (2, "T after 0"),
    ]
    assert any("daemon shutting down" in t for t in texts(found, "event"))


def test_rotation_bounds_the_size(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(talker("t", "T", extra="log_max_bytes = 8192"))
    for _ in range(4):
        assert d.cli("ask", "t", "blob", "size=500", "times=20").code == 0
    assert d.cli("ask", "t", "say", "text=last").code == 0
    found = wait_for(
        lambda: (f := records(d, "t", "-n", "1000")) and f[-1]["text"] == "T last 0" and f,
        5,
        "the last line",
    )
    files = list((tmp_path / "state" / "logs").glob("t.log*"))
    assert sorted(f.name for f in files) == ["t.log", "t.log.1"]
    assert sum(f.stat().st_size for f in files) <= 8192 + 600
    assert 4 < len(found) < 20  # the oldest went; what is kept reads back whole


def test_follow_prints_new_lines_and_rides_through_a_daemon_restart(daemon_factory: Any) -> None:
    d = daemon_factory(talker("t", "T"))
    # -n 100, not -n 0: the follower may connect after the first ask on a busy machine.
    follower = d.cli_background("logs", "t", "-f", "-n", "100")
    seen: list[str] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: d.http("GET", "/v1/status")[0] == 200, 5, "the daemon")
        assert d.cli("ask", "t", "say", "text=first").code == 0
        wait_for(lambda: any("T first 0" in line for line in seen), 5, "the first line followed")
        assert d.stop() == 0
        d.start()
        assert d.cli("ask", "t", "say", "text=second").code == 0
        wait_for(lambda: any("T second 0" in line for line in seen), 10, "the line after restart")
    finally:
        follower.terminate()
        try:
            follower.wait(5)
        except subprocess.TimeoutExpired:
            follower.kill()
    assert sum("T first 0" in line for line in seen) == 1, seen
    assert sum("T second 0" in line for line in seen) == 1, seen
    assert len(seen) == len(set(seen)), seen  # nothing printed twice across the reconnect


def test_http_logs_route(daemon_factory: Any) -> None:
    d = daemon_factory(talker("t", "T"))
    assert d.cli("ask", "t", "say", "text=web", "times=3").code == 0
    body = wait_for(
        lambda: (
            (b := d.http("GET", "/v1/actors/t/logs?lines=2")[2])
            and b["lines"][-1]["text"] == "T web 2"
            and b
        ),
        5,
        "the web lines",
    )
    assert body["actor"] == "t" and [r["text"] for r in body["lines"]] == ["T web 1", "T web 2"]
    status, _, text = d.http(
        "GET", "/v1/actors/t/logs?since=1h", headers={"Accept": "application/x-ndjson"}
    )
    assert status == 200 and "T web 0" in text
    status, _, error = d.http("GET", "/v1/actors/nobody/logs")
    assert status == 404 and error["error"]["category"] == "runtime"
    status, _, error = d.http("GET", "/v1/actors/t/logs?since=yesterday")
    assert status == 400 and "since" in error["error"]["message"]
    missing = d.cli("logs", "nobody")
    assert missing.code == 6 and "unknown actor" in missing.stderr
