"""Supervision end to end: the actor state machine, restart policies, operator control
(`pulsing restart|stop|start`), failures of __init__/on_start/run(), and what
`pulsing status --json` reports about all of it (CONTRACT §3 and §6)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ACTOR_FIELDS, COUNT_KEYS, lines, wait_for


def cli_status(d: Any, actor: str) -> dict[str, Any]:
    """`pulsing status ACTOR --json`, checked against the stable shape of §6."""
    result = d.cli("status", actor, "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    payload = result.json()
    assert payload["schema"] == 1
    assert {"version", "pid", "uptime", "config"} <= set(payload["daemon"])
    assert len(payload["actors"]) == 1
    entry = payload["actors"][0]
    assert set(entry) >= ACTOR_FIELDS, set(entry) ^ ACTOR_FIELDS
    assert set(entry["counts"]) >= COUNT_KEYS
    assert entry["name"] == actor
    return entry


# ------------------------------------------------------------------ crash -> backoff -> running
def test_crash_backoff_running_and_last_failure_stays(daemon_factory: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"
        args = {{ starts = "{starts}" }}
        max_restarts = 3
        min_backoff = 0.3
        max_backoff = 0.3
        """
    )
    before = d.actor("rec")
    assert before["state"] == "running"
    assert before["restarts"] == 0 and before["max_restarts"] == 3
    assert before["last_error"] is None
    assert before["policy"] == "on_failure"

    crashed = d.cli("ask", "rec", "crash", "message=first crash", "--json")
    assert crashed.code == 4
    error = crashed.json()["error"]
    assert error["state"] == "backoff"
    assert error["restarts"] == 1

    during = d.actor("rec")
    assert during["state"] in ("backoff", "starting", "running")
    if during["state"] == "backoff":
        assert during["backoff_remaining"] is not None
        assert 0 <= during["backoff_remaining"] <= 0.3

    after = d.wait_state("rec", "running", timeout=5)
    assert after["backoff_remaining"] is None
    entry = cli_status(d, "rec")
    assert entry["state"] == "running"
    assert entry["restarts"] == 1
    assert entry["operator_restarts"] == 0
    assert len(lines(starts)) == 2

    # the last failure stays visible after recovery
    assert entry["last_error"]["category"] == "system"
    assert entry["last_error"]["type"] == "RuntimeError"
    assert "first crash" in entry["last_error"]["message"]
    assert entry["last_error"]["at"]
    failure = entry.get("last_failure")
    assert failure is not None and failure["type"] == "RuntimeError"
    assert entry["counts"]["system"] == 1

    text = d.cli("status", "rec")
    assert text.code == 0
    assert "1/3" in text.stdout
    assert "running" in text.stdout
    assert "first crash" in text.stdout


def test_counts_by_outcome(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    for op in ("mark", "mark", "business", "recoverable", "nope"):
        status = d.ask("rec", op)[0]
        assert (status == 200) == (op == "mark"), (op, status)
    assert d.ask("rec", "sleep", timeout=0.1, seconds=2)[2]["error"]["category"] == "timeout"
    d.ask("rec", "crash")
    d.wait_state("rec", "running", timeout=5)
    counts = cli_status(d, "rec")["counts"]
    assert counts["ok"] == 2
    assert counts["business"] == 1
    assert counts["system"] == 2  # recoverable + crash
    assert counts["timeout"] == 1
    assert counts["unsupported"] == 1


# ---------------------------------------------------- max_restarts, restart, stop, start
def test_max_restarts_then_failed_then_operator_restart(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        max_restarts = 2
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    for expected in (1, 2):
        error = d.ask("rec", "crash")[2]["error"]
        assert error["category"] == "system" and error["recoverable"] is True
        assert d.wait_state("rec", "running", timeout=5)["restarts"] == expected

    error = d.ask("rec", "crash")[2]["error"]
    assert error["category"] == "system" and error["recoverable"] is False
    failed = d.wait_state("rec", "failed", timeout=5)
    assert failed["restarts"] == 2
    time.sleep(0.15)  # longer than the backoff: it must stay failed
    assert d.actor("rec")["state"] == "failed"
    refused = d.ask("rec", "mark")[2]["error"]
    assert (refused["category"], refused["state"]) == ("runtime", "failed")

    restarted = d.cli("restart", "rec")
    assert restarted.code == 0, (restarted.stdout, restarted.stderr)
    entry = cli_status(d, "rec")
    assert entry["state"] == "running"
    assert entry["restarts"] == 0
    assert entry["operator_restarts"] == 1
    assert entry["last_error"] is not None  # history survives the operator restart
    assert d.ask("rec", "mark", tag="alive")[2] == {"result": "alive"}

    # a second operator restart of a healthy actor counts too
    again = d.cli("restart", "rec", "--json")
    assert again.code == 0
    payload = again.json()
    assert payload["actors"][0]["operator_restarts"] == 2
    assert payload["actors"][0]["state"] == "running"


def test_stop_never_restarts_and_start_revives(daemon_factory: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"
        args = {{ starts = "{starts}" }}
        restart_policy = "always"
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    stopped = d.cli("stop", "rec")
    assert stopped.code == 0, (stopped.stdout, stopped.stderr)
    assert d.actor("rec")["state"] == "stopped"
    time.sleep(0.2)  # four backoffs: a stopped actor is never restarted
    entry = d.actor("rec")
    assert entry["state"] == "stopped"
    assert entry["restarts"] == 0
    assert len(lines(starts)) == 1

    refused = d.ask("rec", "mark")[2]["error"]
    assert (refused["category"], refused["state"]) == ("runtime", "stopped")

    started = d.cli("start", "rec")
    assert started.code == 0, (started.stdout, started.stderr)
    assert d.wait_state("rec", "running", timeout=5)["state"] == "running"
    assert len(lines(starts)) == 2
    assert d.ask("rec", "mark", tag="back")[2] == {"result": "back"}

    for verb in ("restart", "stop", "start", "status"):
        result = d.cli(verb, "ghost")
        assert result.code == 6, (verb, result.stdout, result.stderr)


# ------------------------------------------------------------------ __init__ / on_start / run()
def test_crash_in_init_and_on_start(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.badinit]
        class = "e2e_actors:BadInit"
        max_restarts = 2
        min_backoff = 0.05
        max_backoff = 0.05

        [actors.badstart]
        class = "e2e_actors:BadStart"
        restart_policy = "never"
        """
    )
    init = d.wait_state("badinit", "failed", timeout=5)
    assert init["restarts"] == 2
    entry = cli_status(d, "badinit")
    failure = entry["last_failure"]
    assert failure["type"] == "ValueError"
    assert "cannot initialise" in failure["message"]
    assert failure.get("where") == "start"
    assert entry["last_error"]["type"] == "ValueError"

    start = d.wait_state("badstart", "failed", timeout=5)
    assert start["restarts"] == 0
    entry = d.actor("badstart")
    assert entry["last_failure"]["type"] == "RuntimeError"
    assert "on_start failed" in entry["last_failure"]["message"]
    assert entry["last_error"]["category"] == "system"

    text = d.cli("status", "badinit")
    assert "cannot initialise" in text.stdout


def test_run_crash_is_failure(daemon_factory: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.loop]
        class = "e2e_actors:Looper"
        args = {{ run_for = 0.05, crash = true, starts = "{starts}" }}
        max_restarts = 1
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    wait_for(lambda: d.actor("loop")["state"] == "failed", what="loop failed")
    entry = cli_status(d, "loop")
    assert entry["restarts"] == 1
    assert len(lines(starts)) == 2
    assert entry["last_failure"]["type"] == "RuntimeError"
    assert "run() crashed" in entry["last_failure"]["message"]
    assert entry["last_failure"].get("where") == "run"


def test_run_normal_exit_restarts_under_always(daemon_factory: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.loop]
        class = "e2e_actors:Looper"
        args = {{ run_for = 0.05, starts = "{starts}" }}
        restart_policy = "always"
        max_restarts = 50
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    wait_for(lambda: len(lines(starts)) >= 3, what="two restarts after normal exits")
    entry = cli_status(d, "loop")
    assert entry["policy"] == "always"
    assert entry["restarts"] >= 2
    assert entry["last_failure"] is None  # a normal exit is no failure
    assert entry["counts"]["system"] == 0


def test_run_normal_exit_stops_under_on_failure(daemon_factory: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.loop]
        class = "e2e_actors:Looper"
        args = {{ run_for = 0.05, starts = "{starts}" }}
        restart_policy = "on-failure"
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    d.wait_state("loop", "stopped", timeout=5)
    time.sleep(0.15)
    entry = cli_status(d, "loop")
    assert entry["state"] == "stopped"
    assert entry["restarts"] == 0
    assert entry["last_failure"] is None
    assert len(lines(starts)) == 1


# ------------------------------------------------------------------ @remote vs TOML
def test_remote_decorator_policy_and_toml_override(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.decorated]
        class = "e2e_actors:NeverRestart"
        min_backoff = 0.05

        [actors.overridden]
        class = "e2e_actors:NeverRestart"
        restart_policy = "on_failure"
        max_restarts = 3
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    assert d.actor("decorated")["policy"] == "never"
    over = d.actor("overridden")
    assert over["policy"] == "on_failure"
    assert over["max_restarts"] == 3

    assert d.ask("decorated", "crash")[2]["error"]["recoverable"] is False
    d.wait_state("decorated", "failed", timeout=5)

    assert d.ask("overridden", "crash")[2]["error"]["recoverable"] is True
    assert d.wait_state("overridden", "running", timeout=5)["restarts"] == 1
    assert d.ask("overridden", "ping")[2] == {"result": "pong"}

    # `pulsing status --json` without an actor lists them all, same shape
    result = d.cli("status", "--json")
    assert result.code == 0
    payload = json.loads(result.stdout)
    assert payload["schema"] == 1
    by_name = {actor["name"]: actor for actor in payload["actors"]}
    assert set(by_name) == {"decorated", "overridden"}
    for actor in by_name.values():
        assert set(actor) >= ACTOR_FIELDS
    assert by_name["decorated"]["state"] == "failed"
    assert by_name["overridden"]["state"] == "running"
    plain = d.cli("status")
    assert plain.code == 0
    assert "\x1b[" not in plain.stdout  # no colour when not a TTY
    assert "decorated" in plain.stdout and "failed" in plain.stdout


def test_defaults_table_precedence(daemon_factory: Any) -> None:
    """[actors.X] > @remote(...) > [defaults] > built-in."""
    d = daemon_factory(
        """
        [defaults]
        restart_policy = "always"
        max_restarts = 7
        min_backoff = 0.05
        max_backoff = 0.05

        [actors.plain]
        class = "e2e_actors:Recorder"

        [actors.decorated]
        class = "e2e_actors:NeverRestart"

        [actors.own]
        class = "e2e_actors:NeverRestart"
        max_restarts = 2
        """
    )
    plain, decorated, own = d.actor("plain"), d.actor("decorated"), d.actor("own")
    assert (plain["policy"], plain["max_restarts"]) == ("always", 7)
    assert (decorated["policy"], decorated["max_restarts"]) == ("never", 0)
    assert (own["policy"], own["max_restarts"]) == ("never", 2)


def test_reset_after_healthy_running_starts_count_over(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        max_restarts = 1
        reset_after = 0.3
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    assert d.ask("rec", "crash")[2]["error"]["recoverable"] is True
    d.wait_state("rec", "running", timeout=5)
    time.sleep(0.4)  # healthy for longer than reset_after
    error = d.ask("rec", "crash")[2]["error"]
    assert error["recoverable"] is True, error
    entry = d.wait_state("rec", "running", "failed", timeout=5)
    assert entry["state"] == "running", entry


def test_restart_window_forgets_old_restarts(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        max_restarts = 1
        restart_window = 0.3
        reset_after = 3600.0
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    assert d.ask("rec", "crash")[2]["error"]["recoverable"] is True
    d.wait_state("rec", "running", timeout=5)
    time.sleep(0.4)  # the first restart left the window
    assert d.actor("rec")["restarts"] == 0
    error = d.ask("rec", "crash")[2]["error"]
    assert error["recoverable"] is True, error
    assert d.wait_state("rec", "running", "failed", timeout=5)["state"] == "running"
    # two quick crashes inside the window: the second one is past max_restarts
    error = d.ask("rec", "crash")[2]["error"]
    assert error["recoverable"] is False, error
    assert d.wait_state("rec", "failed", timeout=5)["restarts"] == 1


def test_start_of_failed_actor_and_restart_of_stopped_actor(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        restart_policy = "never"
        """
    )
    d.ask("rec", "crash")
    d.wait_state("rec", "failed", timeout=5)
    started = d.cli("start", "rec", "--json")
    assert started.code == 0, (started.stdout, started.stderr)
    assert started.json()["actors"][0]["state"] == "running"
    assert d.ask("rec", "mark", tag="a")[2] == {"result": "a"}

    assert d.cli("stop", "rec").code == 0
    restarted = d.cli("restart", "rec")
    assert restarted.code == 0, (restarted.stdout, restarted.stderr)
    entry = d.actor("rec")
    assert entry["state"] == "running"
    assert entry["operator_restarts"] == 1
    assert entry["last_failure"]["type"] == "RuntimeError"


def test_stop_finishes_current_ask_and_rejects_queued(daemon_factory: Any, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    effects = tmp_path / "effects"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"
        args = {{ effects = "{effects}" }}
        """
    )
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(d.ask, "rec", "block", 5, seconds=0.5, tag="running")
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="block in flight")
        queued = pool.submit(d.ask, "rec", "mark", 5, tag="queued")
        wait_for(lambda: d.actor("rec")["mailbox"] == 1, what="one queued")
        stopped = d.cli("stop", "rec")
        assert stopped.code == 0, (stopped.stdout, stopped.stderr)
        assert running.result(timeout=5)[2] == {"result": "running"}
        status, _, body = queued.result(timeout=5)
    assert status >= 400, body
    assert body["error"]["category"] == "runtime", body
    assert "not executed" in body["error"]["message"]
    assert lines(effects) == ["running"]
    assert d.actor("rec")["state"] == "stopped"


def test_operator_restart_keeps_queued_asks(daemon_factory: Any, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    effects, starts = tmp_path / "effects", tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"
        args = {{ effects = "{effects}", starts = "{starts}" }}
        """
    )
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(d.ask, "rec", "block", 5, seconds=0.5, tag="running")
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="block in flight")
        queued = pool.submit(d.ask, "rec", "mark", 5, tag="queued")
        wait_for(lambda: d.actor("rec")["mailbox"] == 1, what="one queued")
        restarted = d.cli("restart", "rec")
        assert restarted.code == 0, (restarted.stdout, restarted.stderr)
        assert running.result(timeout=5)[2] == {"result": "running"}
        assert queued.result(timeout=5)[2] == {"result": "queued"}
    assert lines(effects) == ["running", "queued"]
    assert len(lines(starts)) == 2
    entry = d.actor("rec")
    assert entry["operator_restarts"] == 1 and entry["restarts"] == 0


# ------------------------------------------------------------------ BaseException from user code
@pytest.mark.parametrize(
    "op",
    [
        "sys_exit",
        "async_sys_exit",
        "async_keyboard_interrupt",
    ],
)
def test_base_exception_in_op_is_an_instance_failure(daemon_factory: Any, op: str) -> None:
    d = daemon_factory(
        """
        [actors.r]
        class = "e2e_actors:Raiser"
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    result = d.cli("ask", "r", op, "--json", "--timeout", "5")
    alive = d.proc is not None and d.proc.poll() is None
    assert alive, f"the daemon died (exit {d.proc.returncode if d.proc else '?'})"
    assert result.code == 4, (result.stdout, result.stderr)
    error = result.json()["error"]
    assert error["category"] == "system" and error["recoverable"] is True
    assert d.wait_state("r", "running", timeout=5)["restarts"] == 1
    assert d.ask("r", "ping")[2] == {"result": "pong"}


def test_run_raising_system_exit_is_a_failure(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.e]
        class = "e2e_actors:ExitInRun"
        max_restarts = 1
        min_backoff = 0.05
        max_backoff = 0.05
        """
    )
    entry = d.wait_state("e", "failed", timeout=5)
    assert entry["restarts"] == 1
    assert entry["last_failure"]["type"] == "SystemExit"
    assert d.proc is not None and d.proc.poll() is None
