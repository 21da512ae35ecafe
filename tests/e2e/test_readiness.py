"""Readiness and health (CONTRACT §9): `pulsing wait` racing a starting daemon, its exit
codes, event=ready in the log, READY=1/STOPPING=1 to $NOTIFY_SOCKET, and a Unix socket
shared with a group (socket_group/socket_mode)."""

from __future__ import annotations

import grp
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

ACTORS = """
[actors.slowstart]
class = "e2e_actors:Hooks"

[actors.fragile]
class = "e2e_actors:Recorder"
restart_policy = "never"

[actors.manual]
class = "e2e_actors:Recorder"
autostart = false
"""


def test_wait_races_a_starting_daemon(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS, start=False)
    waiter = d.cli_background("wait", "--timeout", "30")
    time.sleep(0.5)  # the CLI is polling a daemon that is not there yet
    assert waiter.poll() is None
    d.start(wait=False)
    assert waiter.wait(30) == 0, waiter.communicate()
    # Ready means ready: the first ask right after succeeds (the README's Quick start).
    assert d.cli("ask", "fragile", "mark").code == 0
    assert "event=ready" in d.log()
    assert d.http("GET", "/v1/health")[2]["ready"] is True


def test_wait_exit_codes(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    assert d.cli("wait", "fragile", "--json").json()["ready"] is True
    assert d.cli("wait", "nobody").code == 6
    timed_out = d.cli("wait", "manual", "--timeout", "0.3")
    assert timed_out.code == 124 and "manual is stopped" in timed_out.stderr
    d.ask("fragile", "crash")
    d.wait_state("fragile", "failed")
    failed = d.cli("wait", "--timeout", "5")
    assert failed.code == 4 and "fragile" in failed.stderr


def test_ready_and_stopping_reach_notify_socket(daemon_factory: Any, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(15)
    try:
        d = daemon_factory(ACTORS, start=False)
        d.env["NOTIFY_SOCKET"] = address
        d.start()
        assert listener.recv(256) == b"READY=1"
        assert d.stop() == 0
        assert listener.recv(256) == b"STOPPING=1"
    finally:
        listener.close()


def test_socket_group_and_mode(daemon_factory: Any) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    d = daemon_factory(ACTORS, f'socket_group = "{group}"\nsocket_mode = 0o660\n', unix=True)
    path = Path(d.endpoint.removeprefix("unix:"))
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == os.getgid()
    assert d.cli("status", "--check").code == 0
