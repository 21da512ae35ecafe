"""The README's snippets run as pasted (a newcomer's first ten minutes).

The Quick start's daemon block runs as one bash script, as a user pastes it, with
one change: the example config is copied to a temporary directory and listens on a
free port (``PULSING_ENDPOINT`` points there), so the test never collides with a
daemon on 7480. The Python snippets run as files against that daemon (the endpoint
in the text replaced the same way), and the tour's commands exit as their comments say.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)


def blocks(language: str) -> list[str]:
    """The fenced blocks of one language, dedented as they are indented in the list."""
    found = []
    for indent, lang, body in FENCE.findall(README):
        if lang == language:
            found.append("".join(line[len(indent) :] + "\n" for line in body.splitlines()))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_python_snippet_compiles_as_a_file() -> None:
    snippets = blocks("python")
    assert len(snippets) >= 2
    for snippet in snippets:
        compile(snippet, "<README snippet>", "exec")  # no `async with` outside a function


def test_quick_start_and_snippets_run_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    example = (ROOT / "pulsing.toml.example").read_text(encoding="utf-8")
    config = tmp_path / "pulsing.toml.example"
    config.write_text(re.sub(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', example))

    quick = next(b for b in blocks("sh") if "pulsing daemon --config" in b)
    assert "pulsing wait" in quick
    python_files = []
    for number, snippet in enumerate(blocks("python")):
        path = tmp_path / f"snippet_{number}.py"
        path.write_text(snippet.replace("http://127.0.0.1:7480", endpoint))
        python_files.append(path)
    tour = [
        line
        for block in blocks("sh")
        if "pulsing ask echo echo hello" in block or "pulsing ask worker work x=0" in block
        for line in block.splitlines()
        if line.strip()
    ]
    checks = []
    for line in tour:
        command, _, comment = line.partition("#")
        expected = re.search(r"exit (\d+)", comment)
        checks.append(
            f"{command.strip()}; code=$?; [ $code -eq {expected[1] if expected else 0} ] || "
            f'{{ echo "README tour: {command.strip()} exited $code" >&2; exit 1; }}'
        )
    script = "\n".join(
        [
            "trap 'kill %1 2>/dev/null; wait' EXIT",
            quick,
            "set -e",
            *(f"{sys.executable} {path}" for path in python_files),
            "set +e",
            *checks,
        ]
    )
    env = {**os.environ, "PULSING_ENDPOINT": endpoint, "NO_COLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # No traceback of the CLI (stderr); `pulsing status worker` shows the actor's, on stdout.
    assert "Traceback" not in result.stderr
    assert "in work" in result.stdout  # the failure's traceback names the raising function
    assert "daemon not reachable" not in result.stderr
    assert "worker" in result.stdout  # pulsing status printed the table
