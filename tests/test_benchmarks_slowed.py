"""``python -m benchmarks.slowed``: the daemon under callgrind with its keyed-ask timers
stretched (benchmarks.instructions' keyed variants)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs slowed's main with the daemon's module run replaced by a print of the timers and
# of the command line the daemon would see.
PROBE = """
import runpy, sys
from benchmarks import slowed

def report(name, run_name, alter_sys):
    from pulsing_daemon import handover
    from pulsing_daemon.storage import checkpoint
    print(name, run_name, handover.AHEAD_FOR, checkpoint.INTERVAL, checkpoint.IDLE_AFTER)
    print(" ".join(sys.argv))

runpy.run_module = report
slowed.main(sys.argv[1:])
"""


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
    )


def test_the_timers_are_stretched_and_the_daemon_gets_its_own_arguments() -> None:
    done = probe("50", "--", sys.executable, "-m", "pulsing_daemon", "--config", "x.toml")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.split() == ["pulsing_daemon", "__main__", "1.0", "2.5", "50.0"]
    assert second == "pulsing_daemon --config x.toml"


def test_a_bad_command_line_is_refused() -> None:
    for args in (
        ("0", "--", "python", "-m", "pulsing_daemon"),
        ("50", "--", "python", "x.py"),
        ("fast", "--", "python", "-m", "pulsing_daemon"),
        (),
    ):
        done = probe(*args)
        assert done.returncode != 0
        assert "usage: python -m benchmarks.slowed FACTOR" in done.stderr
