"""render.Output on a (fake) terminal and off it: rich only on a TTY, nothing lost."""

from __future__ import annotations

import io
import json
import re

import pytest

from pulsing_cli.render import Output
from pulsing_daemon.exceptions import PulsingSystemError


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def payload(n: int = 3) -> dict:
    actors = []
    for i in range(n):
        actors.append(
            {
                "name": f"actor{i}",
                "state": "backoff" if i == 0 else "running",
                "policy": "on_failure",
                "restarts": i,
                "max_restarts": 5,
                "restart_window": None,
                "operator_restarts": 0,
                "backoff_remaining": 0.2 if i == 0 else None,
                "mailbox": 2,
                "in_flight": 1,
                "counts": {"ok": 3, "business": 1, "system": 1, "timeout": 0, "unsupported": 0},
                "last_error": {
                    "category": "system",
                    "type": "ZeroDivisionError",
                    "message": "x" * 200,
                    "op": "work",
                    "at": "2026-11-28T00:00:00.000Z",
                },
                "last_failure": None,
                "uptime": 12.5,
            }
        )
    return {"schema": 1, "daemon": {}, "actors": actors}


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "100")


def test_tty_status_fits_the_terminal() -> None:
    out = FakeTTY()
    Output(stdout=out, stderr=FakeTTY()).status(payload())
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    lines = text.splitlines()
    assert "actor0" in text and "3/1/1/0/0" in text
    assert all(len(line) <= 100 for line in lines), max(map(len, lines))


def test_plain_status_keeps_every_column() -> None:
    out = io.StringIO()
    Output(stdout=out, stderr=io.StringIO()).status(payload(1))
    text = out.getvalue()
    assert text.splitlines()[0].split()[:4] == ["ACTOR", "STATE", "POLICY", "RESTARTS"]
    assert len(text.splitlines()[1]) < 200  # the table row cuts it ...
    assert "last error: system ZeroDivisionError: " + "x" * 200 in text  # ... and this shows it
    assert "\x1b[" not in text


def test_error_rendering_tty_and_json() -> None:
    error = PulsingSystemError("boom", recoverable=True).with_actor("w", "backoff", 1, 5)
    err = FakeTTY()
    Output(stdout=FakeTTY(), stderr=err).error(error)
    assert "system error (recoverable)" in err.getvalue()
    assert "restarts 1/5" in err.getvalue()
    out = io.StringIO()
    Output(json_mode=True, stdout=out, stderr=io.StringIO()).error(error)
    assert json.loads(out.getvalue())["error"]["restarts"] == 1


def test_no_color_means_plain_even_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTTY()
    Output(stdout=out, stderr=FakeTTY()).status(payload(1))
    assert "\x1b[" not in out.getvalue()
    assert out.getvalue().startswith("ACTOR")
