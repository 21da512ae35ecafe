"""[daemon.ray] address = "local": the daemon starts a private Ray instance, owns it and
leaves nothing behind -- no process after SIGTERM or SIGKILL of the daemon, no file in
$HOME, session files removed, the daemon's own signal handling intact.

Runs in the loopback-only namespace of ``raytest.ray_netns`` like every Ray test.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_for
from raytest import start_in_netns

ACTOR = '[actors.w]\nclass = "proc_actors:Worker"\nisolation = "ray"\nmin_backoff = 0.05\n'


@pytest.fixture
def local_daemon(daemon_factory: Any, ray_netns: Any, tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    d = daemon_factory(
        ACTOR, '\n[daemon.ray]\naddress = "local"\nnamespace = "local"\n', start=False, unix=True
    )
    start_in_netns(d, {**os.environ, "HOME": str(home)})
    d.wait_ready(timeout=60)
    d.wait_state("w", "running", timeout=90)
    d.home = home
    return d


def keeper_of(d: Any) -> tuple[str, int]:
    found = re.search(r"event=ray_local_started .*?dir=(\S+) pid=(\d+)", d.log())
    assert found, d.log()
    return found.group(1), int(found.group(2))


def instance_processes(d: Any) -> list[int]:
    """Pids of the daemon's local Ray instance: the keeper's session, and anything
    whose command line names its session directory."""
    directory, keeper = keeper_of(d)
    target = str(Path(directory).resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if stat[0] == "Z":
            continue
        if int(stat[4]) == keeper or target in cmdline or directory in cmdline:
            pids.append(pid)
    return pids


def private_homes(pids: list[int]) -> set[str]:
    homes = set()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"HOME="):
                homes.add(item[5:].decode())
    return homes


def test_sigterm_stops_the_local_instance_and_nothing_lands_in_home(local_daemon: Any) -> None:
    d = local_daemon
    assert d.ask("w", "hello")[0] == 200
    pids = instance_processes(d)
    assert len(pids) >= 3, pids  # keeper, GCS, raylet, workers ...
    state_ray = d.config_path.parent / "state"
    # Ray's processes run with a private HOME holding the bootstrap config (no cloud probe).
    homes = private_homes([p for p in pids if p not in (d.proc.pid, keeper_of(d)[1])])
    assert homes and all(h.endswith("/home") and h != str(d.home) for h in homes), homes
    assert all((Path(h) / "ray_bootstrap_config.yaml").exists() for h in homes)
    os.kill(d.proc.pid, signal.SIGHUP)  # reload: SIGHUP is still the daemon's too
    wait_for(lambda: "signal=SIGHUP action=reload" in d.log(), 10, "SIGHUP handled")
    assert d.stop(signal.SIGTERM, timeout=60) == 0  # graceful: the signal is still ours
    assert "event=shutdown" in d.log() and "event=ray_local_stopped" in d.log()
    wait_for(lambda: not instance_processes(d), 20, "the local Ray instance to exit")
    session_dir = keeper_of(d)[0]
    assert not Path(session_dir, "session").exists(), "session files left"
    assert not (state_ray / "ray").is_symlink() or not (state_ray / "ray").exists()
    assert list(d.home.rglob("*")) == [], "files written under $HOME"


def test_sigkill_of_the_daemon_takes_the_local_instance_along(local_daemon: Any) -> None:
    d = local_daemon
    assert instance_processes(d)
    d.proc.kill()
    d.proc.wait(10)
    started = time.monotonic()
    wait_for(lambda: not instance_processes(d), 30, "the local Ray instance to exit")
    print(f"local instance gone {time.monotonic() - started:.1f}s after SIGKILL")
    directory = Path(keeper_of(d)[0])
    wait_for(lambda: not (directory / "session").exists(), 10, "session files removed")
    if directory.name.startswith("pulsing-ray-"):  # the short directory under /tmp goes too
        assert not directory.exists()
    assert list(d.home.rglob("*")) == [], "files written under $HOME"
