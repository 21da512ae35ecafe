"""Shared fixtures: a real daemon process on a free loopback port, and the real CLI.

``daemon_factory(actors_toml, daemon_toml="")`` writes a config into a tmp dir and
starts ``python -m pulsing_daemon`` on it; ``Daemon.cli(...)`` runs the installed
``pulsing`` command against it as a subprocess. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import pulsing_command
from raytest import ray_cluster, ray_netns  # noqa: F401 - session fixtures of the Ray tests

# A shell runs a command it puts in the background (``pytest &``, ``nohup ... &``) with
# SIGINT ignored, and an ignored signal stays ignored across exec: the CLI processes
# the tests start and interrupt, as a user's Ctrl-C would, would never see it. A
# handled signal is reset to its default at exec, so handling it here gives every
# process the tests start the disposition it has under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TESTS_DIR = Path(__file__).resolve().parent
ACTORS_DIR = TESTS_DIR / "e2e"  # e2e_actors.py lives here
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Daemon:
    config_path: Path
    endpoint: str
    port: int | None
    token: str | None = None
    proc: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ process
    def start(self, wait: bool = True) -> Daemon:
        assert self.log_path is not None
        log = open(self.log_path, "a")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulsing_daemon", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.port is None:
                    if self._unix_health():
                        return
                elif self.http("GET", "/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def _unix_health(self) -> bool:
        path = self.endpoint.removeprefix("unix:")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    # ------------------------------------------------------------------ talking
    def cli(
        self,
        *args: str,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> CliResult:
        full_env = {**os.environ, "PULSING_ENDPOINT": self.endpoint, "NO_COLOR": "1", **(env or {})}
        if self.token:
            full_env.setdefault("PULSING_TOKEN", self.token)
        proc = subprocess.run(
            [*pulsing_command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input,
        )
        if "--debug" not in args:  # the contract: never a Python traceback without --debug
            # (on stderr, where a crash of the CLI would print one; on stdout an actor's
            # traceback is data: `pulsing status ACTOR`, `pulsing logs`)
            assert "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def cli_background(self, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI against this daemon without waiting for it."""
        env = {**os.environ, "PULSING_ENDPOINT": self.endpoint, "NO_COLOR": "1"}
        return subprocess.Popen(
            [*pulsing_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """A plain HTTP request; returns (status, headers, parsed JSON or text)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if self.port is None:
            return self._unix_http(method, path, data, headers or {}, timeout)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, head, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            status, head, payload = err.code, dict(err.headers), err.read()
        try:
            return status, head, json.loads(payload)
        except ValueError:
            return status, head, payload.decode(errors="replace")

    def _unix_http(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], Any]:
        import http.client

        class Connection(http.client.HTTPConnection):
            def connect(conn) -> None:  # conn: the connection; self: the daemon
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.settimeout(timeout)
                conn.sock.connect(self.endpoint.removeprefix("unix:"))

        connection = Connection("localhost", timeout=timeout)
        head = {"Content-Type": "application/json", **headers}
        if self.token:
            head["Authorization"] = f"Bearer {self.token}"
        try:
            connection.request(method, path, body=data, headers=head)
            response = connection.getresponse()
            status, head_out, payload = response.status, dict(response.headers), response.read()
        finally:
            connection.close()
        try:
            return status, head_out, json.loads(payload)
        except ValueError:
            return status, head_out, payload.decode(errors="replace")

    def ask(self, actor: str, op: str, timeout: float | None = None, **kwargs: Any) -> Any:
        headers = {"Pulsing-Timeout": str(timeout)} if timeout else {}
        return self.http("POST", f"/v1/actors/{actor}/ask", {"op": op, "args": kwargs}, headers)

    def status(self, actor: str | None = None) -> dict[str, Any]:
        path = "/v1/status" if actor is None else f"/v1/actors/{actor}"
        return self.http("GET", path)[2]

    def actor(self, name: str) -> dict[str, Any]:
        return self.status(name)["actors"][0]

    def wait_state(self, actor: str, *states: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.actor(actor)
            if last["state"] in states:
                return last
            time.sleep(0.02)
        raise AssertionError(f"{actor} never reached {states}; last status {last}")


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    started: list[Daemon] = []

    def make(
        actors: str = "",
        daemon: str = "",
        *,
        start: bool = True,
        token: str | None = None,
        unix: bool = False,
        name: str = "pulsing.toml",
    ) -> Daemon:
        port = None if unix else free_port()
        listen = f"unix:{tmp_path / 'pulsing.sock'}" if unix else f"127.0.0.1:{port}"
        text = (
            "[daemon]\n"
            f'listen = "{listen}"\n'
            f'state_dir = "{tmp_path / "state"}"\n'
            f'pythonpath = ["{ACTORS_DIR}"]\n'
            + (f'token = "{token}"\n' if token else "")
            + textwrap.dedent(daemon)
            + "\n"
            + textwrap.dedent(actors)
        )
        config_path = tmp_path / name
        config_path.write_text(text)
        endpoint = listen if unix else f"http://127.0.0.1:{port}"
        instance = Daemon(
            config_path, endpoint, port, token=token, log_path=tmp_path / "daemon.log"
        )
        started.append(instance)
        if start:
            instance.start()
        return instance

    yield make
    for instance in started:
        try:
            instance.stop(timeout=10)
        except Exception:
            instance.kill()
