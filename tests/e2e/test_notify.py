"""Notifications (CONTRACT §9): [[notify]] hooks run a command with the event JSON on
stdin and/or POST it to a URL; hooks that hang or fail are logged and never delay an ask
or a restart; bursts are coalesced."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from e2e_helpers import lines, wait_for

RECORD = """
import sys
data = sys.stdin.read()
with open(sys.argv[1], "a") as fh:
    fh.write(data.strip().replace("\\n", " ") + "\\n")
"""


def hooks(tmp_path: Path) -> tuple[Path, str]:
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    out = tmp_path / "notified.jsonl"
    py = json.dumps(sys.executable)
    return (
        out,
        f"""
[[notify]]
command = [{py}, "{script}", "{out}"]
events = ["failure", "failed"]
min_interval = 0.5

[[notify]]
command = ["sleep", "30"]
events = ["failure"]
timeout = 0.5

[[notify]]
command = ["sh", "-c", "echo something broke >&2; exit 3"]
events = ["*"]
""",
    )


ACTORS = """
[actors.crasher]
class = "e2e_actors:Recorder"
max_restarts = 100
min_backoff = 0.01
max_backoff = 0.02

[actors.steady]
class = "e2e_actors:Recorder"
"""


def test_command_hooks_get_the_event_and_bad_hooks_never_delay_asks(
    daemon_factory: Any, tmp_path: Path
) -> None:
    out, notify = hooks(tmp_path)
    d = daemon_factory(ACTORS + notify)
    assert d.ask("crasher", "crash", message="first")[0] >= 500
    first = wait_for(lambda: lines(out), what="the first notification")
    event = json.loads(first[0])
    assert (event["kind"], event["actor"], event["message"]) == ("failure", "crasher", "first")
    assert {"id", "at", "category", "type"} <= set(event)

    # The sleeping hook is running now (0.5 s timeout) and the failing one has failed:
    # asks and restarts go on at full speed meanwhile.
    d.wait_state("crasher", "running")
    started = time.monotonic()
    for _ in range(20):
        assert d.ask("steady", "mark")[0] == 200
    assert time.monotonic() - started < 2.0
    restart_started = time.monotonic()
    d.ask("crasher", "crash", message="second")
    d.wait_state("crasher", "running", timeout=2.0)
    assert time.monotonic() - restart_started < 1.0

    log = wait_for(
        lambda: "notify[2]" in d.log() and "notify[3]" in d.log() and d.log(), what="hook logs"
    )
    hung = next(line for line in log.splitlines() if "notify[2]" in line)
    assert "notify_failed" in hung and "timed out after 0.5s" in hung
    failed = next(line for line in log.splitlines() if "notify[3]" in line)
    assert "exit status 3" in failed and "something broke" in failed
    assert "Traceback" not in log


def test_a_burst_is_coalesced(daemon_factory: Any, tmp_path: Path) -> None:
    out, notify = hooks(tmp_path)
    d = daemon_factory(ACTORS + notify)
    for n in range(30):
        d.ask("crasher", "crash", message=f"burst {n}")
        d.wait_state("crasher", "running", "backoff")
    got = wait_for(
        lambda: (
            (records := [json.loads(line) for line in lines(out)])
            and sum(r.get("coalesced", 1) for r in records) == 30
            and records
        ),
        timeout=15,
        what="every failure accounted for",
    )
    assert len(got) < 10, f"{len(got)} deliveries for 30 failures"
    batch = next(r for r in got if r.get("coalesced"))
    assert batch["events"][-1]["id"] == batch["id"]  # the newest event, with its batch
    assert [e["message"] for r in got for e in r.get("events", [r])] == [
        f"burst {n}" for n in range(30)
    ]


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: list[Any] = []
    hang = False

    def do_POST(self) -> None:
        if self.path == "/hang":
            time.sleep(3)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_url_hooks_post_the_event_and_a_hanging_url_times_out(daemon_factory: Any) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        d = daemon_factory(
            ACTORS
            + f"""
[[notify]]
url = "{base}/ok"
events = ["failure"]
actors = ["crash*"]

[[notify]]
url = "{base}/hang"
events = ["failure"]
timeout = 0.3

[[notify]]
url = "{base}/error"
events = ["failure"]
"""
        )
        d.ask("crasher", "crash", message="posted")
        started = time.monotonic()
        assert d.ask("steady", "mark")[0] == 200
        assert time.monotonic() - started < 0.5
        wait_for(lambda: any(p == "/ok" for p, _, _ in _Collector.bodies), what="the POST")
        _path, content_type, body = next(b for b in _Collector.bodies if b[0] == "/ok")
        assert content_type == "application/json" and body["message"] == "posted"
        log = wait_for(
            lambda: "notify[2]" in d.log() and "notify[3]" in d.log() and d.log(), what="logs"
        )
        assert "no answer within 0.3s" in log and "answered HTTP 500" in log
    finally:
        server.shutdown()


def test_bad_notify_tables_are_config_problems(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(
        ACTORS
        + """
[[notify]]
events = ["failed"]

[[notify]]
command = "page-me"
events = ["explosion"]
timeout = -1
""",
        start=False,
    )
    result = d.cli("config", "check", str(d.config_path))
    assert result.code == 2, result
    text = result.stdout + result.stderr
    assert "notify.1: set command, url or both" in text
    assert "notify.2.command: expected a non-empty array of strings" in text
    assert "unknown event kind 'explosion'" in text
    assert "notify.2.timeout" in text
