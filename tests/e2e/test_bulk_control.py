"""Bulk control and checks (CONTRACT §9): several names, shell patterns and --all for
restart/stop/start/status with a result per actor and the worst exit code;
`status --check` and /v1/health degraded; `status --watch` across a daemon restart."""

from __future__ import annotations

import time
from typing import Any

from e2e_helpers import wait_for

ACTORS = """
[actors.worker-1]
class = "e2e_actors:Recorder"

[actors.worker-2]
class = "e2e_actors:Recorder"

[actors.cache]
class = "e2e_actors:Recorder"

[actors.fragile]
class = "e2e_actors:Recorder"
restart_policy = "never"
"""


def states(d: Any) -> dict[str, str]:
    return {a["name"]: a["state"] for a in d.status()["actors"]}


def test_status_check_and_health_degraded(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    assert d.cli("status", "--check").code == 0
    assert d.http("GET", "/v1/health")[2]["status"] == "ok"

    d.ask("fragile", "crash")
    d.wait_state("fragile", "failed")
    checked = d.cli("status", "--check")
    assert checked.code == 4, checked
    assert "fragile" in checked.stdout and "failed: fragile" in checked.stderr
    assert d.cli("status", "--check", "--json").code == 4
    assert d.cli("status", "--check", "worker-*").code == 0  # only the actors shown count
    assert d.cli("status", "fragile").code == 0  # without --check status is just a report
    health = d.http("GET", "/v1/health")
    assert health[0] == 200 and health[2]["status"] == "degraded"
    assert health[2]["failed"] == ["fragile"]

    assert d.cli("restart", "fragile").code == 0
    assert d.cli("status", "--check").code == 0
    assert d.http("GET", "/v1/health")[2]["status"] == "ok"


def test_bulk_patterns_report_each_actor_and_the_worst_exit(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    stopped = d.cli("stop", "worker-*")
    assert stopped.code == 0, stopped
    assert stopped.stdout.splitlines() == [
        "worker-1: running -> stopped",
        "worker-2: running -> stopped",
    ]
    assert states(d) == {
        "worker-1": "stopped",
        "worker-2": "stopped",
        "cache": "running",
        "fragile": "running",
    }

    started = d.cli("start", "worker-?", "nobody", "ghost-*", "--json")
    assert started.code == 6, started
    results = {r["actor"]: r for r in started.json()["results"]}
    assert results["worker-1"]["ok"] and results["worker-1"]["action"]["after"] == "running"
    assert results["worker-2"]["ok"]
    assert results["nobody"]["ok"] is False and results["nobody"]["error"]["category"] == "runtime"
    assert "matches no actor" in results["ghost-*"]["error"]["message"]
    assert list(results) == ["worker-1", "worker-2", "nobody", "ghost-*"]

    restarted = d.cli("restart", "--all")
    assert restarted.code == 0, restarted
    assert len(restarted.stdout.splitlines()) == 4
    assert all(r["operator_restarts"] == 1 for r in d.status()["actors"])

    text = d.cli("stop", "cache", "nobody")
    assert text.code == 6
    assert text.stdout.strip() == "cache: running -> stopped"
    assert "nobody: runtime error" in text.stderr and "unknown actor" in text.stderr

    shown = d.cli("status", "worker-*", "cache", "--json")
    assert shown.code == 0 and [a["name"] for a in shown.json()["actors"]] == [
        "worker-1",
        "worker-2",
        "cache",
    ]
    assert d.cli("status", "nobody", "cache").code == 6
    assert d.cli("stop").code == 2 and d.cli("stop", "cache", "--all").code == 2
    one = d.cli("start", "cache", "--json").json()  # one plain name: the daemon's own shape
    assert one["action"]["after"] == "running" and "results" not in one


def test_status_watch_rides_through_a_daemon_restart(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    watcher = d.cli_background("status", "--watch", "--interval", "0.2")
    try:
        assert watcher.stdout is not None
        wait_for(lambda: "worker-1" in watcher.stdout.readline(), what="first table")
        d.stop()
        time.sleep(0.5)
        d.start()
        wait_for(lambda: states(d).get("cache") == "running", what="daemon back")
        time.sleep(0.5)
        assert watcher.poll() is None, "status --watch exited while the daemon was away"
    finally:
        watcher.terminate()
        _, err = watcher.communicate(timeout=10)
    assert "daemon unreachable" in err and "daemon is back" in err
    assert err.split()[0].count(":") == 2  # it starts with the time, HH:MM:SS
