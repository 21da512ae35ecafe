"""``isolation = "process"`` end to end (CONTRACT §2-4): the same contract as inline
actors, plus what only a child process can do -- survive hard deaths (``os._exit``,
SIGSEGV, ``memory_limit``, ``cpu_limit``, ``kill_on_timeout``), carry its own
``env``/``cwd``, send its output to the actor's log, and never outlive the daemon.

Actors live in ``tests/e2e/proc_actors.py``. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ACTOR_FIELDS, COUNT_KEYS, lines, wait_for

MODES = ["inline", "process"]


# ----------------------------------------------------------------------------- helpers


def error_of(result: Any, category: str) -> dict[str, Any]:
    """The error envelope a failed `pulsing ask --json` printed."""
    payload = json.loads(result.stdout)
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert error["category"] == category, error
    return error


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: an orphan re-parented to a PID 1
    that does not reap (as in some containers) stays a zombie, but it runs no code."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float, what: str) -> None:
    wait_for(lambda: not any(alive(p) for p in pids), timeout, what)


def worker(
    mode: str = "process",
    name: str = "w",
    effects: Path | None = None,
    hooks: Path | None = None,
    extra: str = "",
    max_restarts: int = 5,
) -> str:
    """An ``[actors.NAME]`` table for ``proc_actors:Worker`` with tiny backoffs."""
    args = []
    if effects is not None:
        args.append(f'effects = "{effects}"')
    if hooks is not None:
        args.append(f'hooks = "{hooks}"')
    return (
        f"[actors.{name}]\n"
        'class = "proc_actors:Worker"\n'
        f"args = {{ {', '.join(args)} }}\n"
        f'isolation = "{mode}"\n'
        f"max_restarts = {max_restarts}\n"
        "min_backoff = 0.05\n"
        "max_backoff = 0.05\n"
        f"{extra}\n"
    )


ECHO = '[actors.echo]\nclass = "proc_actors:Echo"\n'


def ask_http(d: Any, actor: str, op: str, timeout: float = 10.0, **kwargs: Any) -> Any:
    return d.http(
        "POST",
        f"/v1/actors/{actor}/ask",
        {"op": op, "args": kwargs},
        {"Pulsing-Timeout": str(timeout)},
        timeout=timeout + 5,
    )


def bystander_answers(d: Any, until: Future[Any], limit: float = 15.0) -> int:
    """Ask the inline echo actor over and over until ``until`` is done: each answer must
    come back quickly, whatever the process actor is going through."""
    answered = 0
    deadline = time.monotonic() + limit
    while True:
        started = time.monotonic()
        status, _, body = ask_http(d, "echo", "echo", timeout=5, value=answered)
        took = time.monotonic() - started
        assert status == 200 and body == {"result": answered}, (status, body)
        assert took < 1.5, f"the inline echo took {took:.2f}s to answer"
        answered += 1
        if until.done() or time.monotonic() > deadline:
            return answered
        time.sleep(0.05)


def wait_new_child(d: Any, name: str, old_pid: int, timeout: float = 10.0) -> dict[str, Any]:
    """The actor's status once it runs again in a child other than ``old_pid``."""

    def check() -> dict[str, Any] | None:
        status = d.actor(name)
        fresh = status.get("pid") not in (None, old_pid)
        return status if status["state"] == "running" and fresh else None

    return wait_for(check, timeout, f"{name} to run in a new child (old pid {old_pid})")


def daemon_pid(d: Any) -> int:
    return d.status()["daemon"]["pid"]


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


# ============================================================== 1. same contract in both modes
@pytest.mark.parametrize("mode", MODES)
def test_ask_errors_and_status_fields(daemon_factory: Any, mode: str) -> None:
    d = daemon_factory(worker(mode))
    d.wait_state("w", "running")
    ok = d.cli("ask", "w", "hello", "name=ann", "--json")
    assert ok.code == 0, (ok.stdout, ok.stderr)
    assert ok.json() == {"result": {"hello": "ann", "calls": 1}}

    business = d.cli("ask", "w", "business", "--json")
    assert business.code == 3, (business.stdout, business.stderr)
    error = error_of(business, "business")
    assert error["message"] == "that input is wrong"
    assert error["actor"] == "w" and error["state"] == "running", error

    unknown = d.cli("ask", "w", "no_such_op", "--json")
    assert unknown.code == 5, (unknown.stdout, unknown.stderr)
    assert "no_such_op" in error_of(unknown, "unsupported")["message"]

    private = d.cli("ask", "w", "_bump")
    assert private.code == 5, (private.stdout, private.stderr)

    status = d.cli("status", "w", "--json")
    assert status.code == 0, (status.stdout, status.stderr)
    payload = status.json()
    assert payload["schema"] == 1 and len(payload["actors"]) == 1
    entry = payload["actors"][0]
    assert set(entry) >= ACTOR_FIELDS, ACTOR_FIELDS - set(entry)
    assert set(entry["counts"]) >= COUNT_KEYS
    assert entry["name"] == "w" and entry["state"] == "running"
    assert entry["isolation"] == mode
    assert entry["restarts"] == 0 and entry["max_restarts"] == 5
    assert entry["mailbox"] == 0 and entry["in_flight"] == 0
    assert (entry["counts"]["ok"], entry["counts"]["business"]) == (1, 1)
    assert entry["counts"]["unsupported"] == 2
    assert entry["last_error"]["category"] == "unsupported"
    pid = d.cli("ask", "w", "pid", "--json").json()["result"]
    if mode == "process":
        assert isinstance(entry["pid"], int) and entry["pid"] == pid
        assert pid != payload["daemon"]["pid"]
    else:
        assert entry.get("pid") is None
        assert pid == payload["daemon"]["pid"]


@pytest.mark.parametrize("mode", MODES)
def test_crash_is_recoverable_then_served_by_new_instance(daemon_factory: Any, mode: str) -> None:
    d = daemon_factory(worker(mode))
    assert d.cli("ask", "w", "hello", "--json").json()["result"]["calls"] == 1
    pid_before = d.wait_state("w", "running").get("pid")

    crash = d.cli("ask", "w", "crash", "message=kaboom", "--json")
    assert crash.code == 4, (crash.stdout, crash.stderr)
    error = error_of(crash, "system")
    assert error["recoverable"] is True, error
    assert "kaboom" in error["message"], error
    assert (error["restarts"], error["max_restarts"]) == (1, 5), error

    status = d.wait_state("w", "running", timeout=10)
    assert status["restarts"] == 1
    assert "kaboom" in status["last_failure"]["message"], status["last_failure"]
    assert status["last_failure"]["type"] == "RuntimeError", status["last_failure"]
    # A new instance: its counter starts over.
    again = d.cli("ask", "w", "hello", "--json")
    assert again.code == 0 and again.json()["result"]["calls"] == 1, again.stdout
    if mode == "process":
        assert status["pid"] != pid_before

    # The plain rendering shows the restart count as N/MAX.
    plain = d.cli("ask", "w", "crash")
    assert plain.code == 4 and "2/5" in plain.stderr, plain.stderr


@pytest.mark.parametrize("mode", MODES)
def test_asks_queued_behind_a_crash_are_served_by_the_new_instance(
    daemon_factory: Any, tmp_path: Path, pool: ThreadPoolExecutor, mode: str
) -> None:
    effects = tmp_path / "effects"
    d = daemon_factory(worker(mode, effects=effects))
    first_pid = ask_http(d, "w", "pid")[2]["result"]

    crashing = pool.submit(ask_http, d, "w", "block_then_crash", 10.0, seconds=1.2)
    wait_for(lambda: d.actor("w")["in_flight"] == 1, 5, "the crashing op to run")
    queued = [pool.submit(ask_http, d, "w", "mark", 10.0, tag=f"q{i}") for i in range(3)]
    wait_for(lambda: d.actor("w")["mailbox"] == 3, 5, "three asks queued")
    assert not crashing.done(), "the op crashed before the asks were queued"

    status, _, body = crashing.result(timeout=15)
    assert status >= 500 and body["error"]["category"] == "system", (status, body)
    assert body["error"]["recoverable"] is True
    for future in queued:
        status, _, body = future.result(timeout=15)
        assert status == 200, (status, body)
    assert sorted(lines(effects)) == ["q0", "q1", "q2"]
    after = d.actor("w")
    assert after["state"] == "running" and after["restarts"] == 1
    new_pid = ask_http(d, "w", "pid")[2]["result"]
    if mode == "process":
        assert new_pid != first_pid


@pytest.mark.parametrize("mode", MODES)
def test_async_op_is_cancelled_at_its_deadline(
    daemon_factory: Any, tmp_path: Path, mode: str
) -> None:
    effects = tmp_path / "effects"
    d = daemon_factory(worker(mode, effects=effects))
    pid_before = d.wait_state("w", "running").get("pid")
    started = time.monotonic()
    result = d.cli("ask", "w", "nap", "seconds=1.0", "tag=late", "--timeout", "0.3", "--json")
    took = time.monotonic() - started
    assert result.code == 124, (result.stdout, result.stderr)
    error = error_of(result, "timeout")
    assert error["operation"] == "nap"
    assert took < 3.0, took
    # The actor is free at once (the op was cancelled, not left running) and not restarted.
    quick = time.monotonic()
    assert d.cli("ask", "w", "hello", "--json").code == 0
    assert time.monotonic() - quick < 2.0
    status = d.actor("w")
    assert status["state"] == "running" and status["restarts"] == 0
    assert status.get("pid") == pid_before
    # Had the op not been cancelled, it would have written "late" by now.
    time.sleep(max(0.0, started + 1.4 - time.monotonic()))
    assert lines(effects) == []


@pytest.mark.parametrize("mode", MODES)
def test_streaming_op(daemon_factory: Any, mode: str) -> None:
    d = daemon_factory(worker(mode))
    result = d.cli("stream", "w", "count", "n=6", "--json")
    assert result.code == 0, (result.stdout, result.stderr)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert records == [{"seq": i, "data": i} for i in range(6)], records


@pytest.mark.parametrize("mode", MODES)
def test_idempotent_ask_executes_once(daemon_factory: Any, tmp_path: Path, mode: str) -> None:
    effects = tmp_path / "effects"
    d = daemon_factory(worker(mode, effects=effects))
    first = d.cli("ask", "w", "mark", "tag=once", "--idempotency-key", "k-1", "--json")
    second = d.cli("ask", "w", "mark", "tag=once", "--idempotency-key", "k-1", "--json")
    assert first.code == 0 and second.code == 0, (first.stderr, second.stderr)
    assert first.json()["result"] == "once"
    assert second.json()["result"] == "once" and second.json().get("replayed") is True
    assert lines(effects) == ["once"]
    conflict = d.cli("ask", "w", "mark", "tag=other", "--idempotency-key", "k-1", "--json")
    assert conflict.code == 3, (conflict.stdout, conflict.stderr)
    assert lines(effects) == ["once"]


# ============================================================== 2. hard deaths (process mode)
HARD_DEATHS = [
    pytest.param("exit", {"code": 3}, "", ["exited with code 3"], id="os._exit"),
    pytest.param("segfault", {}, "", ["SIGSEGV"], id="sigsegv"),
    pytest.param(
        "hog", {"mb": 1024}, "memory_limit = 300000000", ["memory_limit"], id="memory_limit"
    ),
    pytest.param(
        "spin", {"seconds": 15}, "cpu_limit = 1", ["cpu_limit", "SIGXCPU"], id="cpu_limit"
    ),
]


@pytest.mark.parametrize(("op", "args", "extra", "fragments"), HARD_DEATHS)
def test_hard_death_is_a_recoverable_failure(
    daemon_factory: Any,
    pool: ThreadPoolExecutor,
    op: str,
    args: dict[str, Any],
    extra: str,
    fragments: list[str],
) -> None:
    d = daemon_factory(worker("process", extra=extra) + ECHO)
    old_pid = d.wait_state("w", "running")["pid"]
    assert ask_http(d, "w", "pid")[2]["result"] == old_pid

    dying = pool.submit(ask_http, d, "w", op, 10.0, **args)
    assert bystander_answers(d, dying) >= 1
    status, _, body = dying.result(timeout=15)
    assert status >= 500, (status, body)
    error = body["error"]
    assert error["category"] == "system" and error["recoverable"] is True, error
    for fragment in fragments:
        assert fragment in error["message"], error
    assert error["actor"] == "w" and error["restarts"] == 1, error

    after = wait_new_child(d, "w", old_pid)
    assert after["restarts"] == 1
    assert not alive(old_pid)
    failure = after["last_failure"]
    assert failure is not None and failure["category"] == "system"
    for fragment in fragments:
        assert fragment in failure["message"], failure
    # Served again by the new child, and the bystander never noticed.
    assert ask_http(d, "w", "pid")[2]["result"] == after["pid"]
    assert ask_http(d, "echo", "echo", value="still")[2] == {"result": "still"}
    assert d.actor("echo")["restarts"] == 0


def kill_on_timeout_daemon(daemon_factory: Any, effects: Path) -> Any:
    return daemon_factory(worker("process", effects=effects, extra="kill_on_timeout = true") + ECHO)


def test_kill_on_timeout_kills_and_restarts(
    daemon_factory: Any, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    effects = tmp_path / "effects"
    d = kill_on_timeout_daemon(daemon_factory, effects)
    old_pid = d.wait_state("w", "running")["pid"]

    started = time.monotonic()
    hanging = pool.submit(d.cli, "ask", "w", "hang", "seconds=30", "--timeout", "1", "--json")
    assert bystander_answers(d, hanging) >= 2
    result = hanging.result(timeout=15)
    assert time.monotonic() - started < 6.0
    assert result.code == 124, (result.stdout, result.stderr)
    assert error_of(result, "timeout")["operation"] == "hang"

    after = wait_new_child(d, "w", old_pid)
    assert not alive(old_pid)
    assert after["restarts"] == 1
    assert "kill_on_timeout" in after["last_failure"]["message"], after["last_failure"]
    assert ask_http(d, "w", "pid")[2]["result"] == after["pid"]
    backoff = [
        line
        for line in d.log().splitlines()
        if "actor=w" in line and "event=state" in line and "to=backoff" in line
    ]
    assert len(backoff) == 1 and "cause=timeout" in backoff[0], backoff
    assert "hang finished" not in lines(effects)


def test_kill_on_timeout_leaves_no_traceback_in_the_log(
    daemon_factory: Any, tmp_path: Path
) -> None:
    d = kill_on_timeout_daemon(daemon_factory, tmp_path / "effects")
    result = d.cli("ask", "w", "hang", "seconds=30", "--timeout", "0.5", "--json")
    assert result.code == 124, (result.stdout, result.stderr)
    d.wait_state("w", "running", timeout=10)
    wait_for(lambda: d.actor("w")["restarts"] == 1, 5, "the restart")
    time.sleep(0.3)  # let the event loop's garbage warnings reach the log
    log = d.log()
    assert "never retrieved" not in log and "Traceback" not in log, log
    stray = [line for line in log.splitlines() if line and not re.match(r"\d{4}-\d\d-\d\dT", line)]
    assert stray == [], stray


# ============================================================== 3. queued asks survive a hard death
def test_queued_asks_survive_a_hard_death(daemon_factory: Any, pool: ThreadPoolExecutor) -> None:
    d = daemon_factory(worker("process") + ECHO)
    old_pid = d.wait_state("w", "running")["pid"]

    dying = pool.submit(ask_http, d, "w", "block_then_exit", 10.0, seconds=1.2, code=3)
    wait_for(lambda: d.actor("w")["in_flight"] == 1, 5, "the blocking op to run")
    queued = [pool.submit(ask_http, d, "w", "pid", 10.0) for _ in range(3)]
    wait_for(lambda: d.actor("w")["mailbox"] == 3, 5, "three asks queued")
    assert not dying.done()

    status, _, body = dying.result(timeout=15)
    assert status >= 500 and body["error"]["category"] == "system", (status, body)
    assert "exited with code 3" in body["error"]["message"]
    pids = set()
    for future in queued:
        status, _, body = future.result(timeout=15)
        assert status == 200, (status, body)
        pids.add(body["result"])
    assert len(pids) == 1 and old_pid not in pids, (pids, old_pid)
    after = d.actor("w")
    assert after["pid"] in pids and after["restarts"] == 1
    assert after["counts"]["ok"] == 3 and after["counts"]["system"] == 1


# ============================================================== 4. output
def test_child_print_goes_to_the_actors_log(daemon_factory: Any) -> None:
    d = daemon_factory(worker("process", name="talker"))
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    result = d.cli("ask", "talker", "say", f"text={marker}", "--json")
    assert result.code == 0 and result.json() == {"result": marker}

    def found() -> list[str]:
        logs = d.cli("logs", "talker", "--json")
        return [line for line in logs.stdout.splitlines() if marker in line]

    hits = wait_for(found, 5, "the printed line in the actor's log")
    assert len(hits) == 1, hits
    record = json.loads(hits[0])
    assert (record["actor"], record["stream"], record["text"]) == ("talker", "stdout", marker)
    assert marker not in d.log()  # the daemon's log: one line per event, not the output


# ============================================================== 5. no orphans
def child_pids(d: Any) -> list[int]:
    for entry in d.status()["actors"]:
        d.wait_state(entry["name"], "running")
    pids = [entry["pid"] for entry in d.status()["actors"] if entry.get("pid")]
    assert pids, d.status()
    return pids


def test_no_children_remain_after_sigterm(
    daemon_factory: Any, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    hooks = tmp_path / "hooks"
    d = daemon_factory(
        worker("process", name="a", hooks=hooks) + worker("process", name="b"),
        "grace_period = 1.0\n",
    )
    pids = child_pids(d)
    assert len(pids) == 2 and all(alive(p) for p in pids)
    idle_pid = d.actor("a")["pid"]
    # One child is stuck in blocking user code past the grace period.
    busy = pool.submit(ask_http, d, "b", "hang", 30.0, seconds=60)
    wait_for(lambda: d.actor("b")["in_flight"] == 1, 5, "the hang to run")
    started = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - started < 10.0
    wait_gone(pids, 5, f"children {pids} to exit after SIGTERM")
    assert f"on_stop {idle_pid}" in lines(hooks)
    status, _, body = busy.result(timeout=10)
    assert status >= 500 and body["error"]["category"] == "runtime", (status, body)


def test_children_exit_when_the_daemon_is_sigkilled(
    daemon_factory: Any, pool: ThreadPoolExecutor
) -> None:
    d = daemon_factory(worker("process", name="a") + worker("process", name="b"))
    pids = child_pids(d)
    # One child is busy in blocking user code when its daemon dies.
    busy = pool.submit(ask_http, d, "b", "hang", 30.0, seconds=60)
    wait_for(lambda: d.actor("b")["in_flight"] == 1, 5, "the hang to run")
    assert d.stop(signal.SIGKILL, timeout=5) == -signal.SIGKILL
    wait_gone(pids, 3, f"children {pids} to exit after the daemon was SIGKILLed")
    try:
        busy.result(timeout=10)
    except OSError:
        pass


# ============================================================== 6. env and cwd
def test_env_and_cwd_from_config_with_process_in_defaults(
    daemon_factory: Any, tmp_path: Path
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    d = daemon_factory(
        f"""
        [defaults]
        isolation = "process"
        min_backoff = 0.05

        [actors.w]
        class = "proc_actors:Worker"
        cwd = "{workdir}"
        env = {{ PULSING_PROC_TEST = "xyz-42", OTHER = "two words" }}
        """
    )
    status = d.wait_state("w", "running")
    assert status["isolation"] == "process"
    assert status["pid"] != daemon_pid(d)
    assert ask_http(d, "w", "pid")[2] == {"result": status["pid"]}
    assert ask_http(d, "w", "env", name="PULSING_PROC_TEST")[2] == {"result": "xyz-42"}
    assert ask_http(d, "w", "env", name="OTHER")[2] == {"result": "two words"}
    # The configured variables are added to the inherited environment, not a replacement.
    assert ask_http(d, "w", "env", name="PATH")[2]["result"] == os.environ["PATH"]
    cwd = ask_http(d, "w", "cwd")[2]["result"]
    assert os.path.realpath(cwd) == os.path.realpath(workdir)
    # The daemon itself did not change directory or gain the variable.
    assert "PULSING_PROC_TEST" not in os.environ


# ============================================================== 7. graceful stop
def test_stop_calls_on_stop_and_leaves_no_child(daemon_factory: Any, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    d = daemon_factory(worker("process", hooks=hooks))
    pid = d.wait_state("w", "running")["pid"]
    assert lines(hooks) == [f"on_start {pid}"]

    stopped = d.cli("stop", "w")
    assert stopped.code == 0, (stopped.stdout, stopped.stderr)
    assert lines(hooks) == [f"on_start {pid}", f"on_stop {pid}"]
    wait_gone([pid], 5, "the child to exit after `pulsing stop`")
    status = d.actor("w")
    assert status["state"] == "stopped" and status.get("pid") is None, status
    assert status["restarts"] == 0

    started = d.cli("start", "w")
    assert started.code == 0, (started.stdout, started.stderr)
    again = d.wait_state("w", "running", timeout=10)
    assert again["pid"] != pid and alive(again["pid"])
    assert ask_http(d, "w", "pid")[2] == {"result": again["pid"]}


# ============================================================== 8. unserializable result
def test_non_json_result_is_a_system_error_and_the_child_lives_on(daemon_factory: Any) -> None:
    d = daemon_factory(worker("process"))
    pid = d.wait_state("w", "running")["pid"]
    result = d.cli("ask", "w", "unserializable", "--json")
    assert result.code == 4, (result.stdout, result.stderr)
    assert "JSON" in error_of(result, "system")["message"]
    status = d.actor("w")
    assert status["state"] == "running" and status["pid"] == pid and status["restarts"] == 0
    ok = d.cli("ask", "w", "hello", "--json")
    assert ok.code == 0 and ok.json()["result"]["calls"] == 1, ok.stdout


def test_asks_sent_ahead_to_the_child_run_in_order_and_expire_unstarted(
    daemon_factory: Any, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """A process actor gets the asks queued behind the running one sent ahead (one round
    trip for many): they run in mailbox order, and one whose deadline passes while it
    waits in the child is taken back and answered as never executed."""
    effects = tmp_path / "effects"
    d = daemon_factory(worker("process", effects=effects))
    ask_http(d, "w", "pid")
    head = pool.submit(ask_http, d, "w", "block", 10.0, seconds=2.0)
    wait_for(lambda: d.actor("w")["in_flight"] == 1, 5, "the first op to run")
    slow = pool.submit(ask_http, d, "w", "block", 10.0, seconds=2.0)
    wait_for(lambda: d.actor("w")["mailbox"] == 1, 5, "the slow op queued")
    late = pool.submit(ask_http, d, "w", "mark", 2.5, tag="late")  # expires while slow runs
    marks = []
    wait_for(lambda: d.actor("w")["mailbox"] == 2, 5, "the late mark queued")
    for i in range(5):  # one at a time: the mailbox order is the order they arrive in
        marks.append(pool.submit(ask_http, d, "w", "mark", 10.0, tag=f"m{i}"))
        wait_for(lambda i=i: d.actor("w")["mailbox"] == 3 + i, 5, f"mark m{i} queued")
    assert head.result(timeout=15)[0] == 200
    status, _, body = late.result(timeout=15)
    assert status == 504, (status, body)
    assert "never executed" in body["error"]["message"] or body["error"].get("executed") is False
    assert slow.result(timeout=15)[0] == 200
    assert [f.result(timeout=15)[0] for f in marks] == [200] * 5
    assert lines(effects) == [f"m{i}" for i in range(5)]  # in order; "late" never ran
