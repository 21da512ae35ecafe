"""`pulsing ask` end to end: every exit code of CONTRACT §4, the --json shapes,
argument forms (key=value, positional, --data JSON/@file/-) and raw ``receive``.

One daemon per test hosts a handful of actors; every CLI call is the real
``pulsing`` command and its output is checked for Python tracebacks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import pulsing_command

ENVELOPE_BASE = {"category", "type", "message", "recoverable"}
ACTOR_KEYS = {"actor", "state", "restarts", "max_restarts"}

ACTORS = """
[actors.rec]
class = "e2e_actors:Recorder"
min_backoff = 0.05
max_backoff = 0.05
max_restarts = 5

[actors.once]
class = "e2e_actors:Recorder"
min_backoff = 0.05
max_backoff = 0.05
max_restarts = 1

[actors.never]
class = "e2e_actors:NeverRestart"

[actors.echo]
class = "e2e_actors:Echo"

[actors.raw]
class = "e2e_actors:Raw"

[actors.hooks]
class = "e2e_actors:Hooks"

[actors.looper]
class = "e2e_actors:Looper"
args = { run_for = 60.0 }

[actors.idle]
class = "e2e_actors:Recorder"
autostart = false

[actors.broken]
class = "e2e_actors:BadInit"
restart_policy = "never"

[actors.sysok]
class = "e2e_actors:Recorder"

[actors.fatal]
class = "e2e_actors:Recorder"
restart_policy = "never"

[actors.weird]
class = "e2e_actors:Unserializable"

[actors.raiser]
class = "e2e_actors:Raiser"
"""


def envelope(result: Any, category: str, *, actor: str | None = None) -> dict[str, Any]:
    """The --json error envelope printed on stdout, checked for its required keys."""
    try:
        body = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"not one JSON object on stdout: {result.stdout!r} / {result.stderr!r}")
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= ENVELOPE_BASE, error
    assert error["category"] == category, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["recoverable"], bool), error
    if actor is not None:
        assert set(error) >= ACTOR_KEYS, error
        assert error["actor"] == actor, error
    return error


@pytest.fixture
def d(daemon_factory: Any, tmp_path: Path) -> Any:
    daemon = daemon_factory(ACTORS)
    daemon.wait_state("broken", "failed", timeout=5)
    return daemon


# ----------------------------------------------------------------------------- 0
def test_success_plain_and_json(d: Any) -> None:
    result = d.cli("ask", "rec", "mark", "tag=hello")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "hello"

    result = d.cli("ask", "rec", "mark", "tag=hello", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": "hello"}

    # global option before the verb works too
    result = d.cli("--json", "ask", "echo", "add", "a=1", "b=2")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": 3}

    # the raw receive(msg) actor gets {"op", "args"}
    result = d.cli("ask", "raw", "anything", "x=1", "y=two", "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.json() == {"result": {"got": {"op": "anything", "args": {"x": 1, "y": "two"}}}}
    status, _, body = d.http("POST", "/v1/actors/raw/ask", {"op": "other", "args": {"k": [1, 2]}})
    assert status == 200, body
    assert body == {"result": {"got": {"op": "other", "args": {"k": [1, 2]}}}}
    private = d.cli("ask", "raw", "_hidden", "--json")  # private names never reach receive
    assert private.code == 5, (private.stdout, private.stderr)


def test_receive_mixed_positional_and_keyword_args_are_not_lost(d: Any) -> None:
    result = d.cli("ask", "raw", "foo", "1", "x=2", "--json")
    # either the message carries the keyword too, or the ask is refused -- never a silent drop
    if result.code == 0:
        assert "x" in json.dumps(result.json()["result"]), result.stdout
    else:
        assert result.code in (2, 3), (result.stdout, result.stderr)


# ----------------------------------------------------------------------------- 2
def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Bad command lines are usage errors (2), found before any daemon is contacted."""
    nowhere = {"PULSING_ENDPOINT": f"http://127.0.0.1:{_free_port()}"}
    cases = [
        ("ask", "echo", "echo", "--data", "{not json", "--json"),
        ("ask", "echo", "echo", "--data", "42"),
        ("ask", "echo", "echo", "--data", "@/nonexistent/args.json"),
        ("ask", "echo"),
        ("ask",),
        ("ask", "echo", "echo", "--timeout", "soon"),
        ("ask", "echo", "echo", "--no-such-option"),
    ]
    for args in cases:
        result = _run_cli(*args, env=nowhere)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, args


# ----------------------------------------------------------------------------- 3
def test_business_error_exit_3(d: Any) -> None:
    result = d.cli("ask", "rec", "business", "--json")
    assert result.code == 3, (result.stdout, result.stderr)
    error = envelope(result, "business", actor="rec")
    assert error["recoverable"] is False
    assert error["type"] == "PulsingBusinessError"
    assert error["code"] == "bad_input"
    assert error["details"] == {"field": "x"}
    assert error["message"] == "that input is wrong"
    assert error["state"] == "running"
    assert error["restarts"] == 0
    assert error["max_restarts"] == 5

    plain = d.cli("ask", "rec", "business")
    assert plain.code == 3
    assert "business" in plain.stderr and "that input is wrong" in plain.stderr
    assert plain.stdout == ""

    # a wrong call signature is a business error too
    missing = d.cli("ask", "echo", "add", "a=1", "--json")
    assert missing.code == 3, (missing.stdout, missing.stderr)
    error = envelope(missing, "business", actor="echo")
    assert "b" in error["message"]

    unexpected = d.cli("ask", "rec", "mark", "nope=1", "--json")
    assert unexpected.code == 3, (unexpected.stdout, unexpected.stderr)
    envelope(unexpected, "business", actor="rec")

    status, _, body = d.http("POST", "/v1/actors/rec/ask", {"op": "pid", "args": [1, 2]})
    assert body["error"]["category"] == "business", (status, body)

    # a bad call is not a failure of the instance
    assert d.actor("echo")["state"] == "running"
    assert d.actor("echo")["restarts"] == 0


def test_plain_cli_error_always_shows_recoverable(d: Any) -> None:
    for args in (("rec", "business"), ("rec", "nope"), ("rec", "sleep", "seconds=2")):
        extra = ("--timeout", "0.1") if args[1] == "sleep" else ()
        result = d.cli("ask", *args, *extra)
        assert result.code in (3, 5, 124), (args, result.stderr)
        assert "recoverable" in result.stderr, (args, result.stderr)
        assert "0/5" in result.stderr, (args, result.stderr)


# ----------------------------------------------------------------------------- 4
def test_system_errors_exit_4_and_recoverable_flag(d: Any) -> None:
    # a crash with a restart scheduled: recoverable
    result = d.cli("ask", "rec", "crash", "message=kaboom", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system", actor="rec")
    assert error["recoverable"] is True
    assert error["state"] in ("backoff", "starting", "running")
    assert error["restarts"] == 1
    assert error["max_restarts"] == 5
    assert "kaboom" in error["message"]
    assert d.wait_state("rec", "running", timeout=5)["restarts"] == 1
    plain = d.cli("ask", "rec", "crash")
    assert plain.code == 4
    assert "system" in plain.stderr
    assert "recoverable" in plain.stderr
    assert "2/5" in plain.stderr  # the CLI shows restarts n/max

    # an op raising PulsingSystemError(recoverable=True): answers the caller, no restart
    result = d.cli("ask", "sysok", "recoverable", "--json")
    assert result.code == 4
    error = envelope(result, "system", actor="sysok")
    assert error["recoverable"] is True
    assert "try again later" in error["message"]
    status = d.actor("sysok")
    assert status["state"] == "running"
    assert status["restarts"] == 0

    # restart_policy = never (from @remote): not recoverable, failed
    result = d.cli("ask", "never", "crash", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system", actor="never")
    assert error["recoverable"] is False
    assert error["state"] == "failed"

    # PulsingSystemError(recoverable=False) with no restart following: not recoverable
    result = d.cli("ask", "fatal", "fatal", "--json")
    assert result.code == 4
    error = envelope(result, "system", actor="fatal")
    assert error["recoverable"] is False
    assert "state corrupted" in error["message"]
    assert d.wait_state("fatal", "failed", timeout=5)["state"] == "failed"

    # past max_restarts: the first crash is recoverable, the second is not
    first = d.ask("once", "crash")[2]["error"]
    assert (first["category"], first["recoverable"]) == ("system", True)
    d.wait_state("once", "running", timeout=5)
    second = d.cli("ask", "once", "crash", "--json")
    assert second.code == 4
    error = envelope(second, "system", actor="once")
    assert error["recoverable"] is False
    assert error["state"] == "failed"
    assert error["restarts"] == 1 and error["max_restarts"] == 1

    # a result that is not JSON: a system error, and nothing crashes
    result = d.cli("ask", "weird", "thing", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system")
    assert "JSON" in error["message"]
    assert d.http("GET", "/v1/health")[0] == 200
    assert d.actor("weird")["state"] == "running"


# ----------------------------------------------------------------------------- 5
UNSUPPORTED = [
    ("rec", "no_such_op"),
    ("rec", "_secret"),
    ("rec", "__init__"),
    ("rec", "receive"),
    ("hooks", "on_start"),
    ("hooks", "on_stop"),
    ("looper", "run"),
]


def test_unsupported_ops_exit_5(d: Any) -> None:
    """Unknown ops, private names and lifecycle hooks are never ops."""
    # the exit code through the real CLI for a few, the same answer over HTTP for all
    for actor, op in (("rec", "no_such_op"), ("rec", "_secret"), ("hooks", "on_start")):
        result = d.cli("ask", actor, op, "--json")
        assert result.code == 5, (actor, op, result.stdout, result.stderr)
    for actor, op in UNSUPPORTED:
        status, _, body = d.http("POST", f"/v1/actors/{actor}/ask", {"op": op})
        assert status < 500, (actor, op, status, body)
        error = body["error"]
        assert error["category"] == "unsupported", (actor, op, error)
        assert error["recoverable"] is False
        assert error["actor"] == actor
        assert "never" not in json.dumps(body)  # _secret's return value never leaks
    for actor in ("rec", "hooks", "looper"):
        status = d.actor(actor)
        assert status["state"] == "running"
        assert status["restarts"] == 0
    assert d.actor("rec")["counts"]["unsupported"] == 6


# ----------------------------------------------------------------------------- 6
def test_runtime_errors_exit_6(d: Any) -> None:
    # an unknown actor
    result = d.cli("ask", "ghost", "ping", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime")
    assert "ghost" in error["message"]

    # a stopped actor
    assert d.actor("idle")["state"] == "stopped"
    result = d.cli("ask", "idle", "mark", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime", actor="idle")
    assert error["state"] == "stopped"
    assert "stopped" in error["message"]

    # a failed actor
    result = d.cli("ask", "broken", "ping", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime", actor="broken")
    assert error["state"] == "failed"
    assert error["recoverable"] is False

    plain = d.cli("ask", "broken", "ping")
    assert plain.code == 6
    assert "failed" in plain.stderr
    assert "pulsing restart broken" in plain.stderr


def test_daemon_not_running_exit_6_names_endpoint(tmp_path: Path) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for extra in ([], ["--json"]):
        result = _run_cli("ask", "rec", "mark", *extra, env={"PULSING_ENDPOINT": endpoint})
        assert result.returncode == 6, (result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        text = result.stdout if extra else result.stderr
        assert f"127.0.0.1:{port}" in text, text
        if extra:
            error = json.loads(result.stdout)["error"]
            assert error["category"] == "runtime"

    sock = tmp_path / "nobody.sock"
    result = _run_cli("ask", "rec", "mark", "--endpoint", f"unix:{sock}")
    assert result.returncode == 6, (result.stdout, result.stderr)
    assert str(sock) in result.stderr


# ----------------------------------------------------------------------------- 124
def test_timeout_exit_124(d: Any) -> None:
    started = time.monotonic()
    result = d.cli("ask", "rec", "sleep", "seconds=5", "--timeout", "0.3", "--json")
    elapsed = time.monotonic() - started
    assert result.code == 124, (result.stdout, result.stderr)
    error = envelope(result, "timeout", actor="rec")
    assert error["recoverable"] is True
    assert elapsed < 4.0
    # the actor is fine afterwards
    assert d.cli("ask", "rec", "mark", "tag=after").code == 0

    # user code raising PulsingTimeoutError / PulsingUnsupportedError: same categories
    raised = d.cli("ask", "raiser", "timeout", "--json")
    assert raised.code == 124, (raised.stdout, raised.stderr)
    error = envelope(raised, "timeout", actor="raiser")
    assert error["operation"] == "fetch" and error["duration_ms"] == 1500
    raised = d.cli("ask", "raiser", "unsupported", "--json")
    assert raised.code == 5, (raised.stdout, raised.stderr)
    envelope(raised, "unsupported", actor="raiser")
    assert d.actor("raiser")["restarts"] == 0  # neither is a failure of the instance


def test_ctrl_c_exit_130(d: Any) -> None:
    import os
    import signal
    import subprocess

    command = pulsing_command()
    proc = subprocess.Popen(
        [*command, "ask", "rec", "sleep", "seconds=0.8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PULSING_ENDPOINT": d.endpoint, "NO_COLOR": "1"},
    )
    try:
        deadline = time.monotonic() + 5
        while d.actor("rec")["in_flight"] != 1:
            assert time.monotonic() < deadline, "the ask never started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in out + err
    assert "KeyboardInterrupt" not in out + err


# ----------------------------------------------------------------------------- args
def test_positional_keyword_and_data_args(d: Any, tmp_path: Path) -> None:
    result = d.cli("ask", "echo", "echo", "1", "2", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": {"args": [1, 2], "kwargs": {}}}

    result = d.cli("ask", "echo", "echo", "x", "n=5", "s=hello", "l=[1,2]", '{"a":1}', "--json")
    assert result.code == 0, result.stderr
    assert result.json()["result"] == {
        "args": ["x", {"a": 1}],
        "kwargs": {"n": 5, "s": "hello", "l": [1, 2]},
    }

    result = d.cli("ask", "echo", "add", "2", "3")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "5"

    # --data: inline JSON, @file, - (stdin), and an array plus positional words
    inline = d.cli("ask", "echo", "add", "--data", '{"a": 4, "b": 5}', "--json")
    assert inline.code == 0, inline.stderr
    assert inline.json() == {"result": 9}

    args_file = tmp_path / "args.json"
    args_file.write_text('{"a": 10, "b": 20}')
    from_file = d.cli("ask", "echo", "add", "--data", f"@{args_file}", "--json")
    assert from_file.code == 0, from_file.stderr
    assert from_file.json() == {"result": 30}

    from_stdin = d.cli("ask", "echo", "add", "--data", "-", "--json", input='{"a": 1, "b": 1}')
    assert from_stdin.code == 0, from_stdin.stderr
    assert from_stdin.json() == {"result": 2}

    array = d.cli("ask", "echo", "echo", "--data", "[1, 2]", "3", "--json")
    assert array.code == 0, array.stderr
    assert array.json() == {"result": {"args": [1, 2, 3], "kwargs": {}}}


# ----------------------------------------------------------------------------- helpers
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess

    command = pulsing_command()
    full_env = {k: v for k, v in os.environ.items() if k not in ("PULSING_TOKEN",)}
    full_env.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=30, env=full_env
    )
