"""`pulsing daemon` itself: JSON log lines, bad --log-level, clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from e2e_helpers import pulsing_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(tmp_path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`pulsing daemon --json` on a free port with one echo actor: (process, port)."""
    port = free_port()
    config = tmp_path / "p.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:{port}"\nstate_dir = "{tmp_path / "s"}"\n'
        '[actors.echo]\nclass = "pulsing_daemon.demo:Echo"\n'
    )
    proc = subprocess.Popen(
        [*pulsing_command(), "daemon", "--config", str(config), "--json"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return proc, port


def test_daemon_json_logs_and_sigterm(tmp_path) -> None:
    proc, _ = _spawn(tmp_path)
    try:
        deadline = time.monotonic() + 15
        lines = []
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1].get("event") == "listening":
                break
        assert any(entry.get("event") == "listening" for entry in lines), lines
        assert any(entry.get("actor") == "echo" for entry in lines), lines
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert all(json.loads(line) for line in rest.splitlines() if line.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_daemon_rejects_bad_log_level(tmp_path) -> None:
    result = subprocess.run(
        [*pulsing_command(), "daemon", "--config", "x.toml", "--log-level", "loud"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--log-level" in result.stderr
    assert "Traceback" not in result.stderr


def _listening_line(tmp_path, env: dict[str, str]) -> dict:
    """Start a daemon with ``env`` added, ask it once, stop it: its ``listening`` line."""
    proc, port = _spawn(tmp_path, env)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 15
        listening = None
        while listening is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            entry = json.loads(line)
            if entry.get("event") == "listening":
                listening = entry
        assert listening is not None
        asked = subprocess.run(
            [*pulsing_command(), "ask", "echo", "echo", "text=hi", "--json",
             "--endpoint", f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert "hi" in asked.stdout
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert proc.returncode == 0
        return listening
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_daemon_runs_on_uvloop_where_installed(tmp_path) -> None:
    pytest.importorskip("uvloop")
    assert _listening_line(tmp_path, {})["loop"] == "uvloop"


def test_event_loop_switch_picks_asyncio(tmp_path) -> None:
    listening = _listening_line(tmp_path, {"PULSING_EVENT_LOOP": "asyncio"})
    assert listening["loop"] == "asyncio"


def test_unknown_event_loop_stops_the_daemon_before_it_starts(tmp_path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:{free_port()}"\nstate_dir = "{tmp_path / "s"}"\n'
    )
    result = subprocess.run(
        [*pulsing_command(), "daemon", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PULSING_EVENT_LOOP": "tokio"},
    )
    assert result.returncode == 2
    assert "PULSING_EVENT_LOOP='tokio' is not a known event loop" in result.stderr
    assert "Traceback" not in result.stderr
