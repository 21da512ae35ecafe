"""isolation = "ray" end to end: a real Ray head, real daemons, the real CLI.

Every Ray process runs in the loopback-only namespace of ``raytest.ray_netns``; the
daemons join the session's one head by address (the local-instance tests are in
test_ray_local.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_for
from raytest import RayCluster, start_in_netns

from pulsing_daemon.hosts.ray import QUICK_STREAK

WORKER = "proc_actors:Worker"


@pytest.fixture
def ray_daemon(daemon_factory: Any, ray_cluster: RayCluster, tmp_path: Path) -> Any:
    """``make(actors_toml, daemon_toml="")``: a daemon in the namespace joining the head."""

    def make(actors: str, daemon: str = "", env: dict[str, str] | None = None) -> Any:
        d = daemon_factory(
            actors,
            daemon + f'\n[daemon.ray]\naddress = "{ray_cluster.address}"\n'
            f'namespace = "{tmp_path.name[-20:]}"\n',
            start=False,
            unix=True,
        )
        start_in_netns(d, {**ray_cluster.env, **(env or {})})
        d.wait_ready(timeout=60)
        return d

    return make


def ask(d: Any, *args: str, timeout: float = 30.0) -> tuple[int, Any]:
    result = d.cli("ask", *args, "--json", timeout=timeout)
    try:
        return result.code, json.loads(result.stdout)
    except ValueError:
        return result.code, result.stdout + result.stderr


def actor_toml(name: str, cls: str = WORKER, extra: str = "") -> str:
    return f'[actors.{name}]\nclass = "{cls}"\nisolation = "ray"\n{extra}\n'


def test_ops_categories_status_and_host(ray_daemon: Any, tmp_path: Path) -> None:
    effects, hooks = tmp_path / "effects", tmp_path / "hooks"
    d = ray_daemon(
        actor_toml(
            "w", extra=f'args = {{ effects = "{effects}", hooks = "{hooks}" }}\nmin_backoff = 0.05'
        )
    )
    d.wait_state("w", "running", timeout=60)
    assert ask(d, "w", "hello", "name=ray") == (0, {"result": {"hello": "ray", "calls": 1}})
    code, body = ask(d, "w", "business")
    assert code == 3 and body["error"]["code"] == "bad_input"
    assert body["error"]["details"] == {"field": "x"}
    code, body = ask(d, "w", "nope")
    assert code == 5 and body["error"]["category"] == "unsupported"
    code, body = ask(d, "w", "hello", "name=1", "extra=2")
    assert code == 3 and body["error"]["code"] == "bad_arguments"
    code, body = ask(d, "w", "nap", "seconds=0.01")
    assert code == 0 and body["result"] == 0.01
    status = d.cli("status", "w", "--json").json()["actors"][0]
    host = status["host"]
    assert host["kind"] == "ray" and len(host["node"]) == 56 and host["actor_id"]
    assert "on_start" in hooks.read_text()
    text = d.cli("status", "w").stdout
    assert host["actor_id"] in text


def test_crash_restart_policy_and_traceback(ray_daemon: Any) -> None:
    d = ray_daemon(
        actor_toml(
            "w",
            extra="max_restarts = 2\nrestart_window = 60.0\nmin_backoff = 0.05\nmax_backoff = 0.1",
        )
    )
    d.wait_state("w", "running", timeout=60)
    code, body = ask(d, "w", "crash", "message=kaboom")
    assert code == 4 and body["error"]["recoverable"] is True
    assert "kaboom" in body["error"]["message"]
    status = d.wait_state("w", "running", timeout=30)
    assert status["restarts"] == 1
    assert "proc_actors.py" in status["last_failure"]["traceback"]
    assert "RuntimeError: kaboom" in status["last_failure"]["traceback"]
    ask(d, "w", "crash")
    d.wait_state("w", "running", timeout=30)
    code, body = ask(d, "w", "crash")
    assert code == 4 and body["error"]["recoverable"] is False
    d.wait_state("w", "failed", timeout=10)


def test_os_exit_in_an_op_and_death_while_idle(ray_daemon: Any) -> None:
    d = ray_daemon(
        actor_toml("w", extra="min_backoff = 0.05")
        + actor_toml("x", cls="ray_actors:Extra", extra="min_backoff = 0.05")
    )
    d.wait_state("w", "running", timeout=60)
    d.wait_state("x", "running", timeout=60)
    old = d.actor("w")["host"]["actor_id"]
    started = time.monotonic()
    code, body = ask(d, "w", "exit")
    assert code == 4 and body["error"]["recoverable"] is True, body
    status = wait_for(lambda: (s := d.actor("w"))["state"] == "running" and s, 30)
    crash_to_running = time.monotonic() - started
    assert status["host"]["actor_id"] != old
    assert status["restarts"] == 1 and status["last_failure"]["where"] == "process"
    assert ask(d, "w", "hello")[0] == 0
    # Idle death: the op answers, then the process exits on its own.
    assert ask(d, "x", "exit_later", "seconds=0.2")[0] == 0
    status = wait_for(lambda: (s := d.actor("x"))["restarts"] == 1 and s, 30)
    assert status["last_failure"]["where"] == "process"
    d.wait_state("x", "running", timeout=30)
    events = d.cli("events", "--actor", "w", "--json").stdout.splitlines()
    restarts = [json.loads(e) for e in events if json.loads(e)["kind"] == "restart"]
    assert len(restarts) == 1 and restarts[0]["cause"] == "process"  # counted once
    print(f"crash -> running again: {crash_to_running:.2f}s")


def test_constructor_failing_is_a_start_failure(ray_daemon: Any) -> None:
    d = ray_daemon(
        actor_toml("b", cls="ray_actors:BadInit", extra="max_restarts = 1\nmin_backoff = 0.05")
    )
    status = d.wait_state("b", "failed", timeout=60)
    assert status["last_failure"]["where"] == "start"
    assert "constructor says no" in status["last_failure"]["message"]
    assert "ray_actors.py" in status["last_failure"]["traceback"]


def test_results_and_exceptions_that_cannot_cross(ray_daemon: Any) -> None:
    d = ray_daemon(actor_toml("w") + actor_toml("x", cls="ray_actors:Extra"))
    d.wait_state("w", "running", timeout=60)
    d.wait_state("x", "running", timeout=60)
    code, body = ask(d, "w", "unserializable")
    assert code == 4 and body["error"]["category"] == "system", body
    code, body = ask(d, "x", "boom_unsendable")
    assert code == 4 and "could not be sent back" in body["error"]["message"], body
    code, body = ask(d, "x", "odd")
    assert code == 4 and body["error"]["category"] == "system", body
    d.wait_state("x", "running", timeout=30)
    assert ask(d, "w", "hello")[0] == 0


def test_deadlines(ray_daemon: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    d = ray_daemon(
        actor_toml("w", extra=f'args = {{ effects = "{effects}" }}')
        + actor_toml("k", extra="kill_on_timeout = true\nmin_backoff = 0.05")
        + '[actors.stall]\nclass = "ray_actors:Stall"\n'
    )
    d.wait_state("w", "running", timeout=60)
    d.wait_state("k", "running", timeout=60)
    # An async op is cancelled at its deadline: its effect never happens.
    code, body = ask(d, "w", "nap", "seconds=2", "tag=late", "--timeout", "0.3")
    assert code == 124, body
    time.sleep(2.2)
    assert "late" not in (effects.read_text() if effects.exists() else "")
    # A sync op past its deadline answers timeout; the actor stays busy until it returns,
    # and an ask queued behind it that expires meanwhile never runs.
    slow = d.cli_background("ask", "w", "block", "seconds=1.5", "--timeout", "0.3")
    time.sleep(0.5)
    code, body = ask(d, "w", "mark", "tag=queued", "--timeout", "0.3")
    assert code == 124, body
    assert slow.wait(10) == 124
    time.sleep(1.3)
    assert "queued" not in (effects.read_text() if effects.exists() else "")
    assert ask(d, "w", "hello")[0] == 0
    # An ask sent ahead behind a long sync op, whose deadline passes before its turn:
    # answered at its deadline (not when the long op ends, seconds later), and never
    # run. Both wait in the mailbox while the first runs, so that the mark is sent
    # ahead behind the long one (its deadline outlives the first); the CLI gives up 2 s
    # after the deadline, the daemon answers at it.
    first = d.cli_background("ask", "w", "block", "seconds=3")
    wait_for(lambda: d.actor("w")["in_flight"] >= 1, 20, what="the first ask running")
    long = d.cli_background("ask", "w", "block", "seconds=8", "--timeout", "30")
    wait_for(lambda: d.actor("w")["mailbox"] >= 1, 20, what="the long ask queued")
    ahead = d.cli_background("ask", "w", "mark", "tag=ahead", "--timeout", "4", "--json")
    wait_for(lambda: d.actor("w")["mailbox"] >= 2, 20, what="the mark queued")
    assert ahead.wait(30) == 124
    assert "never executed" in ahead.communicate()[0]  # the daemon's answer, not the CLI's
    assert first.wait(10) == 0 and long.wait(30) == 0
    assert "ahead" not in (effects.read_text() if effects.exists() else "")
    # kill_on_timeout: the Ray actor is killed, a restart with cause timeout.
    old = d.actor("k")["host"]["actor_id"]
    code, body = ask(d, "k", "block", "seconds=30", "--timeout", "0.5")
    assert code == 124
    status = wait_for(lambda: (s := d.actor("k"))["state"] == "running" and s["restarts"] and s, 30)
    assert status["host"]["actor_id"] != old
    assert status["last_failure"]["where"] == "timeout"
    # The daemon's loop held up past both the deadline and the op's end: the answer and
    # the deadline come in one turn, and the worker's word that the op ended late
    # decides (a timeout, the op executed).
    late = d.cli_background("ask", "w", "block", "seconds=1", "--timeout", "0.8", "--json")
    time.sleep(0.2)
    assert ask(d, "stall", "hold", "seconds=2.5")[0] == 0
    assert late.wait(10) == 124
    assert json.loads(late.communicate()[0])["error"]["executed"] is True


def test_streams_batches_and_resume(ray_daemon: Any) -> None:
    d = ray_daemon(actor_toml("x", cls="ray_actors:Extra"))
    d.wait_state("x", "running", timeout=60)
    result = d.cli("stream", "x", "many", "n=3000", "--key", "s1", "--json", timeout=60)
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(3000))
    assert [line["data"] for line in lines[:3]] == [0, 1, 2]
    again = d.cli("stream", "x", "many", "n=3000", "--key", "s1", "--resume", "2990", "--json")
    assert [json.loads(line)["seq"] for line in again.stdout.splitlines()] == list(
        range(2990, 3000)
    )


def test_logs_reach_pulsing_logs(ray_daemon: Any) -> None:
    d = ray_daemon(actor_toml("x", cls="ray_actors:Extra"))
    d.wait_state("x", "running", timeout=60)
    assert ask(d, "x", "chatty", "text=marker42")[0] == 0

    def found() -> list[dict[str, Any]]:
        out = d.cli("logs", "x", "--json").stdout.splitlines()
        return [json.loads(line) for line in out if "marker42" in line]

    lines = wait_for(lambda: len(found()) >= 3 and found(), 10)
    assert {line["stream"] for line in lines} == {"stdout", "stderr", "log"}


def test_keyed_ask_outcome_unknown_after_the_instance_dies(ray_daemon: Any) -> None:
    d = ray_daemon(actor_toml("w", extra="min_backoff = 0.05"))
    d.wait_state("w", "running", timeout=60)
    code, body = ask(d, "w", "exit", "--idempotency-key", "k1")
    assert code == 4 and body["error"]["recoverable"] is False, body
    assert "unknown" in body["error"]["message"]
    d.wait_state("w", "running", timeout=30)
    code, again = ask(d, "w", "exit", "--idempotency-key", "k1")
    assert code == 4 and "unknown" in again["error"]["message"]
    assert d.actor("w")["restarts"] == 1  # never run a second time


def test_node_lost_mid_stream(ray_daemon: Any, ray_cluster: RayCluster) -> None:
    """A second raylet in the namespace, killed while its actor streams: a failure with
    cause node_lost, counted once; the stream keeps its committed chunks, then ends
    with a system error; the other actor is untouched."""
    node = ray_cluster.start_node("--num-cpus=2", '--resources={"spot": 4}')
    d = ray_daemon(
        actor_toml(
            "n",
            cls="ray_actors:Extra",
            extra="min_backoff = 0.05\nray = { resources = { spot = 1 } }",
        )
        + actor_toml("w", extra="min_backoff = 0.05")
    )
    d.wait_state("n", "running", timeout=60)
    d.wait_state("w", "running", timeout=60)
    assert d.actor("n")["host"]["node"] != d.actor("w")["host"]["node"]
    streaming = d.cli_background(
        "stream", "n", "slow_many", "n=100000", "pause=0.002", "--key", "lost", "--json"
    )

    def committed() -> int:
        rows = [r for r in d.http("GET", "/v1/streams")[2]["streams"] if r.get("key") == "lost"]
        return (rows[0].get("last_seq") or 0) if rows else 0

    wait_for(lambda: committed() >= 20, 30, "chunks committed")
    os.killpg(node.pid, 9)
    node.wait(10)
    assert streaming.wait(30) == 4
    status = wait_for(lambda: (s := d.actor("n"))["restarts"] >= 1 and s, 30, "node loss seen")
    assert status["last_failure"]["where"] == "node_lost", status["last_failure"]
    events = [json.loads(e) for e in d.cli("events", "--actor", "n", "--json").stdout.splitlines()]
    assert [e["cause"] for e in events if e["kind"] == "restart"] == ["node_lost"]
    stream_id = next(
        r["id"] for r in d.http("GET", "/v1/streams")[2]["streams"] if r.get("key") == "lost"
    )
    again = d.cli("stream", "--id", stream_id, "--resume", "0", "--json")
    assert again.code == 4, again.stdout[-500:]
    records = [json.loads(line) for line in again.stdout.splitlines()]
    seqs = [r["seq"] for r in records if "seq" in r]
    assert records[-1]["error"]["category"] == "system"  # the terminal error, after the chunks
    assert seqs == list(range(len(seqs))) and len(seqs) >= 20
    assert d.actor("w")["restarts"] == 0 and ask(d, "w", "hello")[0] == 0


def test_reload_of_the_ray_table_restarts_the_actor(ray_daemon: Any) -> None:
    d = ray_daemon(actor_toml("w"))
    d.wait_state("w", "running", timeout=60)
    old = d.actor("w")["host"]["actor_id"]
    d.config_path.write_text(
        d.config_path.read_text().replace(
            'isolation = "ray"', 'isolation = "ray"\nray.num_cpus = 0'
        )
    )
    result = d.cli("reload", "--json")
    assert result.code == 0 and result.json()["restarted"] == ["w"], result.stdout
    status = wait_for(lambda: (s := d.actor("w"))["host"]["actor_id"] != old and s, 30)
    assert status["state"] == "running" and status["operator_restarts"] == 1


@pytest.mark.parametrize(
    ("crash", "warm"), [("block_then_crash", False), ("block_then_crash", True),
                        ("block_then_exit", True)],
)  # fmt: skip
def test_asks_sent_ahead_behind_a_crash_are_served_once_by_the_next_instance(
    ray_daemon: Any, tmp_path: Path, crash: str, warm: bool
) -> None:
    """``warm``: ``mark`` has run quickly before, and an op holds the actor while the
    crash and the marks queue behind it: when it ends, the crash and the marks are sent
    ahead together, the crash alone and the marks as one batch (hosts/ray.py, BATCH)."""
    effects = tmp_path / "effects"
    d = ray_daemon(actor_toml("w", extra=f'args = {{ effects = "{effects}" }}\nmin_backoff = 0.05'))
    d.wait_state("w", "running", timeout=60)
    holding = None
    if warm:
        for i in range(QUICK_STREAK + 2):  # the first run of an op is the slowest
            assert ask(d, "w", "mark", f"tag=w{i}")[0] == 0
        holding = d.cli_background("ask", "w", "block", "seconds=1.2")
        time.sleep(0.3)
    crashing = d.cli_background("ask", "w", crash, "seconds=0.3" if warm else "seconds=0.6")
    time.sleep(0.3)
    queued = [d.cli_background("ask", "w", "mark", f"tag=q{i}") for i in range(6)]
    assert holding is None or holding.wait(30) == 0
    assert crashing.wait(30) == 4
    assert [p.wait(30) for p in queued] == [0] * 6
    marks = [m for m in effects.read_text().split() if m.startswith("q")]
    assert sorted(marks) == [f"q{i}" for i in range(6)], marks  # each ran exactly once
    assert d.actor("w")["restarts"] == 1
