"""Small helpers shared by the end-to-end tests (``tests/e2e`` is on pytest's pythonpath)."""

from __future__ import annotations

import http.client
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What `pulsing status --json` promises for every actor (CONTRACT §6).
ACTOR_FIELDS = {
    "name",
    "state",
    "policy",
    "restarts",
    "max_restarts",
    "operator_restarts",
    "backoff_remaining",
    "mailbox",
    "in_flight",
    "counts",
    "last_error",
    "uptime",
}
COUNT_KEYS = {"ok", "business", "system", "timeout", "unsupported"}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy and return its value; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


def lines(path: str | Path) -> list[str]:
    """The lines of a side-effect file (none when it does not exist yet)."""
    path = Path(path)
    return path.read_text().splitlines() if path.exists() else []


def pulsing_command() -> list[str]:
    """How to run the CLI: the venv's ``pulsing`` script, else ``python -m``."""
    exe = Path(sys.executable).with_name("pulsing")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pulsing_cli.app"]


def raw_request(
    d: Any, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request with exactly these bytes and headers (nothing added, no token)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def bump(path: str | None, text: str = "x") -> None:
    """Actor side: append a line to ``path`` (tests count lines to see what really ran)."""
    if path:
        with open(path, "a") as fh:
            fh.write(text + "\n")
            fh.flush()
