"""Processes, ports, /proc readings and statistics shared by the benchmarks.

Everything runs on 127.0.0.1 with free ports and temporary directories; every wait
is bounded; every process started here is stopped by the same object (SIGTERM, then
SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
PULSING = str(Path(sys.executable).with_name("pulsing"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PYCACHE = BENCH_DIR / "results" / "pycache"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PULSING_TOKEN", None)
    env["NO_COLOR"] = "1"
    # Measure what users run: with bytecode caches. The project is installed editable,
    # so its .pyc files would land in the source tree; keep them under results/ instead.
    # (This environment sets PYTHONDONTWRITEBYTECODE, which makes every CLI start-up
    # compile pulsing_cli from source.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- /proc
def rss_kb(pid: int | None) -> int | None:
    """VmRSS of a process, in KiB (None when it is gone, or there is no pid)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids.extend(int(x) for x in fh.read().split())
    except OSError:
        pass
    return kids


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time of a process (and, optionally, its live children)."""
    total = 0.0
    pids = [pid, *(_children(pid) if children else [])]
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return total


# ---------------------------------------------------------------------- HTTP (control only)
def http_json(
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


# ---------------------------------------------------------------------- processes
class Proc:
    """A child process with its output in a log file; stop() is always safe."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        # What the command runs under (e.g. valgrind: benchmarks/instructions.py).
        self.launcher: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.launcher, *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.workdir),
                env=env or child_env(),
                preexec_fn=_raise_nofile,
            )

    def stop(self, grace: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class BareServer(Proc):
    """The aiohttp baseline (``mode="aiohttp"``) or the canned ceiling server."""

    def __init__(self, workdir: Path, mode: str = "aiohttp", loop: str = "asyncio") -> None:
        super().__init__(f"bare-{mode}" + ("" if loop == "asyncio" else f"-{loop}"), workdir)
        self.mode = mode
        self.loop = loop
        self.port = free_port()

    def start(self, timeout: float = 20.0) -> BareServer:
        self.spawn(
            [PYTHON, "-m", "benchmarks.bare_server", "--port", str(self.port), "--mode", self.mode,
             "--loop", self.loop]
        )  # fmt: skip
        assert self.proc is not None
        wait_port(self.port, timeout, self.proc)
        return self


class FloorServer(Proc):
    """The floor servers (``benchmarks/floors.py``): the least code on this stack that
    gives a guarantee, with no pulsing code in it. ``ray_address``: the Ray floor only."""

    def __init__(self, workdir: Path, ray_address: str | None = None) -> None:
        super().__init__("floor-ray" if ray_address else "floors", workdir)
        self.ray_address = ray_address
        self.port = free_port()

    def start(self, timeout: float = 20.0) -> FloorServer:
        cmd = [PYTHON, "-m", "benchmarks.floors", "--port", str(self.port)]
        cmd += ["--state-dir", str(self.workdir / "floors-state")]
        if self.ray_address:
            cmd += ["--ray-address", self.ray_address]
        self.spawn(cmd)
        assert self.proc is not None
        wait_port(self.port, timeout, self.proc)
        return self


class Daemon(Proc):
    """``python -m pulsing_daemon --config FILE`` on a free port, in its own temp dir."""

    def __init__(
        self,
        workdir: Path,
        actors_toml: str,
        daemon_toml: str = "",
        name: str = "daemon",
        log_level: str = "info",
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, workdir)
        self.env = env  # extra environment variables of the daemon
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_level = log_level
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(
            "[daemon]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            f'state_dir = "{workdir / (name + "-state")}"\n'
            f'pythonpath = ["{BENCH_DIR}"]\n'
            f"{daemon_toml}\n"
            f"{actors_toml}\n"
        )

    def start(self, timeout: float = 30.0, wait_running: bool = True) -> Daemon:
        self.started_at = time.perf_counter()
        self.spawn(
            [
                PYTHON,
                "-m",
                "pulsing_daemon",
                "--config",
                str(self.config_path),
                "--log-level",
                self.log_level,
            ],
            child_env(**self.env) if self.env else None,
        )
        self.wait_health(timeout)
        if wait_running:
            self.wait_running(timeout)
        return self

    def url(self, path: str) -> str:
        return self.endpoint + path

    def wait_health(self, timeout: float) -> float:
        """Seconds from spawn until /v1/health answers ok."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = http_json(self.url("/v1/health"), timeout=1.0)
                if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.01)
        raise TimeoutError(f"daemon not healthy after {timeout}s:\n{self.log_tail()}")

    def status(self) -> dict[str, Any]:
        _, body = http_json(self.url("/v1/status"), timeout=30.0)
        return body

    def wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            actors = self.status().get("actors", [])
            pending = [a["name"] for a in actors if a["state"] not in ("running", "stopped")]
            if not pending:
                return
            time.sleep(0.05)
        raise TimeoutError(f"actors not running after {timeout}s: {pending[:5]}")


def run_loadgen(spec: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Run the load generator in its own process and return its JSON report."""
    spec = {"host": "127.0.0.1", **spec}
    proc = subprocess.run(
        [PYTHON, "-m", "benchmarks.loadgen", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        env=child_env(),
        preexec_fn=_raise_nofile,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_loadgen(spec: dict[str, Any]) -> subprocess.Popen:
    spec = {"host": "127.0.0.1", **spec}
    return subprocess.Popen(
        [PYTHON, "-m", "benchmarks.loadgen", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
        env=child_env(),
        preexec_fn=_raise_nofile,
    )


def finish_loadgen(proc: subprocess.Popen, timeout: float = 120.0) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def timed(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
    timeout: float = 120.0,
) -> tuple[float, int]:
    """Whole-process wall time (spawn to exit) of a command, and its exit code."""
    wall, _, code = timed_usage(cmd, env=env, stdout=stdout, timeout=timeout)
    return wall, code


def timed_usage(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
    timeout: float = 120.0,
) -> tuple[float, float, int]:
    """Wall time (spawn to exit), CPU time (user + system) and exit code of a command.

    The bound is a watchdog that kills the process, not ``wait(timeout=...)``: that
    polls with sleeps growing to 50 ms and added up to 45 ms to a 120 ms command.
    The CPU time comes from ``wait4`` and is far steadier than the wall time on a
    shared machine.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env or child_env(),
        cwd=str(REPO),
    )
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - t0
    code = proc.returncode = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGKILL and wall >= timeout:
        raise subprocess.TimeoutExpired(cmd, timeout)
    return wall, usage.ru_utime + usage.ru_stime, code


class Workdir:
    """A temporary directory for configs, state and logs (kept with ``--keep``)."""

    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.keep = keep
        self.path = Path(tempfile.mkdtemp(prefix=f"pulsing-bench-{prefix}-"))

    def cleanup(self) -> None:
        if not self.keep:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------- statistics
def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> dict[str, float | None]:
    """min / median / max of per-round figures (the noise between rounds)."""
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def make_loopback_netns(name: str) -> None:
    """A network namespace with only loopback, made by ``unshare -n`` (as root) and kept
    at /run/netns/NAME, so ``ip netns exec NAME ...`` runs commands in it. Everything
    that starts Ray (tests, benchmarks) runs there: no packet can leave the machine
    (CONTRACT §10: Ray probes the cloud metadata address otherwise)."""
    holder = Path("/run/netns") / name
    holder.parent.mkdir(parents=True, exist_ok=True)
    holder.touch()
    subprocess.run(["unshare", f"--net={holder}", "true"], check=True, timeout=10)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)


def remove_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], timeout=10)
