"""Daemon lifecycle (CONTRACT §6): SIGTERM/SIGINT finish in-flight asks and exit 0;
the log is one logfmt line per event naming the actor and the event."""

from __future__ import annotations

import json
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_for

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z? level=\w+ .*\bevent=\S+")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_ask_in_flight_finishes_it_and_exits_0(
    daemon_factory: Any, tmp_path: Path, sig: signal.Signals
) -> None:
    hooks = tmp_path / "hooks"
    d = daemon_factory(
        f"""
        [actors.rec]
        class = "e2e_actors:Recorder"

        [actors.hooks]
        class = "e2e_actors:Hooks"
        args = {{ log = "{hooks}" }}
        """,
        "grace_period = 5.0\n",
    )
    # /v1/health answers once the daemon listens; the instances start alongside.
    d.wait_state("hooks", "running")
    assert hooks.read_text().splitlines() == ["on_start"]
    asking = d.cli_background("ask", "rec", "sleep", "seconds=1.0", "--json")
    pool = ThreadPoolExecutor(1)
    try:
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="sleep in flight")
        queued = pool.submit(d.ask, "rec", "mark", 10, tag="queued")  # accepted before SIGTERM
        wait_for(lambda: d.actor("rec")["mailbox"] == 1, what="one ask queued")
        time.sleep(0.2)
        assert d.proc is not None
        started = time.monotonic()
        d.proc.send_signal(sig)

        # while draining, new work is refused with a clear runtime error (or the
        # listener is already closed); either way the CLI says "runtime", exit 6
        late = d.cli("ask", "rec", "mark", "--json", timeout=10)
        assert late.code == 6, (late.stdout, late.stderr)
        assert json.loads(late.stdout)["error"]["category"] == "runtime"

        out, err = asking.communicate(timeout=10)
        queued_answer = queued.result(timeout=10)
    finally:
        pool.shutdown(wait=False)
        if asking.poll() is None:
            asking.kill()
            asking.wait(5)
    assert asking.returncode == 0, (out, err)
    assert json.loads(out) == {"result": 1.0}
    assert queued_answer[:1] == (200,) and queued_answer[2] == {"result": "queued"}
    assert "Traceback" not in out + err

    code = d.proc.wait(timeout=10)
    assert code == 0, d.log()
    assert time.monotonic() - started < 4.0  # did not wait out the grace period
    assert hooks.read_text().splitlines() == ["on_start", "on_stop"]
    assert "Traceback" not in d.log()


def test_ask_outliving_grace_period_is_answered_and_daemon_exits_0(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        """,
        "grace_period = 0.3\n",
    )
    asking = d.cli_background("ask", "rec", "sleep", "seconds=30", "--json")
    try:
        wait_for(lambda: d.actor("rec")["in_flight"] == 1, what="sleep in flight")
        started = time.monotonic()
        assert d.stop() == 0, d.log()
        assert time.monotonic() - started < 5.0
        out, err = asking.communicate(timeout=10)
    finally:
        if asking.poll() is None:
            asking.kill()
            asking.wait(5)
    # the caller is told, not left hanging: an error envelope, no traceback
    assert asking.returncode in (4, 6, 124), (asking.returncode, out, err)
    assert "error" in json.loads(out)
    assert "Traceback" not in out + err


def test_log_is_one_line_per_event_with_actor_and_event(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors:Recorder"
        min_backoff = 0.05
        max_backoff = 0.05

        [actors.broken]
        class = "e2e_actors:BadInit"
        restart_policy = "never"
        """
    )
    multi = "line one\nline two\nTraceback (most recent call last):"
    assert d.ask("rec", "crash", message=multi)[0] >= 500
    d.wait_state("rec", "running", timeout=5)
    d.ask("rec", "business")
    d.wait_state("broken", "failed", timeout=5)
    assert d.stop() == 0

    lines = [line for line in d.log().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    for line in lines:
        assert LOG_LINE.match(line), f"not one logfmt event per line: {line!r}"
        assert not line.startswith("Traceback")
    actor_lines = [line for line in lines if "actor=rec" in line]
    assert actor_lines, lines
    events = {re.search(r"\bevent=(\S+)", line).group(1) for line in actor_lines}  # type: ignore[union-attr]
    assert len(events) >= 2, events  # e.g. a state change and the failure
    # the crash of rec and the failure of broken are logged against their actor
    assert any("actor=rec" in line and "RuntimeError" in line for line in lines), lines
    assert any("actor=broken" in line and "ValueError" in line for line in lines), lines
    # every state change names its actor
    for line in lines:
        if "event=state" in line or "event=failure" in line:
            assert "actor=" in line, line
    # the multi-line message stayed on one line
    assert not any(line.startswith("line two") for line in lines)
