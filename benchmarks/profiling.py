"""py-spy sampling of a process under load (``python -m benchmarks --profile``).

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``);
``summarize`` turns them into the top frames by self time and by inclusive time.
Active threads only (py-spy's default), so the event loop idling in ``epoll`` is
not counted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def attach(pid: int, duration: float, out: Path, rate: int = 200) -> subprocess.Popen | None:
    """Start sampling ``pid`` for ``duration`` seconds; None when py-spy is missing."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [*_record(exe, out, rate), "--pid", str(pid), "--duration", str(max(1, round(duration)))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wrap(cmd: list[str], out: Path, rate: int = 200) -> list[str] | None:
    """``cmd`` run under py-spy (records the whole process); None when py-spy is missing."""
    exe = py_spy()
    if exe is None:
        return None
    return [*_record(exe, out, rate), "--", *cmd]


def _record(exe: str, out: Path, rate: int) -> list[str]:
    """``py-spy record`` writing collapsed stacks to ``out``, without pausing the target."""
    return [
        exe,
        "record",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]


# Frames every sample of an asyncio program has: not hot spots.
_BOILERPLATE = (
    "<frozen runpy>",
    "asyncio/runners.py",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop._run_once",
    "Handle._run",
    "<module>",
    "main (pulsing_daemon/server.py",
    "main (pulsing_cli/app.py",
    "Thread._bootstrap",
    "Thread.run",
)


def _short(frame: str, lineno: bool = False) -> str:
    # "func (/long/path/to/pkg/module.py:123)" -> "func (pkg/module.py)" [":123" if lineno]
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":") if where[-1:].isdigit() else (where, "", "")
    parts = path.split("/")
    keep = parts.index("site-packages") + 1 if "site-packages" in parts else -2
    parts = parts[keep:]
    place = "/".join(parts) + (f":{line}" if lineno and line else "")
    return f"{name} ({place})" if where else name


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top frames by self and inclusive share of the samples in a raw py-spy file.

    Functions are aggregated over their lines (``self_lines_pct`` keeps the lines).
    Samples whose stack goes through ``threading``/``concurrent.futures.thread`` are
    the op thread pool; everything else is the event loop's thread.
    """
    self_time: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    try:
        text = raw.read_text(errors="replace")
    except OSError:
        return {"error": f"no profile at {raw}"}
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not raw_frames:
            continue
        in_pool = any("threading.py" in f or "futures/thread.py" in f for f in raw_frames)
        kind = "worker threads" if in_pool else "event loop (main thread)"
        threads[kind] += count
        total += count
        self_time[_short(raw_frames[-1])] += count
        self_lines[_short(raw_frames[-1], lineno=True)] += count
        for frame in {_short(f) for f in raw_frames}:
            if not any(b in frame for b in _BOILERPLATE):
                inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str], n: int = top) -> list[list[Any]]:
        return [[frame, round(100.0 * c / total, 1)] for frame, c in counter.most_common(n)]

    return {
        "samples": total,
        "threads_pct": share(threads),
        "self_pct": share(self_time),
        "self_lines_pct": share(self_lines, 10),
        "inclusive_pct": share(inclusive, top + 10),
    }
