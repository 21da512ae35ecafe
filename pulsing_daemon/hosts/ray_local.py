"""The private Ray instance of ``[daemon.ray] address = "local"``: ``python -m
pulsing_daemon.hosts.ray_local --dir DIR --port PORT --parent PID``.

A small keeper process between the daemon and Ray. It runs ``ray start --head`` in a
session of its own, so every process of the instance (GCS, raylet, workers, the
reduced dashboard) is in one process group, prints ``ready`` once the instance
answers, then waits. When the daemon asks it to stop (SIGTERM) -- or the daemon dies,
even by SIGKILL (a parent-death signal, and a poll of the parent pid) -- it ends the
whole group (SIGTERM, then SIGKILL after a grace period) and removes the session
files. ``ray stop`` is never used: it would stop every Ray instance on the machine.

Ray runs with what keeps it private (CONTRACT §10): no dashboard, usage stats off and
the usage report URL on loopback, HOME pointed at DIR/home (so nothing lands in the
user's home; it holds the ``ray_bootstrap_config.yaml`` that stops the reduced
dashboard from asking the cloud metadata address which cloud it runs on), the auth
token path and session files under DIR.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STOP_GRACE = 5.0
# The short directory used when state_dir is too deep for Ray's Unix socket paths.
TEMP_PREFIX = "pulsing-ray-"
START_TIMEOUT = 60.0

# The reduced dashboard reads ~/ray_bootstrap_config.yaml; a local provider means "no
# cloud", so it does not probe 169.254.169.254 to find out.
BOOTSTRAP_CONFIG = "cluster_name: pulsing-local\nprovider:\n  type: local\n"


def private_env(directory: Path) -> dict[str, str]:
    """The environment Ray runs with: nothing reported, nothing written outside DIR."""
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text(BOOTSTRAP_CONFIG, encoding="utf-8")
    token = directory / "auth_token"
    if not token.exists():  # Ray reads it (and turns token auth on) rather than writing ~/.ray
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32), encoding="utf-8")
    return {
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "RAY_AUTH_MODE": "token",  # only holders of the token reach the instance
        "RAY_AUTH_TOKEN_PATH": str(directory / "auth_token"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except Exception:
            pass


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``, this one excepted."""
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _end_group(directory: Path) -> None:
    pgid = os.getpgid(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM is not for us
    for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        for pid in _group(pgid):  # one by one: a SIGKILL to the group would end us too
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group(pgid):
            try:  # reap our own children meanwhile
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if not _group(pgid):
            break
    shutil.rmtree(directory / "session", ignore_errors=True)
    if directory.parent == Path(tempfile.gettempdir()) and directory.name.startswith(TEMP_PREFIX):
        shutil.rmtree(directory, ignore_errors=True)  # a short directory of ours: all of it


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsing_daemon.hosts.ray_local")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--parent", required=True, type=int)
    parser.add_argument("--num-cpus", type=int, default=None)
    ns = parser.parse_args()
    _die_with_parent()
    if os.getppid() != ns.parent:
        return 0
    os.setsid()  # one group: the whole instance ends with it
    stopping = {"now": False}

    def on_stop(signum: int, frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    directory: Path = ns.dir
    env = {**os.environ, **private_env(directory)}
    ray = str(Path(sys.executable).with_name("ray"))
    command = [
        ray if os.path.exists(ray) else "ray", "start", "--head",
        "--node-ip-address=127.0.0.1", f"--port={ns.port}",
        "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={directory / 'session'}",
    ]  # fmt: skip
    if ns.num_cpus is not None:
        command.append(f"--num-cpus={ns.num_cpus}")
    try:
        started = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=START_TIMEOUT,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"failed: ray start: {exc}", flush=True)
        _end_group(directory)
        return 1
    if started.returncode != 0:
        tail = " | ".join((started.stderr or started.stdout).strip().splitlines()[-5:])
        print(f"failed: ray start exited with {started.returncode}: {tail}", flush=True)
        _end_group(directory)
        return 1
    print("ready", flush=True)
    while not stopping["now"] and os.getppid() == ns.parent:
        time.sleep(0.2)
    _end_group(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
