"""`pulsing daemon` itself: JSON log lines, bad --log-level, clean exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

from e2e_helpers import pulsing_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_daemon_json_logs_and_sigterm(tmp_path) -> None:
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
    )
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
