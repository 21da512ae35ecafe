"""`pulsing config check` and daemon start-up on bad configs (CONTRACT §3): every
problem is reported in one pass with file, key path and reason; exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import pulsing_command

REPO = Path(__file__).resolve().parents[2]
ACTORS_DIR = Path(__file__).resolve().parent

# key path -> a word the reason should contain
EXPECTED = {
    "daemon.bogus_daemon_key": "unknown",
    "defaults.restart_policy": "sometimes",
    "actors.a.colour": "unknown",
    "actors.b.min_backoff": "0",
    "actors.c.class": "no_such_module_xyz",
    "actors.d.mailbox_size": "",
    "actors.e.args": "",
}


def pulsing(
    *args: str, cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess:
    command = pulsing_command()
    try:
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`pulsing {' '.join(args)}` did not exit within {timeout}s")
    assert "Traceback" not in result.stdout + result.stderr, (result.stdout, result.stderr)
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""\
[daemon]
listen = "127.0.0.1:{free_port()}"
state_dir = "{tmp_path / "state"}"
pythonpath = ["{ACTORS_DIR}"]
bogus_daemon_key = 1

[defaults]
restart_policy = "sometimes"

[actors.a]
class = "e2e_actors:Recorder"
colour = "blue"

[actors.b]
class = "e2e_actors:Recorder"
restart_policy = "never"
min_backoff = -1.0

[actors.c]
class = "no_such_module_xyz:Thing"
restart_policy = "never"

[actors.d]
class = "e2e_actors:Recorder"
restart_policy = "never"
mailbox_size = "big"

[actors.e]
class = "e2e_actors:Recorder"
restart_policy = "never"
args = {{ nope = 1 }}
"""
    )
    return path


def problem_lines(text: str, path: Path) -> dict[str, str]:
    """key path -> the line reporting it, from `FILE[:LINE]: KEY: REASON` lines."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        for key in EXPECTED:
            if f": {key}:" in line or f" {key}: " in line:
                found[key] = line
    return found


def test_config_check_reports_every_problem(bad_config: Path) -> None:
    result = pulsing("config", "check", str(bad_config))
    assert result.returncode == 2, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    found = problem_lines(output, bad_config)
    assert set(found) == set(EXPECTED), f"missing {set(EXPECTED) - set(found)}:\n{output}"
    for key, word in EXPECTED.items():
        assert str(bad_config) in found[key], found[key]
        assert word in found[key], found[key]
    # line numbers point into the file
    assert f"{bad_config}:12: actors.a.colour" in output, output


def test_config_check_json(bad_config: Path) -> None:
    result = pulsing("config", "check", str(bad_config), "--json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    keys = {problem["key"] for problem in payload["problems"]}
    assert set(EXPECTED) <= keys, keys
    for problem in payload["problems"]:
        assert problem["reason"]
        assert problem["file"] == str(bad_config)


def test_config_check_toml_syntax_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[daemon]\nlisten = "127.0.0.1:7480"\n\n[actors.a\nclass = "x:Y"\n')
    result = pulsing("config", "check", str(broken))
    assert result.returncode == 2, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    assert str(broken) in output
    assert ":4" in output, output  # the line of the broken table header
    assert "TOML" in output


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = pulsing("config", "check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "nope.toml" in result.stdout + result.stderr


def test_daemon_refuses_bad_config_with_exit_2(bad_config: Path) -> None:
    result = pulsing("daemon", "--config", str(bad_config))
    assert result.returncode == 2, (result.stdout, result.stderr)
    found = problem_lines(result.stdout + result.stderr, bad_config)
    assert set(found) == set(EXPECTED), result.stderr

    module = subprocess.run(
        [sys.executable, "-m", "pulsing_daemon", "--config", str(bad_config)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert module.returncode == 2, (module.stdout, module.stderr)
    assert "Traceback" not in module.stderr


def test_daemon_refuses_toml_syntax_error_with_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[daemon\n")
    result = pulsing("daemon", "--config", str(broken))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert str(broken) in result.stderr


def test_example_config_is_valid() -> None:
    example = REPO / "pulsing.toml.example"
    result = pulsing("config", "check", "pulsing.toml.example", cwd=REPO)
    assert result.returncode == 0, (result.stdout, result.stderr)
    result = pulsing("config", "check", str(example), "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    payload = json.loads(result.stdout)
    assert payload["valid"] is True and payload["problems"] == []


def test_good_config_check_then_daemon_start(daemon_factory: Any) -> None:
    d = daemon_factory(
        """
        [actors.rec]
        class = "e2e_actors.Recorder"
        """,
        start=False,
    )
    result = pulsing("config", "check", str(d.config_path))
    assert result.returncode == 0, (result.stdout, result.stderr)
    d.start()
    assert d.cli("ask", "rec", "mark", "tag=dotted").stdout.strip() == "dotted"
