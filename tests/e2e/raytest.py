"""Fixtures for the Ray tests: every process that runs Ray runs in a loopback-only
network namespace.

``ray_netns`` (session) creates a named namespace (``unshare -n``, kept at
/run/netns/NAME: ``benchmarks.harness.make_loopback_netns``) holding only
``lo``, brought up. Everything that may start or talk to Ray -- ``ray start``, the
daemons under test, benchmark drivers -- is launched through :func:`in_netns`, which
prefixes ``ip netns exec NAME``; the daemons listen on Unix sockets, which work across
network namespaces, so the test process and the CLI reach them from outside. The test
process itself never connects to Ray (``ray.init`` is made to raise in it).

``ray_cluster`` (session) is one Ray head for the whole run (~6 s, ~1 GB), with a
private HOME and usage reporting off; ``ray_daemon`` starts real daemons that join it.
The tests are skipped only where Ray cannot be imported and ``CI`` is unset; in CI a
missing Ray fails them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import make_loopback_netns, remove_netns

TESTS_DIR = Path(__file__).resolve().parent
RAY_START_TIMEOUT = 60.0


def ray_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    """Skip without Ray -- except under CI, where the test extra must have installed it."""
    if ray_importable():
        return
    if os.environ.get("CI"):
        pytest.fail("Ray is not installed but CI is set: `pip install -e '.[test]'` must bring it")
    pytest.skip("Ray is not installed (pip install 'pulsing-supervisor[ray]')")


def can_make_netns() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("ip") and shutil.which("unshare"))


@dataclass
class Netns:
    name: str

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10
        ).stdout
        return [int(pid) for pid in out.split()]


_NETNS: Netns | None = None


def in_netns(command: list[str]) -> list[str]:
    """``command`` run inside the test namespace (the only way tests start Ray)."""
    assert _NETNS is not None, "use the ray_netns fixture (through ray_cluster/ray_daemon)"
    return [*_NETNS.prefix(), *command]


@pytest.fixture(scope="session")
def ray_netns() -> Iterator[Netns]:
    global _NETNS
    require_ray()
    if not can_make_netns():
        if os.environ.get("CI"):
            pytest.fail("the Ray tests need root, unshare and iproute2 to isolate Ray")
        pytest.skip("the Ray tests need root, unshare and iproute2 to isolate Ray")
    netns = Netns(f"pulsing-test-{os.getpid()}")
    make_loopback_netns(netns.name)  # unshare -n, kept at /run/netns/NAME
    try:
        links = subprocess.run(
            [*netns.prefix(), "ip", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0], links  # loopback, nothing else
        _NETNS = netns
        _forbid_ray_init_here()
        yield netns
    finally:
        _NETNS = None
        for pid in netns.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        remove_netns(netns.name)


def _forbid_ray_init_here() -> None:
    """The test process is outside the namespace: it must never start or join Ray."""
    if "ray" in sys.modules:
        ray = sys.modules["ray"]

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("ray.init in the test process (outside the namespace)")

        ray.init = refuse


def ray_env(home: Path) -> dict[str, str]:
    """What every Ray process of the tests runs with: a private HOME, nothing reported,
    node death noticed within about a second."""
    return {
        **os.environ,
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(home.parent / "auth_token"),
        "RAY_health_check_period_ms": "300",
        "RAY_health_check_timeout_ms": "300",
        "RAY_health_check_failure_threshold": "3",
        "RAY_health_check_initial_delay_ms": "0",
    }


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    home: Path
    env: dict[str, str]
    pgids: list[int]

    def start_node(self, *extra: str) -> subprocess.Popen[str]:
        """Another raylet in the namespace, joining the head (its own process group)."""
        proc = subprocess.Popen(
            in_netns(
                [ray_binary(), "start", f"--address={self.address}", "--block",
                 "--node-ip-address=127.0.0.1", *extra]
            ),
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.pgids.append(proc.pid)
        return proc


def ray_binary() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


@pytest.fixture(scope="session")
def ray_cluster(ray_netns: Netns) -> Iterator[RayCluster]:
    # Short paths: Ray's Unix sockets live below the temp dir (107-byte limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="prt-"))
    home = temp_dir / "home"
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")
    (temp_dir / "auth_token").write_text(os.urandom(16).hex())
    env = ray_env(home)
    port = 6379 + os.getpid() % 1000
    started = subprocess.run(
        in_netns(
            [ray_binary(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}/s",
             "--num-cpus=16"]
        ),
        env=env, capture_output=True, text=True, timeout=RAY_START_TIMEOUT,
        start_new_session=True,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir, home, env, [])
    try:
        yield cluster
    finally:
        for pid in ray_netns.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- daemons


@dataclass
class RayDaemon:
    """A real daemon in the namespace, on a Unix socket the tests reach from outside."""

    daemon: Any  # conftest.Daemon

    def __getattr__(self, name: str) -> Any:
        return getattr(self.daemon, name)


def start_in_netns(daemon: Any, env: dict[str, str]) -> None:
    """Start ``daemon`` (a conftest.Daemon) inside the namespace and wait for it."""
    log = open(daemon.log_path, "a")  # noqa: SIM115 - handed to the child
    daemon.proc = subprocess.Popen(
        in_netns([sys.executable, "-m", "pulsing_daemon", "--config", str(daemon.config_path)]),
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    log.close()


def write_config(directory: Path, address: str, actors: str, daemon: str = "") -> tuple[Path, str]:
    socket_path = directory / "d.sock"
    text = (
        "[daemon]\n"
        f'listen = "unix:{socket_path}"\n'
        f'state_dir = "{directory / "st"}"\n'
        f'pythonpath = ["{TESTS_DIR}"]\n'
        + textwrap.dedent(daemon)
        + f'\n[daemon.ray]\naddress = "{address}"\nnamespace = "t{directory.name[-8:]}"\n'
        + textwrap.dedent(actors)
    )
    path = directory / "pulsing.toml"
    path.write_text(text)
    return path, f"unix:{socket_path}"


RayDaemonFactory = Callable[..., Any]


def short_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="prd-"))


def ray_worker_pids(namespace_pids: list[int]) -> list[int]:
    """Pids of Ray worker processes (``ray::...``) among ``namespace_pids``."""
    found = []
    for pid in namespace_pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
            found.append(pid)
    return found
