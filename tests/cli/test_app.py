"""The Typer root: only the invoked command is built, and nothing heavy is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pulsing_cli.app import COMMANDS, build_app, invoked_command


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["ask", "echo", "ping"], "ask"),
        (["--json", "ask", "echo"], "ask"),
        (["-e", "http://h:1", "status"], "status"),
        (["--endpoint", "unix:/s", "--token", "t", "stream", "x", "y"], "stream"),
        (["--endpoint=http://h:1", "restart", "w"], "restart"),
        (["config", "check", "f.toml"], "config"),
        ([], None),
        (["--help"], None),
        (["-h", "ask"], None),
        (["--version"], None),
        (["nosuch"], None),
        (["-e"], None),
    ],
)
def test_invoked_command(argv: list[str], command: str | None) -> None:
    assert invoked_command(argv) == command


def test_build_app_only_registers_the_one_command() -> None:
    names = [info.name for info in build_app("ask").registered_commands]
    assert names == ["ask"]
    full = build_app()
    names = [info.name for info in full.registered_commands]
    names += [group.typer_instance.info.name for group in full.registered_groups]
    assert names == list(COMMANDS)


def test_one_shot_ask_imports_nothing_it_does_not_need() -> None:
    probe = (
        "import json, sys\n"
        "sys.argv = ['pulsing', '-e', 'http://127.0.0.1:9', 'ask', 'echo', 'ping']\n"
        "from pulsing_cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    code, modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 6  # unreachable daemon: a runtime error
    for heavy in ("aiohttp", "rich.console", "pydantic", "pulsing_daemon.cell"):
        assert heavy not in modules
    # One request needs no event loop (oneshot.py): asyncio would bring ssl, logging and
    # concurrent.futures; a str host would bring the idna codec.
    for unneeded in ("asyncio", "ssl", "logging", "encodings.idna", "random"):
        assert unneeded not in modules
    others = {f"pulsing_cli.commands.{name}" for name in ("stream", "status", "daemon")}
    assert not others & set(modules)


@pytest.mark.parametrize("command", [["ask", "w", "op"], ["status"]])
def test_an_endpoint_typed_before_the_verb_wins_over_the_environment(command: list[str]) -> None:
    """``pulsing -e URL VERB`` uses URL even with PULSING_ENDPOINT set; one typed after
    the verb wins over both. Nothing listens on these ports: the error names the one used."""
    from e2e_helpers import pulsing_command

    env = {**os.environ, "PULSING_ENDPOINT": "http://127.0.0.1:1", "NO_COLOR": "1"}

    def used(argv: list[str]) -> str:
        result = subprocess.run(
            [*pulsing_command(), *argv], capture_output=True, text=True, env=env, timeout=30
        )
        assert result.returncode != 0
        return result.stderr

    assert "127.0.0.1:2" in used(["-e", "http://127.0.0.1:2", *command])
    assert "127.0.0.1:3" in used(["-e", "http://127.0.0.1:2", *command, "-e", "http://127.0.0.1:3"])
    assert "127.0.0.1:1" in used(command)
