"""Reload (CONTRACT §9) against a real daemon and the real CLI: each kind of change, with a
counter actor whose in-memory count shows which instances survived; a bad file; token
rotation; dry-run; SIGHUP; and a reload in the middle of asks, a stream and a keyed ask."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from e2e_helpers import wait_for

from pulsing_cli.client import Client
from pulsing_daemon.exceptions import PulsingError

ACTORS = """
[actors.keep]
class = "reload_actors:Counter"

[actors.live]
class = "reload_actors:Counter"
max_restarts = 5

[actors.inst]
class = "reload_actors:Counter"
args = { scale = 1 }

[actors.gone]
class = "reload_actors:Counter"
"""


def rewrite(d: Any, old: str, new: str) -> None:
    text = d.config_path.read_text()
    assert old in text, old
    d.config_path.write_text(text.replace(old, new))


def append(d: Any, text: str) -> None:
    d.config_path.write_text(d.config_path.read_text() + text)


def result(d: Any, actor: str, op: str, **args: Any) -> Any:
    status, _, body = d.ask(actor, op, **args)
    assert status == 200, body
    return body["result"]


def bump_all(d: Any, actors: list[str], times: int = 3) -> dict[str, str]:
    """Count up each actor; returns each one's instance id."""
    ids = {}
    for actor in actors:
        for _ in range(times):
            ids[actor] = result(d, actor, "incr")["instance"]
    return ids


def test_each_kind_of_change_with_dry_run_first(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    ids = bump_all(d, ["keep", "live", "inst", "gone"])
    rewrite(d, "max_restarts = 5", "max_restarts = 2\nmailbox_size = 7")
    rewrite(d, "args = { scale = 1 }", "args = { scale = 10 }")
    rewrite(d, '[actors.gone]\nclass = "reload_actors:Counter"\n', "")
    append(d, '\n[actors.fresh]\nclass = "reload_actors:Counter"\n')

    planned = d.cli("reload", "--dry-run", "--json")
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    assert plan["dry_run"] is True
    assert plan["added"] == ["fresh"] and plan["removed"] == ["gone"]
    assert plan["updated"] == ["live"] and plan["restarted"] == ["inst"]
    assert plan["unchanged"] == ["keep"] and plan["needs_daemon_restart"] == []
    assert plan["changes"] == {"live": ["mailbox_size", "max_restarts"], "inst": ["args"]}
    # A dry run changes nothing.
    assert d.actor("live")["max_restarts"] == 5
    assert result(d, "gone", "get")["n"] == 3
    assert d.http("GET", "/v1/actors/fresh")[0] == 404

    done = d.cli("reload")
    assert done.code == 0, done.stderr
    assert "added (created): fresh" in done.stdout
    assert "restarted: inst (args)" in done.stdout

    keep, live, inst = (result(d, a, "get") for a in ("keep", "live", "inst"))
    assert (keep["instance"], keep["n"]) == (ids["keep"], 3)  # untouched
    assert (live["instance"], live["n"]) == (ids["live"], 3)  # same instance
    status = d.actor("live")
    assert status["max_restarts"] == 2 and status["mailbox_size"] == 7
    assert status["restarts"] == 0 and status["operator_restarts"] == 0
    assert inst["instance"] != ids["inst"] and (inst["n"], inst["scale"]) == (0, 10)
    assert d.actor("inst")["operator_restarts"] == 1
    gone = d.cli("ask", "gone", "get")
    assert gone.code == 6 and "unknown actor" in gone.stderr
    assert d.wait_state("fresh", "running")["restarts"] == 0
    # The reload is an event.
    _, _, body = d.http("GET", "/v1/events?follow=0", headers={"Accept": "application/x-ndjson"})
    reloads = [json.loads(x) for x in body.splitlines() if '"reload"' in x]
    assert reloads and reloads[-1]["added"] == ["fresh"] and reloads[-1]["unchanged"] == 1


def test_reloads_one_after_another_see_each_change(daemon_factory: Any) -> None:
    """The reader keeps the tables of the texts it read (state_dir, owner only) and the
    next reload compares against them; a value that only changes type (1 -> 1.0) is a
    change like any other."""
    d = daemon_factory(ACTORS)
    ids = bump_all(d, ["keep", "inst"], times=1)
    cache = d.config_path.parent / "state" / "reload-tables.pickle"
    steps = [
        ("args = { scale = 1 }", "args = { scale = 1.0 }", "restarted", ["inst"]),
        ("max_restarts = 5", "max_restarts = 6", "updated", ["live"]),
        ("max_restarts = 6", "max_restarts = 5", "updated", ["live"]),
    ]
    for old, new, kind, names in steps:
        rewrite(d, old, new)
        done = d.cli("reload", "--json")
        assert done.code == 0, done.stderr
        plan = done.json()
        assert plan[kind] == names, plan
        assert sorted(plan["unchanged"]) == sorted({"keep", "live", "inst", "gone"} - set(names))
        assert cache.stat().st_mode & 0o777 == 0o600
    scale = result(d, "inst", "get")["scale"]
    assert scale == 1.0 and isinstance(scale, float)  # the new args, as written
    assert result(d, "keep", "get")["instance"] == ids["keep"]


def test_a_bad_file_changes_nothing_and_keeps_serving(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    ids = bump_all(d, ["keep"])
    rewrite(d, "max_restarts = 5", "max_restarts = -1\nbogus = 1")
    append(d, '\n[actors.fresh]\nclass = "reload_actors:Counter"\n')

    refused = d.cli("reload")
    assert refused.code == 2
    assert "actors.live.max_restarts: must be >= 0" in refused.stderr
    assert "actors.live.bogus: unknown key" in refused.stderr
    assert "nothing changed" in refused.stderr
    as_json = d.cli("reload", "--json")
    assert as_json.code == 2
    body = as_json.json()
    assert body["valid"] is False and body["changed"] is False
    assert {p["key"] for p in body["problems"]} == {"actors.live.max_restarts", "actors.live.bogus"}
    assert all(p["line"] for p in body["problems"])

    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=reload_failed" in d.log() and "problems=2" in d.log(), what="log")
    assert result(d, "keep", "get") == {"n": 3, "instance": ids["keep"], "scale": 1}
    assert d.actor("live")["max_restarts"] == 5
    assert d.http("GET", "/v1/actors/fresh")[0] == 404
    assert d.proc.poll() is None


def test_sighup_reloads_and_other_signals_never_kill_silently(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    ids = bump_all(d, ["keep"])
    append(d, '\n[actors.fresh]\nclass = "reload_actors:Counter"\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.http("GET", "/v1/actors/fresh")[0] == 200, what="fresh added")
    d.wait_state("fresh", "running")
    wait_for(lambda: "event=reload trigger=SIGHUP" in d.log(), what="reload log line")
    assert "signal=SIGHUP action=reload" in d.log()
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        d.proc.send_signal(sig)
    wait_for(lambda: "signal=SIGUSR2 action=ignored" in d.log(), what="USR2 logged")
    assert result(d, "keep", "get")["instance"] == ids["keep"]
    assert d.proc.poll() is None
    assert d.stop(signal.SIGQUIT) == 0
    assert "signal=SIGQUIT action=stop" in d.log() and "event=exited" in d.log()


def test_token_rotation_applies_at_once(daemon_factory: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    d = daemon_factory(ACTORS, f'token_file = "{token_file}"\n')
    d.token = "first-token"
    ids = bump_all(d, ["keep"])
    token_file.write_text("second-token\n")  # rotate by rewriting the same file
    done = d.cli("reload", "--json")
    assert done.code == 0, done.stderr
    assert done.json()["daemon_updated"] == ["daemon.token"]
    assert "second-token" not in done.stdout + d.log()
    old = d.cli("status")
    assert old.code == 6 and "unauthorized" in old.stderr
    d.token = "second-token"
    assert result(d, "keep", "get")["instance"] == ids["keep"]
    # And to an inline token, via SIGHUP.
    rewrite(d, f'token_file = "{token_file}"', 'token = "third-token"')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.cli("status", env={"PULSING_TOKEN": "third-token"}).code == 0)
    assert d.http("GET", "/v1/status", headers={"Authorization": "Bearer second-token"})[0] == 401


def test_daemon_keys_that_need_a_restart_are_reported_and_kept(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, "grace_period = 10.0\n")
    text = d.config_path.read_text()
    listen = next(line for line in text.splitlines() if line.startswith("listen"))
    rewrite(d, listen, 'listen = "127.0.0.1:1"')
    rewrite(d, "grace_period = 10.0", "grace_period = 2.0")
    plan = d.cli("reload", "--json").json()
    assert plan["needs_daemon_restart"] == ["daemon.listen"]
    assert plan["daemon_updated"] == ["daemon.grace_period"]
    assert plan["unchanged"] == ["keep", "live", "inst", "gone"]
    assert d.cli("status", "--json").json()["daemon"]["listen"] == listen.split('"')[1]
    # Still reported on the next reload, until the daemon restarts.
    assert d.cli("reload", "--json").json()["needs_daemon_restart"] == ["daemon.listen"]


def test_a_removed_actor_finishes_its_message_and_refuses_the_queued_ones(
    daemon_factory: Any,
) -> None:
    d = daemon_factory(ACTORS)
    running = d.cli_background("ask", "gone", "slow", "seconds=2.5", "tag=current")
    wait_for(lambda: d.actor("gone")["in_flight"] == 1, what="slow op running")
    queued = [d.cli_background("ask", "gone", "incr") for _ in range(3)]
    wait_for(lambda: d.actor("gone")["mailbox"] == 3, what="queued asks")
    rewrite(d, '[actors.gone]\nclass = "reload_actors:Counter"\n', "")
    assert d.actor("gone")["in_flight"] == 1  # still on the current message
    status, _, plan = d.http("POST", "/v1/reload", {"dry_run": False})
    assert status == 200 and plan["removed"] == ["gone"], plan
    out, err = running.communicate(timeout=10)
    assert running.returncode == 0 and "current" in out, err
    for proc in queued:
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 6
        assert "removed from the config" in err and "not executed" in err
    assert d.http("GET", "/v1/actors/gone")[0] == 404


def test_reload_under_load_loses_nothing(daemon_factory: Any) -> None:
    """Asks to every kind of actor, a stream and a keyed ask in flight across a reload that
    updates one actor live, restarts another and adds a third: every ask is answered once,
    successfully, and the stream and the keyed ask complete."""
    d = daemon_factory(ACTORS)
    asyncio.run(_under_load(d))


async def _under_load(d: Any) -> None:
    answers: dict[str, list[Any]] = {"keep": [], "live": [], "inst": []}
    errors: list[Any] = []
    sent = {"keep": 0, "live": 0, "inst": 0}
    stop = asyncio.Event()

    async with Client(d.endpoint) as client:

        async def pound(actor: str) -> None:
            while not stop.is_set():
                sent[actor] += 1
                try:
                    answers[actor].append((await client.ask(actor, "incr", timeout=20)).value)
                except PulsingError as exc:
                    errors.append((actor, exc.to_wire()))

        keep_before = (await client.ask("keep", "get")).value["instance"]
        live_before = (await client.ask("live", "get")).value["instance"]
        workers = [asyncio.ensure_future(pound(a)) for a in answers for _ in range(4)]
        keyed = asyncio.ensure_future(
            client.ask("live", "slow", kwargs={"seconds": 0.6, "tag": "k"}, idempotency_key="k-1")
        )
        chunks = []

        async def read_stream() -> None:
            async for chunk in client.actor("keep").stream("ticks", n=40, delay=0.02):
                chunks.append(chunk.seq)

        streaming = asyncio.ensure_future(read_stream())
        await asyncio.sleep(0.3)
        rewrite(d, "max_restarts = 5", "max_restarts = 3")
        rewrite(d, "args = { scale = 1 }", "args = { scale = 2 }")
        append(d, '\n[actors.fresh]\nclass = "reload_actors:Counter"\n')
        plan = await client.reload()
        assert plan["updated"] == ["live"] and plan["restarted"] == ["inst"], plan
        assert plan["added"] == ["fresh"]
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)
        keyed_result = await keyed
        await asyncio.wait_for(streaming, 20)
        assert keyed_result.value["tag"] == "k"
        again = await client.ask(
            "live", "slow", kwargs={"seconds": 0.6, "tag": "k"}, idempotency_key="k-1"
        )
        assert again.replayed and again.value == keyed_result.value
        keep_after = (await client.ask("keep", "get")).value
        live_after = (await client.ask("live", "get")).value

    assert errors == []
    for actor in answers:
        assert len(answers[actor]) == sent[actor] >= 8, (actor, sent)  # one answer per ask
    assert chunks == list(range(40))
    assert keep_after["instance"] == keep_before and keep_after["n"] == len(answers["keep"])
    # live: every incr plus the keyed slow op, on the same instance
    assert live_after["instance"] == live_before and live_after["n"] == len(answers["live"]) + 1
    instances = {a["instance"] for a in answers["inst"]}
    assert len(instances) == 2  # restarted exactly once; no ask lost in between


def test_state_dir_lock_and_restart_after_sigkill(daemon_factory: Any, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    d = daemon_factory(ACTORS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        other_port = sock.getsockname()[1]
    second = subprocess.run(
        [sys.executable, "-m", "pulsing_daemon", "--config", str(d.config_path),
         "--listen", f"127.0.0.1:{other_port}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1, second.stderr
    assert f"pid {d.proc.pid}" in second.stderr and "state_dir" in second.stderr
    assert "stream_orphaned" not in second.stderr
    assert d.actor("keep")["state"] == "running"
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(5)
    started = time.monotonic()
    d.start()  # a stale lock never blocks the restart
    assert time.monotonic() - started < 10
    assert (tmp_path / "state" / "daemon.lock").read_text().strip() == str(d.proc.pid)


def test_notify_hooks_added_by_a_reload_apply_at_once(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(ACTORS)
    out = tmp_path / "hook.json"
    append(
        d,
        f"""
[[notify]]
command = ["sh", "-c", "cat > {out}"]
events = ["reload"]
""",
    )
    done = d.cli("reload", "--json")
    assert done.code == 0, done.stderr
    # The reload's own event already goes to the hook the reload added.
    event = wait_for(lambda: out.exists() and out.read_text() and json.loads(out.read_text()), 10)
    assert event["kind"] == "reload"


def test_a_reload_imports_new_code_from_a_new_pythonpath_entry(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The file is read by a child process: what a new module prints while it is
    imported there does not get in the way, and the daemon imports the new class
    itself from the pythonpath the reload brought."""
    d = daemon_factory(ACTORS)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "noisy_mod.py").write_text(
        "import sys\n"
        "print('hello from import')\n"
        "sys.stdout.flush()\n"
        "class Noisy:\n"
        "    def hi(self) -> str:\n"
        "        return 'hi'\n"
    )
    text = d.config_path.read_text()
    d.config_path.write_text(
        text.replace("pythonpath = [", f'pythonpath = ["{extra}", ', 1)
        + '\n[actors.noisy]\nclass = "noisy_mod:Noisy"\n'
    )
    done = d.cli("reload", "--json")
    assert done.code == 0, done.stderr
    plan = done.json()
    assert plan["added"] == ["noisy"] and plan["daemon_updated"] == ["daemon.pythonpath"]
    assert result(d, "noisy", "hi") == "hi"


def test_a_reload_after_something_the_running_file_names_is_gone(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """The running file names a directory (a process actor's cwd) that is removed along
    with the actor: the running text no longer passes that check, and the reload still
    applies, comparing with what the daemon runs."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    d = daemon_factory(
        ACTORS + f'\n[actors.boxed]\nclass = "reload_actors:Counter"\n'
        f'isolation = "process"\ncwd = "{workdir}"\n'
    )
    ids = bump_all(d, ["keep"])
    text = d.config_path.read_text()
    d.config_path.write_text(text[: text.index("[actors.boxed]")])
    workdir.rmdir()
    done = d.cli("reload", "--json")
    assert done.code == 0, done.stderr
    plan = done.json()
    assert plan["removed"] == ["boxed"] and plan["restarted"] == [] and plan["added"] == []
    assert "keep" in plan["unchanged"]
    assert result(d, "keep", "get") == {"n": 3, "instance": ids["keep"], "scale": 1}
    assert d.http("GET", "/v1/actors/boxed")[0] == 404
