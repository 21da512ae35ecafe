"""Deadlines, mailbox order and bounds, and asks queued across a restart (CONTRACT §2-§4).

Executions are counted in files (``Recorder(effects=..., starts=...)``), so "never
executed" is checked on the side effect, not on what the daemon says.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from e2e_helpers import lines, wait_for


def recorder(daemon_factory: Any, tmp_path: Path, extra: str = "", name: str = "rec") -> Any:
    effects, starts = tmp_path / "effects", tmp_path / "starts"
    return daemon_factory(
        f"""
        [actors.{name}]
        class = "e2e_actors:Recorder"
        args = {{ effects = "{effects}", starts = "{starts}" }}
        min_backoff = 0.05
        max_backoff = 0.05
        {extra}

        [actors.echo]
        class = "e2e_actors:Echo"
        """
    )


# ------------------------------------------------------------------ deadline while queued
def test_ask_expiring_in_mailbox_is_never_executed(daemon_factory: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    d = recorder(daemon_factory, tmp_path)
    with ThreadPoolExecutor(2) as pool:
        blocking = pool.submit(d.ask, "rec", "block", 5, seconds=2.5, tag="block")
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="block in flight")

        started = time.monotonic()
        late = d.cli("ask", "rec", "mark", "tag=late", "--timeout", "0.2", "--json")
        elapsed = time.monotonic() - started
        assert late.code == 124, (late.stdout, late.stderr)
        error = json.loads(late.stdout)["error"]
        assert error["category"] == "timeout"
        assert error["executed"] is False
        assert error["actor"] == "rec"
        # Answered at its deadline (0.2 s plus CLI start-up), not when the actor got free at 2.5 s;
        # the margin absorbs a CLI start-up slowed by a busy machine.
        assert elapsed < 2.0

        status, _, body = blocking.result(timeout=5)
        assert status == 200 and body == {"result": "block"}

    # Served strictly after anything still queued: if "late" ever ran, it ran before this.
    assert d.ask("rec", "mark", tag="after")[2] == {"result": "after"}
    assert lines(effects) == ["block", "after"]
    entry = d.actor("rec")
    assert entry["mailbox"] == 0
    assert entry["counts"]["timeout"] == 1


def test_async_op_past_deadline_is_cancelled(daemon_factory: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    d = recorder(daemon_factory, tmp_path)
    # control: the effect is written when the deadline allows it
    ok = d.ask("rec", "amark_after", 5, tag="quick", delay=0.01)
    assert ok[2] == {"result": "quick"} and lines(effects) == ["quick"]

    started = time.monotonic()
    result = d.cli(
        "ask", "rec", "amark_after", "tag=late", "delay=0.5", "--timeout", "0.15", "--json"
    )
    assert result.code == 124, (result.stdout, result.stderr)
    error = json.loads(result.stdout)["error"]
    assert error["category"] == "timeout"
    assert error.get("executed") is not False  # it did start

    # the actor is free again at once (the op was cancelled, not waited for)
    assert d.ask("rec", "mark", tag="next")[0] == 200
    remaining = started + 0.5 + 0.25 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)  # past the point where the op would have written "late"
    assert lines(effects) == ["quick", "next"]


def test_blocking_sync_op_does_not_stall_other_actors(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(
        """
        [actors.slow1]
        class = "e2e_actors:Recorder"

        [actors.slow2]
        class = "e2e_actors:Recorder"

        [actors.echo]
        class = "e2e_actors:Echo"
        """
    )
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        first = pool.submit(d.ask, "slow1", "block", 5, seconds=1.0)
        second = pool.submit(d.ask, "slow2", "block", 5, seconds=1.0)
        wait_for(
            lambda: d.actor("slow1")["in_flight"] == 1 and d.actor("slow2")["in_flight"] == 1,
            what="both blocks in flight",
        )
        t0 = time.monotonic()
        status, _, body = d.http(
            "POST", "/v1/actors/echo/ask", {"op": "aecho", "args": {"value": 7}}
        )
        assert (status, body) == (200, {"result": 7})
        t1 = time.monotonic()
        status, _, body = d.http("POST", "/v1/actors/echo/ask", {"op": "add", "args": [1, 2]})
        assert (status, body) == (200, {"result": 3})
        assert d.http("GET", "/v1/status")[0] == 200
        t2 = time.monotonic()
        assert t1 - t0 < 0.3, "an async op on another actor waited for a blocking one"
        assert t2 - t1 < 0.3, "a sync op on another actor waited for a blocking one"
        assert first.result(timeout=5)[0] == 200
        assert second.result(timeout=5)[0] == 200
        # two blocking actors ran side by side, not one after the other
        assert time.monotonic() - started < 1.8


# ------------------------------------------------------------------ queued across a restart
def test_queued_asks_are_served_by_the_restarted_instance(
    daemon_factory: Any, tmp_path: Path
) -> None:
    effects, starts = tmp_path / "effects", tmp_path / "starts"
    d = recorder(daemon_factory, tmp_path, "max_restarts = 3")
    assert len(lines(starts)) == 1

    crashing = d.cli_background("ask", "rec", "crash_after", "seconds=0.5", "--json")
    try:
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="crash_after in flight")
        with ThreadPoolExecutor(4) as pool:
            queued = [pool.submit(d.ask, "rec", "mark", 5, tag=f"q{i}") for i in range(3)]
            short = pool.submit(d.ask, "rec", "mark", 0.2, tag="short")
            wait_for(lambda: d.actor("rec")["mailbox"] >= 3, what="asks queued")

            out, err = crashing.communicate(timeout=10)
            assert "Traceback" not in out + err
            assert crashing.returncode == 4, (out, err)
            error = json.loads(out)["error"]
            assert error["category"] == "system"
            assert error["recoverable"] is True
            assert error["restarts"] == 1

            results = [future.result(timeout=10) for future in queued]
            _, _, short_body = short.result(timeout=10)
    finally:
        if crashing.poll() is None:
            crashing.kill()
            crashing.wait(5)

    assert [status for status, _, _ in results] == [200, 200, 200], results
    assert sorted(body["result"] for _, _, body in results) == ["q0", "q1", "q2"]
    # the short one was bound by its own deadline: timed out in the mailbox, never run
    assert short_body["error"]["category"] == "timeout", short_body
    assert short_body["error"]["executed"] is False
    assert sorted(lines(effects)) == ["q0", "q1", "q2"]
    assert len(lines(starts)) == 2  # served by the second instance
    entry = d.actor("rec")
    assert entry["restarts"] == 1
    assert entry["state"] == "running"


# ------------------------------------------------------------------ bounded mailbox
def test_full_mailbox_is_runtime_503_with_retry_after(daemon_factory: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    d = recorder(daemon_factory, tmp_path, "mailbox_size = 1")
    with ThreadPoolExecutor(2) as pool:
        blocking = pool.submit(d.ask, "rec", "block", 5, seconds=2.5, tag="block")
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="block in flight")
        queued = pool.submit(d.ask, "rec", "mark", 5, tag="queued")
        wait_for(lambda: d.actor("rec")["mailbox"] == 1, what="one ask queued")

        status, headers, body = d.ask("rec", "mark", tag="rejected")
        assert status == 503, (status, body)
        retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
        assert retry_after is not None and float(retry_after) > 0
        error = body["error"]
        assert error["category"] == "runtime"
        assert error["recoverable"] is True
        assert "full" in error["message"]
        assert error["actor"] == "rec"

        result = d.cli("ask", "rec", "mark", "tag=rejected-cli", "--json")
        assert result.code == 6, (result.stdout, result.stderr)
        assert json.loads(result.stdout)["error"]["category"] == "runtime"

        assert blocking.result(timeout=5)[0] == 200
        assert queued.result(timeout=5)[2] == {"result": "queued"}
    assert lines(effects) == ["block", "queued"]


# ------------------------------------------------------------------ asks arriving during a restart
def test_ask_during_backoff_waits_for_the_new_instance(daemon_factory: Any, tmp_path: Path) -> None:
    effects, starts = tmp_path / "effects", tmp_path / "starts"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"
        args = {{ effects = "{effects}", starts = "{starts}" }}
        min_backoff = 0.6
        max_backoff = 0.6
        """
    )
    crashed = d.ask("rec", "crash")
    assert crashed[2]["error"]["state"] == "backoff", crashed
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(d.ask, "rec", "mark", 5, tag="waited")
        short = pool.submit(d.ask, "rec", "mark", 0.15, tag="short")
        _, _, short_body = short.result(timeout=5)
        status, _, body = waiting.result(timeout=5)
    assert (status, body) == (200, {"result": "waited"})
    assert short_body["error"]["category"] == "timeout", short_body
    assert short_body["error"].get("executed") is False
    assert lines(effects) == ["waited"]
    assert len(lines(starts)) == 2


def test_during_restart_fail_fast(daemon_factory: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    d = daemon_factory(
        f"""
        [actors.ff]
        class = "e2e_actors:Recorder"
        args = {{ effects = "{effects}" }}
        during_restart = "fail_fast"
        min_backoff = 0.8
        max_backoff = 0.8
        """
    )
    assert d.ask("ff", "crash")[2]["error"]["state"] == "backoff"
    status, headers, body = d.ask("ff", "mark", tag="rejected")
    assert status == 503, (status, body)
    retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    assert retry_after is not None and float(retry_after) > 0
    error = body["error"]
    assert error["category"] == "system"
    assert error["recoverable"] is True
    assert error["state"] in ("backoff", "starting")
    assert 0 < error.get("retry_after", 0) <= 0.8

    result = d.cli("ask", "ff", "mark", "tag=rejected-cli", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["error"]["recoverable"] is True

    d.wait_state("ff", "running", timeout=5)
    assert d.ask("ff", "mark", tag="later")[2] == {"result": "later"}
    assert lines(effects) == ["later"]
