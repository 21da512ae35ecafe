"""Instructions per request, counted by valgrind's callgrind: ``python -m benchmarks.instructions``.

On a shared 2-vCPU VM, req/s and CPU time per request move by +-20% between identical
runs; a change worth 1-4% of an ask cannot be seen there. The number of instructions
the server executes per request can: callgrind counts them (user space only: the
kernel's share of a request, its syscalls, is not in it) to within ~0.1% from run to
run. So this is the A/B tool for small changes on the ask path, not a target: run it on
two checkouts and compare (``cd OTHER_TREE && python -m benchmarks.instructions``).

Each variant's server starts under callgrind with instrumentation off; a load of 64
connections warms it up; then instrumentation is switched on for exactly one load
generator run (every response of it counted, warm-up and tail included) and off again.
Under callgrind the server runs ~50x slower, so the load is light and the loop handles
fewer requests per iteration than at full speed; the same holds for both sides of an A/B.

Keyed asks are left out: their hand-over batches (``handover.AHEAD_FOR``) and checkpoint
passes (``storage.checkpoint.INTERVAL``) are timed in wall-clock seconds, which the
slowdown turns into far more revocations and checkpoints per ask than at full speed.

Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness, suites

VARIANTS = {
    # name: (op, actor) on the daemon; "bare" is the aiohttp echo on uvloop
    "bare": None,
    "async": ("aecho", "trivial"),
    "sync": ("echo", "trivial"),
    "nonblocking": ("necho", "trivial"),
}


def _valgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def _callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _total_instructions(out: Path) -> int:
    """The dump's instruction count (the largest of the files' totals: one per dump)."""
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def measure(name: str, seconds: float) -> dict[str, Any]:
    """Instructions per request of one variant's server."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pulsing-instr-{name}-"))
    out = workdir / "callgrind.out"
    target = VARIANTS[name]
    server: harness.Proc
    if target is None:
        server = harness.BareServer(workdir, loop="uvloop")
        cmd = [harness.PYTHON, "-m", "benchmarks.bare_server", "--port", str(server.port)]
        cmd += ["--mode", "aiohttp", "--loop", "uvloop"]
        spec = suites._ask_spec(server.port, "/echo", "echo")
    else:
        server = harness.Daemon(workdir, suites.ASK_ACTORS)
        cmd = [harness.PYTHON, "-m", "pulsing_daemon", "--config", str(server.config_path)]
        spec = suites._ask_spec(server.port, f"/v1/actors/{target[1]}/ask", target[0])
    try:
        server.spawn([*_valgrind(out), *cmd])
        assert server.proc is not None
        harness.wait_port(server.port, 600, server.proc)
        if isinstance(server, harness.Daemon):
            server.wait_running(600)
        load = {**spec, "mode": "throughput", "conns": 64, "sample_every": 16}
        harness.run_loadgen({**load, "warmup": 0.5, "duration": 2.0})
        _callgrind_control(server.pid, "-i", "on")
        result = harness.run_loadgen({**load, "warmup": 0.1, "duration": seconds})
        _callgrind_control(server.pid, "-i", "off")
        _callgrind_control(server.pid, "-d")
        time.sleep(0.5)
        requests = result["total_requests"]
        if result["errors"] or not requests:
            raise RuntimeError(f"{name}: {result['errors']} errors, {requests} requests")
        return {
            "requests": requests,
            "instructions_per_request": _total_instructions(out) / requests,
        }
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Instructions per request of the ask path under callgrind (an A/B tool).",
    )
    parser.add_argument(
        "variants", nargs="*", metavar="VARIANT", help=f"of {', '.join(VARIANTS)} (default: all)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="instrumented load per variant")
    parser.add_argument("--json", type=Path, help="also write the results here")
    ns = parser.parse_args(argv)
    unknown = [name for name in ns.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    ns.variants = ns.variants or list(VARIANTS)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    results = {name: measure(name, ns.seconds) for name in ns.variants}
    bare = results.get("bare", {}).get("instructions_per_request")
    for name, row in results.items():
        per = row["instructions_per_request"]
        ratio = f"  {per / bare:.3f}x bare" if bare and name != "bare" else ""
        print(
            f"{name:12} {per / 1000:9.1f}k instructions/request ({row['requests']} requests){ratio}"
        )
    if ns.json is not None:
        ns.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
