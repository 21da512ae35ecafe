"""Streams are findable (CONTRACT §9): `pulsing streams` and GET /v1/streams list the
journal's streams with their state and last seq, and resuming a finished stream past
its end is a usage error naming the last seq."""

from __future__ import annotations

from typing import Any

from e2e_helpers import wait_for

ACTORS = """
[actors.p]
class = "stream_actors:Producer"

[actors.q]
class = "stream_actors:Producer"
"""


def listing(d: Any, query: str = "") -> list[dict[str, Any]]:
    status, _, body = d.http("GET", f"/v1/streams{query}")
    assert status == 200, body
    assert body["schema"] == 1
    return body["streams"]


def test_streams_are_listed_with_state_and_last_seq(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, "grace_period = 0.5\n")
    assert d.cli("stream", "p", "count", "n=3", "--key", "job-1").code == 0
    failed = d.cli("stream", "q", "fail_after", "n=2")
    assert failed.code == 4, failed.stderr
    running = d.cli_background("stream", "p", "count", "n=1000", "delay=0.05", "--key", "slow")
    try:
        rows = wait_for(lambda: len(listing(d)) == 3 and listing(d), what="three streams listed")
        by_key = {row["key"]: row for row in rows}
        done = by_key["job-1"]
        assert (done["actor"], done["op"], done["state"], done["last_seq"]) == (
            "p",
            "count",
            "completed",
            2,
        )
        assert done["started"].endswith("Z") and done["ended"].endswith("Z")
        slow = by_key["slow"]
        assert slow["state"] == "running" and slow["ended"] is None
        bad = next(row for row in rows if row["actor"] == "q")
        assert (bad["state"], bad["last_seq"], bad["error"]["category"]) == ("failed", 1, "system")
        assert rows[0]["started"] >= rows[-1]["started"]  # newest first

        assert [row["actor"] for row in listing(d, "?actor=q")] == ["q"]
        assert {row["key"] for row in listing(d, "?state=completed")} == {"job-1"}
        assert d.http("GET", "/v1/streams?state=bogus")[0] == 400
        assert d.http("GET", "/v1/streams?actor=nobody")[0] == 404

        table = d.cli("streams")
        assert table.code == 0, table.stderr
        head, *lines = table.stdout.splitlines()
        assert head.split() == ["ID", "ACTOR", "OP", "KEY", "STATE", "LAST", "STARTED", "ENDED"]
        assert len(lines) == 3 and any(done["id"] in line and "completed" in line for line in lines)
        as_json = d.cli("streams", "--actor", "p", "--json")
        assert as_json.code == 0 and {r["actor"] for r in as_json.json()["streams"]} == {"p"}
        assert d.cli("streams", "--state", "nope").code == 2
    finally:
        running.kill()
        running.wait(5)


def test_resume_past_the_end_of_a_finished_stream_is_a_usage_error(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    first = d.cli("stream", "p", "count", "n=5", "--key", "k")
    assert first.code == 0
    stream_id = d.http("GET", "/v1/streams?actor=p")[2]["streams"][0]["id"]

    # Exactly at the end: nothing more to print, the stream's clean end.
    at_end = d.cli("stream", "--id", stream_id, "--resume", "5")
    assert (at_end.code, at_end.stdout) == (0, "")
    past = d.cli("stream", "--id", stream_id, "--resume", "9")
    assert past.code == 2, (past.stdout, past.stderr)
    assert "last seq is 4" in past.stderr and "--resume 5" in past.stderr
    status, _, body = d.http("GET", f"/v1/streams/{stream_id}?from=9")
    assert status == 416 and body["error"]["last_seq"] == 4
