"""A newcomer's first ten minutes (issue 14, item 7): the stumbles found by trying the
README on a fresh clone, each against the real CLI (and a real daemon where it matters)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

from e2e_helpers import pulsing_command

ACTORS = """
[actors.a-worker-with-a-long-name]
class = "e2e_actors:Recorder"
restart_policy = "never"

[actors.steady]
class = "e2e_actors:Recorder"
"""


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*pulsing_command(), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1", **env},
    )


def test_a_bad_endpoint_is_a_usage_error_with_a_fitting_hint() -> None:
    for args, env in (
        (["-e", "foo://bar", "status"], {}),
        (["wait"], {"PULSING_ENDPOINT": "x:y:z"}),
    ):
        result = cli(*args, **env)
        assert result.returncode == 2, result
        assert "bad endpoint" in result.stderr and "http://HOST:PORT" in result.stderr
        assert "pulsing status" not in result.stderr and "Traceback" not in result.stderr


def test_deep_json_is_a_clean_usage_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for args in (["--data", f"@{deep}"], ["x=" + "[" * 20_000 + "]" * 20_000]):
        result = cli("-e", "http://127.0.0.1:9", "ask", "a", "op", *args)
        assert result.returncode == 2, result
        assert "nested too deeply" in result.stderr
        assert "internal error" not in result.stderr and "RecursionError" not in result.stderr


def on_a_terminal(args: list[str], endpoint: str, columns: int = 80) -> str:
    """Run the CLI on a pseudo-terminal ``columns`` wide; its screen text."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "PULSING_ENDPOINT": endpoint, "COLUMNS": str(columns), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*pulsing_command(), *args], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        output += data
    proc.wait(30)
    os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode()).replace("\r", "")


def test_status_is_readable_at_80_columns(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    d.ask("a-worker-with-a-long-name", "crash", message="a long message " * 10)
    d.wait_state("a-worker-with-a-long-name", "failed")
    screen = on_a_terminal(["status"], d.endpoint)
    table = [line for line in screen.splitlines() if line.strip() and not line.startswith("(")]
    assert all(len(line) <= 80 for line in table), screen
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["a-worker-with-a-long-name"][1] == "failed"
    assert rows["steady"][1] == "running"
    assert "RESTARTS" in table[0] and "ACTOR" in table[0]
    narrow = on_a_terminal(["status"], d.endpoint, columns=50)
    assert "failed" in narrow and "hidden at 50 columns" in narrow


def test_a_closed_pipe_ends_any_command_quietly(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    # A follower that has printed its one line and has nothing more to say still ends
    # when its reader goes away (it would otherwise wait for its next write).
    for command in (
        "status --watch --interval 0.1",
        "events -f --lines 1",
        "logs steady -f -n 1",
    ):
        started = time.monotonic()
        result = subprocess.run(
            f"{' '.join(pulsing_command())} {command} | head -1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PULSING_ENDPOINT": d.endpoint, "NO_COLOR": "1"},
        )
        assert result.returncode == 0 and result.stdout.strip(), result
        assert result.stderr == "", result.stderr
        assert time.monotonic() - started < 10


def test_pulsing_man_reads_the_pages_from_this_install() -> None:
    page = cli("man", "status")
    assert page.returncode == 0 and "pulsing-status" in page.stdout and "--check" in page.stdout
    assert cli("man", "pulsing.toml").stdout.count("[[notify]]") >= 1
    path = cli("man", "--path", "events")
    assert path.returncode == 0 and Path(path.stdout.strip()).is_file()
    assert "pulsing-streams.1" in cli("man", "--list").stdout
    missing = cli("man", "nonsense")
    assert missing.returncode == 2 and "no man page" in missing.stderr


def test_version_names_the_distribution() -> None:
    assert "(pulsing-supervisor)" in cli("--version").stdout
