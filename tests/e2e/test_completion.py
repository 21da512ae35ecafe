"""Shell completion (CONTRACT §9): scripts for bash, zsh and fish, and actor names, ops
and op arguments completed from a running daemon (nothing when none answers)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from e2e_helpers import pulsing_command

ACTORS = """
[actors.worker-1]
class = "e2e_actors:Echo"

[actors.worker-2]
class = "e2e_actors:Echo"

[actors.producer]
class = "stream_actors:Producer"
"""


def complete(endpoint: str, shell: str, line: str) -> list[str]:
    """What the shell would be offered for ``line`` (the word being completed last)."""
    env = {**os.environ, "PULSING_ENDPOINT": endpoint, "_PULSING_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        words = line.split(" ")
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
    elif shell == "zsh":
        env["_TYPER_COMPLETE_ARGS"] = line
    else:
        env.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION="get-args")
    result = subprocess.run(pulsing_command(), capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result
    return result.stdout.split()


def test_completion_scripts_for_bash_zsh_and_fish() -> None:
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    for shell, marker in (
        ("bash", "complete -o default"),
        ("zsh", "compdef"),
        ("fish", "complete --command pulsing"),
    ):
        result = subprocess.run(
            [*pulsing_command(), "--show-completion", shell],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode == 0 and marker in result.stdout, (shell, result)
        assert "_PULSING_COMPLETE" in result.stdout


def test_actor_names_ops_and_arguments_come_from_the_daemon(daemon_factory: Any) -> None:
    d = daemon_factory(ACTORS)
    assert complete(d.endpoint, "bash", "pulsing ask ") == ["worker-1", "worker-2", "producer"]
    assert complete(d.endpoint, "bash", "pulsing restart worker") == ["worker-1", "worker-2"]
    assert complete(d.endpoint, "bash", "pulsing status p") == ["producer"]
    assert "add" in complete(d.endpoint, "bash", "pulsing ask worker-1 ")
    assert complete(d.endpoint, "bash", "pulsing ask worker-1 a") == ["add", "aecho"]
    assert complete(d.endpoint, "bash", "pulsing ask worker-1 add ") == ["a=", "b="]
    assert complete(d.endpoint, "bash", "pulsing ask worker-1 add a=1 ") == ["b="]
    assert "count" in complete(d.endpoint, "bash", "pulsing stream producer ")
    assert "ping" not in complete(d.endpoint, "bash", "pulsing stream producer ")
    assert complete(d.endpoint, "bash", "pulsing events --actor worker-") == [
        "worker-1",
        "worker-2",
    ]
    assert "worker-1" in " ".join(complete(d.endpoint, "zsh", "pulsing stop w"))
    assert complete(d.endpoint, "fish", "pulsing wait wor") == ["worker-1", "worker-2"]
    assert "streams" in complete(d.endpoint, "bash", "pulsing str")


def test_no_daemon_no_names_and_no_delay() -> None:
    import time

    started = time.monotonic()
    assert complete("http://127.0.0.1:9", "bash", "pulsing ask ") == []
    assert time.monotonic() - started < 5
