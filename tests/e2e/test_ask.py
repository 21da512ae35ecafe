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
"""


def cli(d: Any, *args: str, **kwargs: Any) -> Any:
    """Run the real CLI; no Python traceback may ever show up."""
    result = d.cli(*args, **kwargs)
    assert "Traceback" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result


def envelope(result: Any, category: str, *, actor: str | None = None) -> dict[str, Any]:
    """The --json error envelope printed on stdout, checked for its required keys."""
    try:
        body = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"not one JSON object on stdout: {result.stdout!r} / {result.stderr!r}")
    assert set(body) == {"error"}, body
    error = body["error"]
    assert ENVELOPE_BASE <= set(error), error
    assert error["category"] == category, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["recoverable"], bool), error
    if actor is not None:
        assert ACTOR_KEYS <= set(error), error
        assert error["actor"] == actor, error
    return error


@pytest.fixture
def d(daemon_factory: Any, tmp_path: Path) -> Any:
    daemon = daemon_factory(ACTORS)
    daemon.wait_state("broken", "failed", timeout=5)
    return daemon


# ----------------------------------------------------------------------------- 0
def test_success_plain_and_json(d: Any) -> None:
    result = cli(d, "ask", "rec", "mark", "tag=hello")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "hello"

    result = cli(d, "ask", "rec", "mark", "tag=hello", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": "hello"}

    # global option before the verb works too
    result = cli(d, "--json", "ask", "echo", "add", "a=1", "b=2")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": 3}


# ----------------------------------------------------------------------------- 2
def test_usage_errors_exit_2(d: Any) -> None:
    bad_json = cli(d, "ask", "echo", "echo", "--data", "{not json", "--json")
    assert bad_json.code == 2, (bad_json.stdout, bad_json.stderr)

    scalar = cli(d, "ask", "echo", "echo", "--data", "42")
    assert scalar.code == 2, (scalar.stdout, scalar.stderr)

    missing_file = cli(d, "ask", "echo", "echo", "--data", "@/nonexistent/args.json")
    assert missing_file.code == 2, (missing_file.stdout, missing_file.stderr)

    missing_op = cli(d, "ask", "echo")
    assert missing_op.code == 2, (missing_op.stdout, missing_op.stderr)

    missing_all = cli(d, "ask")
    assert missing_all.code == 2, (missing_all.stdout, missing_all.stderr)

    bad_option = cli(d, "ask", "echo", "echo", "--timeout", "soon")
    assert bad_option.code == 2, (bad_option.stdout, bad_option.stderr)


# ----------------------------------------------------------------------------- 3
def test_business_error_exit_3(d: Any) -> None:
    result = cli(d, "ask", "rec", "business", "--json")
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

    plain = cli(d, "ask", "rec", "business")
    assert plain.code == 3
    assert "business" in plain.stderr and "that input is wrong" in plain.stderr
    assert plain.stdout == ""


def test_wrong_call_signature_is_business_exit_3(d: Any) -> None:
    missing = cli(d, "ask", "echo", "add", "a=1", "--json")
    assert missing.code == 3, (missing.stdout, missing.stderr)
    error = envelope(missing, "business", actor="echo")
    assert "b" in error["message"]

    unexpected = cli(d, "ask", "rec", "mark", "nope=1", "--json")
    assert unexpected.code == 3, (unexpected.stdout, unexpected.stderr)
    envelope(unexpected, "business", actor="rec")

    too_many = cli(d, "ask", "rec", "pid", "1", "2")
    assert too_many.code == 3, (too_many.stdout, too_many.stderr)

    # a bad call is not a failure of the instance
    assert d.actor("echo")["state"] == "running"
    assert d.actor("echo")["restarts"] == 0


# ----------------------------------------------------------------------------- 4
def test_crash_with_restart_scheduled_is_recoverable_system_exit_4(d: Any) -> None:
    result = cli(d, "ask", "rec", "crash", "message=kaboom", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system", actor="rec")
    assert error["recoverable"] is True
    assert error["state"] in ("backoff", "starting", "running")
    assert error["restarts"] == 1
    assert error["max_restarts"] == 5
    assert "kaboom" in error["message"]

    plain_d = d.wait_state("rec", "running", timeout=5)
    assert plain_d["restarts"] == 1
    plain = cli(d, "ask", "rec", "crash")
    assert plain.code == 4
    assert "system" in plain.stderr
    assert "recoverable" in plain.stderr
    assert "2/5" in plain.stderr  # the CLI shows restarts n/max


def test_op_raising_recoverable_system_error_exit_4(d: Any) -> None:
    result = cli(d, "ask", "rec", "recoverable", "--json")
    assert result.code == 4
    error = envelope(result, "system", actor="rec")
    assert error["recoverable"] is True
    assert "try again later" in error["message"]
    # a recoverable PulsingSystemError answers the caller; the instance is not restarted
    status = d.actor("rec")
    assert status["state"] == "running"
    assert status["restarts"] == 0


def test_system_error_not_recoverable_under_never(d: Any) -> None:
    result = cli(d, "ask", "never", "crash", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system", actor="never")
    assert error["recoverable"] is False
    assert error["state"] == "failed"


def test_system_error_not_recoverable_past_max_restarts(d: Any) -> None:
    first = cli(d, "ask", "once", "crash", "--json")
    assert first.code == 4
    assert envelope(first, "system", actor="once")["recoverable"] is True
    d.wait_state("once", "running", timeout=5)

    second = cli(d, "ask", "once", "crash", "--json")
    assert second.code == 4
    error = envelope(second, "system", actor="once")
    assert error["recoverable"] is False
    assert error["state"] == "failed"
    assert error["restarts"] == 1 and error["max_restarts"] == 1


def test_fatal_system_error_on_never_actor_is_not_recoverable(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.fatal]
        class = "e2e_actors:Recorder"
        restart_policy = "never"
        """
    )
    result = cli(d, "ask", "fatal", "fatal", "--json")
    assert result.code == 4
    error = envelope(result, "system", actor="fatal")
    assert error["recoverable"] is False
    assert "state corrupted" in error["message"]
    assert d.wait_state("fatal", "failed", timeout=5)["state"] == "failed"


# ----------------------------------------------------------------------------- 5
@pytest.mark.parametrize(
    ("actor", "op"),
    [
        ("rec", "no_such_op"),
        ("rec", "_secret"),
        ("rec", "__init__"),
        ("rec", "receive"),
        ("hooks", "on_start"),
        ("hooks", "on_stop"),
        ("looper", "run"),
    ],
)
def test_unsupported_ops_exit_5(d: Any, actor: str, op: str) -> None:
    result = cli(d, "ask", actor, op, "--json")
    assert result.code == 5, (result.stdout, result.stderr)
    error = envelope(result, "unsupported", actor=actor)
    assert error["recoverable"] is False
    assert "never" not in result.stdout  # _secret's return value never leaks
    assert d.actor(actor)["state"] == "running"


# ----------------------------------------------------------------------------- 6
def test_unknown_actor_exit_6(d: Any) -> None:
    result = cli(d, "ask", "ghost", "ping", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime")
    assert "ghost" in error["message"]


def test_stopped_actor_exit_6(d: Any) -> None:
    assert d.actor("idle")["state"] == "stopped"
    result = cli(d, "ask", "idle", "mark", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime", actor="idle")
    assert error["state"] == "stopped"
    assert "stopped" in error["message"]


def test_failed_actor_exit_6(d: Any) -> None:
    result = cli(d, "ask", "broken", "ping", "--json")
    assert result.code == 6, (result.stdout, result.stderr)
    error = envelope(result, "runtime", actor="broken")
    assert error["state"] == "failed"
    assert error["recoverable"] is False

    plain = cli(d, "ask", "broken", "ping")
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
    result = cli(d, "ask", "rec", "sleep", "seconds=5", "--timeout", "0.3", "--json")
    elapsed = time.monotonic() - started
    assert result.code == 124, (result.stdout, result.stderr)
    error = envelope(result, "timeout", actor="rec")
    assert error["recoverable"] is True
    assert elapsed < 4.0
    # the actor is fine afterwards
    assert cli(d, "ask", "rec", "mark", "tag=after").code == 0


# ----------------------------------------------------------------------------- args
def test_positional_and_keyword_args(d: Any) -> None:
    result = cli(d, "ask", "echo", "echo", "1", "2", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"result": {"args": [1, 2], "kwargs": {}}}

    result = cli(d, "ask", "echo", "echo", "x", "n=5", "s=hello", "l=[1,2]", '{"a":1}', "--json")
    assert result.code == 0, result.stderr
    assert result.json()["result"] == {
        "args": ["x", {"a": 1}],
        "kwargs": {"n": 5, "s": "hello", "l": [1, 2]},
    }

    result = cli(d, "ask", "echo", "add", "2", "3")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "5"


def test_data_inline_file_and_stdin(d: Any, tmp_path: Path) -> None:
    inline = cli(d, "ask", "echo", "add", "--data", '{"a": 4, "b": 5}', "--json")
    assert inline.code == 0, inline.stderr
    assert inline.json() == {"result": 9}

    args_file = tmp_path / "args.json"
    args_file.write_text('{"a": 10, "b": 20}')
    from_file = cli(d, "ask", "echo", "add", "--data", f"@{args_file}", "--json")
    assert from_file.code == 0, from_file.stderr
    assert from_file.json() == {"result": 30}

    from_stdin = cli(d, "ask", "echo", "add", "--data", "-", "--json", input='{"a": 1, "b": 1}')
    assert from_stdin.code == 0, from_stdin.stderr
    assert from_stdin.json() == {"result": 2}

    array = cli(d, "ask", "echo", "echo", "--data", "[1, 2]", "3", "--json")
    assert array.code == 0, array.stderr
    assert array.json() == {"result": {"args": [1, 2, 3], "kwargs": {}}}


def test_receive_gets_raw_message(d: Any) -> None:
    result = cli(d, "ask", "raw", "anything", "x=1", "y=two", "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    assert result.json() == {"result": {"got": {"op": "anything", "args": {"x": 1, "y": "two"}}}}

    status, _, body = d.http(
        "POST", "/v1/actors/raw/ask", {"op": "other", "args": {"k": [1, 2]}}
    )
    assert status == 200, body
    assert body == {"result": {"got": {"op": "other", "args": {"k": [1, 2]}}}}

    # private names never reach receive
    private = cli(d, "ask", "raw", "_hidden", "--json")
    assert private.code == 5, (private.stdout, private.stderr)


def test_non_json_result_is_system_error_not_crash(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.weird]
        class = "e2e_actors:Unserializable"
        """
    )
    result = cli(d, "ask", "weird", "thing", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    error = envelope(result, "system")
    assert "JSON" in error["message"]
    # the daemon and the actor survive
    assert d.http("GET", "/v1/health")[0] == 200
    assert d.actor("weird")["state"] == "running"


# ----------------------------------------------------------------------------- helpers
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("pulsing")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsing_cli.app"]
    full_env = {k: v for k, v in os.environ.items() if k not in ("PULSING_TOKEN",)}
    full_env.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=30, env=full_env
    )
