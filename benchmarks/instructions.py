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

Variants: the bare echo and the async, sync and ``@nonblocking`` asks of
``ask_throughput`` (the default), and ``actor_logs``' ops with the daemon capturing the
actor's output and without (``quiet_on`` / ``quiet_off``, ``logged_*``, ``printed_*``;
``logged_floor``: a logging call's record to a handler that does nothing; ``typed_on``:
the annotated op, its argument checked, against ``quiet_on``). ``followers_on`` and
``followers_off``: ``event_followers``' async asks with 100 followers of the event log
and without, an actor crashing every ``EVENT_EVERY`` seconds times the slowdown in both
(so about as many asks per event as at full speed), counted over three such periods.
An ``*_on`` variant is compared with its ``*_off`` one, the others with the bare echo.

Keyed asks (``sync_idem``, ``async_idem``: a new ``Idempotency-Key`` per ask, compared
with the same ask without one) count SQLite's work on the loop and the checkpointer's
thread too. Their hand-over batches (``handover.AHEAD_FOR``) and checkpoint passes
(``storage.checkpoint.INTERVAL``) are timed in wall-clock seconds, which the slowdown
would turn into far more revocations and checkpoints per ask than at full speed, so
their daemon runs with those timers stretched by the slowdown (``benchmarks.slowed``).

Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness, suites

_LOGS_OFF = {"PULSING_LOG_CAPTURE": "0"}

# name: (actors of the daemon's config, actor, op, environment); "bare" is the aiohttp
# echo on uvloop. The *_on / *_off pairs are actor_logs' rows: capture on and off.
VARIANTS: dict[str, tuple[str, str, str, dict[str, str]] | None] = {
    "bare": None,
    "async": (suites.ASK_ACTORS, "trivial", "aecho", {}),
    "sync": (suites.ASK_ACTORS, "trivial", "echo", {}),
    "nonblocking": (suites.ASK_ACTORS, "trivial", "necho", {}),
    "sync_idem": (suites.ASK_ACTORS, "trivial", "echo", {}),
    "async_idem": (suites.ASK_ACTORS, "trivial", "aecho", {}),
    "quiet_on": (suites.LOG_ACTORS, "chatty", "quiet", {}),
    "quiet_off": (suites.LOG_ACTORS, "chatty", "quiet", _LOGS_OFF),
    "logged_on": (suites.LOG_ACTORS, "chatty", "logged", {}),
    "logged_off": (suites.LOG_ACTORS, "chatty", "logged", _LOGS_OFF),
    # the record Python's logging makes, to a handler that does nothing
    "logged_floor": (suites.LOG_ACTORS, "chatty", "logged_floor", _LOGS_OFF),
    "printed_on": (suites.LOG_ACTORS, "chatty", "printed", {}),
    "printed_off": (suites.LOG_ACTORS, "chatty", "printed", _LOGS_OFF),
    # actor_logs' annotated op (its argument checked)
    "typed_on": (suites.LOG_ACTORS, "chatty", "typed", {}),
    # event_followers' row: async asks while an actor crashes now and then (its
    # events), with 100 followers of the event log and without
    "followers_on": (suites.EVENT_ACTORS, "trivial", "aecho", {}),
    "followers_off": (suites.EVENT_ACTORS, "trivial", "aecho", {}),
}
# What a variant is compared with: the bare echo, or as here.
AGAINST = {
    **{name: name[: -len("_on")] + "_off" for name in VARIANTS if name.endswith("_on")},
    "typed_on": "quiet_on",  # annotated vs unannotated, capture on for both
    "sync_idem": "sync",
    "async_idem": "async",
}
KEYED = ("sync_idem", "async_idem")
FOLLOWERS = ("followers_on", "followers_off")
# How much slower the server runs under callgrind: the keyed variants' timers are
# stretched by this much (benchmarks.slowed), and the followers variants' actor crashes
# that much less often, so there are as many asks per event as at full speed.
SLOWDOWN = 50
# The followers variants count three crash periods (instead of --seconds): a crash,
# its events and their fan-out come in every run, and about as many in each.
CRASH_EVERY = suites.EVENT_EVERY * SLOWDOWN
FOLLOWERS_SECONDS = 3 * CRASH_EVERY
DEFAULT = ("bare", "async", "sync", "nonblocking")


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
    server: harness.BareServer | harness.Daemon
    if target is None:
        server = harness.BareServer(workdir, loop="uvloop")
        spec = suites._ask_spec(server.port, "/echo", "echo")
    else:
        actors, actor, op, env = target
        server = harness.Daemon(workdir, actors, env=env or None)
        keyed = {"idempotency": True} if name in KEYED else {}
        spec = suites._ask_spec(server.port, f"/v1/actors/{actor}/ask", op, **keyed)
    server.launcher = _valgrind(out)
    if name in KEYED:
        server.launcher += [harness.PYTHON, "-m", "benchmarks.slowed", str(SLOWDOWN), "--"]
    extra = contextlib.ExitStack()
    source = followers = None
    try:
        server.start(timeout=600)
        if name in FOLLOWERS:
            source = extra.enter_context(suites.EventSource(server.port, CRASH_EVERY))
            if name == "followers_on":
                followers = suites.start_followers(server.port)
                extra.callback(followers.kill)
            seconds = FOLLOWERS_SECONDS
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
        counted = {
            "requests": requests,
            "instructions_per_request": _total_instructions(out) / requests,
        }
        if source is not None:  # how many events there were (the whole run's)
            counted["crashes"] = source.crashes
        if followers is not None:
            followers.terminate()
            received = json.loads(followers.communicate(timeout=30)[0].splitlines()[-1])
            counted["events_per_follower"] = received["events"] / received["followers"]
        return counted
    finally:
        extra.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Instructions per request of the ask path under callgrind (an A/B tool).",
    )
    parser.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        help=f"of {', '.join(VARIANTS)} (default: {' '.join(DEFAULT)})",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="instrumented load per variant")
    parser.add_argument("--json", type=Path, help="also write the results here")
    ns = parser.parse_args(argv)
    unknown = [name for name in ns.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    ns.variants = ns.variants or list(DEFAULT)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    results = {name: measure(name, ns.seconds) for name in ns.variants}
    for name, row in results.items():
        per = row["instructions_per_request"]
        base = AGAINST.get(name, "bare")
        against = results.get(base) if name != "bare" else None
        ratio = f"  {per / against['instructions_per_request']:.3f}x {base}" if against else ""
        count = f"({row['requests']} requests"
        if "crashes" in row:
            count += f"; {row['crashes']} crashes"
        if "events_per_follower" in row:
            count += f", {row['events_per_follower']:.0f} events per follower"
        count += ")"
        print(f"{name:12} {per / 1000:9.1f}k instructions/request {count}{ratio}")
    if ns.json is not None:
        ns.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
