"""The benchmarks. Each takes the run's ``Context`` and adds table rows and details.

Every comparison is interleaved: one round of the baseline, one of each pulsing
variant, repeated (the order rotates each round), and the figures are medians over
rounds, so a noisy neighbour on a 2-core machine hits both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import harness, profiling
from benchmarks.harness import (
    PULSING,
    PYTHON,
    BareServer,
    Daemon,
    FloorServer,
    Workdir,
    child_env,
    cpu_seconds,
    http_json,
    make_loopback_netns,
    median,
    percentile,
    remove_netns,
    rss_kb,
    run_loadgen,
    spread,
    timed,
)

ASK_BODY = '{"op":"%s","args":{"x":1}}'


@dataclass
class Row:
    benchmark: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: informational
    note: str = ""
    # value over the same-run floor (benchmarks/floors.py): the least code on this
    # stack that gives the same guarantee; set on rows whose target has a floor row
    floor_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Context:
    quick: bool
    profile: bool = False
    keep: bool = False
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    _fixtures: dict[str, Any] = field(default_factory=dict)
    _cleanups: list[Callable[[], Any]] = field(default_factory=list)
    results_dir: Path = harness.BENCH_DIR / "results"

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def workdir(self, prefix: str) -> Path:
        wd = Workdir(prefix, keep=self.keep)
        self._cleanups.append(wd.cleanup)
        return wd.path

    def fixture(self, name: str, factory: Callable[[], Any]) -> Any:
        if name not in self._fixtures:
            self._fixtures[name] = factory()
        return self._fixtures[name]

    def own(self, proc: harness.Proc) -> harness.Proc:
        """Stop this process at the end of the run (LIFO, before temp dirs go)."""
        self._cleanups.append(proc.stop)
        return proc

    def row(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def cleanup(self) -> None:
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as exc:  # never let cleanup hide results
                print(f"  cleanup: {exc!r}")
        self._fixtures.clear()


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def _rotate(items: list[Any], r: int) -> list[Any]:
    k = r % len(items)
    return items[k:] + items[:k]


# ---------------------------------------------------------------------- shared fixtures
ASK_ACTORS = """
[actors.trivial]
class = "actors:Trivial"

[actors.trivial_proc]
class = "actors:Trivial"
isolation = "process"
"""


def pinned_cpu() -> int | None:
    """The CPU for the ``cpu_affinity`` variant (None where affinity is unsupported)."""
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    return max(os.sched_getaffinity(0))


def ask_servers(ctx: Context) -> tuple[Daemon, BareServer, Daemon | None]:
    def make() -> tuple[Daemon, BareServer, Daemon | None]:
        wd = ctx.workdir("ask")
        daemon = ctx.own(Daemon(wd, ASK_ACTORS)).start()
        bare = ctx.own(BareServer(wd)).start()
        cpu = pinned_cpu()
        pinned = None
        if cpu is not None:  # the same daemon with [daemon] cpu_affinity = [cpu]
            pinned = Daemon(wd, ASK_ACTORS, f"cpu_affinity = [{cpu}]", name="pinned")
            ctx.own(pinned).start()
        return daemon, bare, pinned  # type: ignore[return-value]

    return ctx.fixture("ask", make)


def bare_uvloop(ctx: Context) -> BareServer | None:
    """The bare echo on uvloop, the daemon's loop (None when uvloop is not installed)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return None

    def make() -> BareServer:
        return ctx.own(BareServer(ctx.workdir("ask"), loop="uvloop")).start()  # type: ignore[return-value]

    return ctx.fixture("bare_uvloop", make)


def _add_bare_uvloop(ctx: Context, targets: dict[str, tuple[int, dict[str, Any]]]) -> bool:
    """Add the bare echo on uvloop to ``targets`` as ``bare_uvloop`` (False when uvloop
    is not installed)."""
    server = bare_uvloop(ctx)
    if server is None:
        return False
    targets["bare_uvloop"] = (server.pid, _ask_spec(server.port, "/echo", "echo"))
    return True


def floor_server(ctx: Context) -> FloorServer:
    """The floor servers (benchmarks/floors.py), one process shared by the suites."""

    def make() -> FloorServer:
        return ctx.own(FloorServer(ctx.workdir("floors"))).start()  # type: ignore[return-value]

    return ctx.fixture("floors", make)


def _floor_targets(floors: FloorServer) -> dict[str, tuple[int, dict[str, Any]]]:
    """The floors of the ask suites: name -> (server pid, loadgen spec without mode)."""
    return {
        "floor_mailbox": (floors.pid, _ask_spec(floors.port, "/mailbox", "aecho")),
        "floor_thread": (floors.pid, _ask_spec(floors.port, "/thread", "echo")),
        "floor_keyed": (floors.pid, _ask_spec(floors.port, "/keyed", "aecho", idempotency=True)),
        "floor_keyed_mailbox": (
            floors.pid,
            _ask_spec(floors.port, "/keyed_mailbox", "aecho", idempotency=True),
        ),
        "floor_keyed_thread": (
            floors.pid,
            _ask_spec(floors.port, "/keyed_thread", "echo", idempotency=True),
        ),
        "floor_process": (floors.pid, _ask_spec(floors.port, "/process", "echo")),
    }


def _floor_note(
    value: float | None,
    floor: float | None,
    what: str,
    cpu: tuple[Any, Any] | None = None,
    rounds: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> str:
    """``0.83x the floor (what)``; with ``cpu`` (two throughput summaries, pulsing's and
    the floor's) also the ratio of server CPU per request, far steadier on a shared
    machine than req/s; with ``rounds`` (two lists of throughput runs) the median of the
    per-round ratios (each round measures both within seconds of each other)."""
    ratio = _ratio(value, floor)
    text = "" if ratio is None else f"{ratio:.2f}x the floor ({what})"
    if rounds is not None:
        per_round = [_ratio(a["rps"], b["rps"]) for a, b in zip(*rounds, strict=True)]
        if per_round and None not in per_round:
            text += f", per-round median {median(per_round):.2f}x"  # type: ignore[arg-type]
    if cpu is not None:
        key = "server_cpu_us_per_req_median"
        cpu_ratio = _ratio(cpu[0][key], cpu[1][key])
        if cpu_ratio is not None:
            text += f"; server CPU/req {cpu_ratio:.2f}x the floor's"
    return text


def _ask_spec(port: int, path: str, op: str, **extra: Any) -> dict[str, Any]:
    return {"port": port, "method": "POST", "path": path, "body": ASK_BODY % op, **extra}


def _ask_targets(
    daemon: Daemon, bare: BareServer, pinned: Daemon | None = None
) -> dict[str, tuple[int, dict[str, Any]]]:
    """name -> (server pid, loadgen spec without mode)."""

    def ask(server: Daemon, op: str, actor: str = "trivial", **extra: Any) -> tuple[int, Any]:
        return server.pid, _ask_spec(server.port, f"/v1/actors/{actor}/ask", op, **extra)

    targets = {
        "bare": (bare.pid, _ask_spec(bare.port, "/echo", "echo")),
        "sync": ask(daemon, "echo"),
        "async": ask(daemon, "aecho"),
        "nonblocking": ask(daemon, "necho"),
        "sync_idem": ask(daemon, "echo", idempotency=True),
        "async_idem": ask(daemon, "aecho", idempotency=True),
        "proc": ask(daemon, "echo", "trivial_proc"),
    }
    if pinned is not None:
        targets["pinned"] = ask(pinned, "echo")
    return targets


def _throughput_rounds(
    ctx: Context, targets: dict[str, tuple[int, dict[str, Any]]], names: list[str], conns: int
) -> dict[str, list[dict[str, Any]]]:
    rounds = ctx.pick(3, 5)
    warmup, duration = ctx.pick((0.4, 1.2), (0.5, 2.5))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in _rotate(names, r):
            pid, spec = targets[name]
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            result = run_loadgen(
                {
                    **spec,
                    "mode": "throughput",
                    "conns": conns,
                    "warmup": warmup,
                    "duration": duration,
                    "sample_every": 4,
                }
            )
            cpu = cpu_seconds(pid) - cpu0
            result["server_cpu_util"] = cpu / (time.perf_counter() - t0)
            result["server_cpu_us_per_req"] = 1e6 * cpu / max(1, result["total_requests"])
            runs[name].append(result)
    return runs


def _summ_throughput(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]
    return {
        "rps_median": median(rps),
        "rps_rounds": spread(rps),
        "errors": sum(r["errors"] for r in runs),
        "error_samples": [s for r in runs for s in r["error_samples"]][:3],
        "latency_p50_ms_median": median([r["latency"].get("p50_ms", 0.0) for r in runs]),
        "latency_p99_ms_median": median([r["latency"].get("p99_ms", 0.0) for r in runs]),
        "server_cpu_util_median": median([r["server_cpu_util"] for r in runs]),
        "server_cpu_us_per_req_median": median([r["server_cpu_us_per_req"] for r in runs]),
        "client_cpu_fraction_median": median([r["client_cpu_fraction"] for r in runs]),
    }


def _error_note(summary: dict[str, Any]) -> str:
    return f"{summary['errors']} errors!" if summary["errors"] else ""


def _tput_note(summary: dict[str, Any]) -> str:
    """Server CPU per request and utilisation: steadier than req/s on a shared machine."""
    text = (
        f"server CPU {summary['server_cpu_us_per_req_median']:.0f} us/req at "
        f"{100 * summary['server_cpu_util_median']:.0f}% of a core"
    )
    return f"{text}; {_error_note(summary)}" if summary["errors"] else text


# ---------------------------------------------------------------------- ask_throughput
def ask_throughput(ctx: Context) -> None:
    daemon, bare, pinned = ask_servers(ctx)
    targets = {**_ask_targets(daemon, bare, pinned), **_floor_targets(floor_server(ctx))}
    conns = 64
    names = ["bare", "sync", "async", "nonblocking", "pinned", "sync_idem", "async_idem"]
    names += ["floor_mailbox", "floor_thread", "floor_keyed", "floor_keyed_mailbox"]
    names.append("floor_keyed_thread")
    if _add_bare_uvloop(ctx, targets):  # the bare echo on the daemon's loop (info)
        names.append("bare_uvloop")
    if ctx.quick:
        names.remove("sync_idem")
        names.remove("floor_keyed_thread")
    if pinned is None:
        names.remove("pinned")
    runs = _throughput_rounds(ctx, targets, names, conns)
    summary = {name: _summ_throughput(runs[name]) for name in names}

    # The load generator's own ceiling: the same requests against a server that only
    # answers with canned bytes. Pulsing and bare should be well below it.
    wd = ctx.workdir("ceiling")
    canned = BareServer(wd, mode="canned").start()
    try:
        ceiling_runs = []
        for _ in range(ctx.pick(2, 3)):
            spec = _ask_spec(canned.port, "/echo", "echo")
            ceiling_runs.append(
                run_loadgen(
                    {
                        **spec,
                        "mode": "throughput",
                        "conns": conns,
                        "warmup": 0.3,
                        "duration": ctx.pick(1.0, 2.0),
                        "sample_every": 4,
                    }
                )
            )
    finally:
        canned.stop()
    ceiling = median([r["rps"] for r in ceiling_runs])
    ctx.details["ask_throughput"] = {
        "conns": conns,
        "rounds": len(runs["bare"]),
        "variants": summary,
        "client_ceiling": {
            "rps_median": ceiling,
            "client_cpu_fraction_median": median([r["client_cpu_fraction"] for r in ceiling_runs]),
        },
        "runs": runs,
    }
    base = summary["bare"]["rps_median"]
    ctx.row(
        "ask_throughput",
        "client ceiling (canned server)",
        ceiling,
        "req/s",
        note="load generator limit; others should stay well below",
    )
    ctx.row("ask_throughput", "bare aiohttp echo", base, "req/s", note=_tput_note(summary["bare"]))
    if "bare_uvloop" in summary:
        # The daemon runs on uvloop (pulsing_daemon/eventloop.py); the baseline is
        # the bare echo on asyncio's loop. This row shows the same echo on uvloop.
        value = summary["bare_uvloop"]["rps_median"]
        ctx.row(
            "ask_throughput", "bare aiohttp echo on uvloop (the daemon's loop)", value, "req/s",
            base, _ratio(value, base), "info", None, _tput_note(summary["bare_uvloop"]),
        )  # fmt: skip
    # The floors (benchmarks/floors.py): the least code on aiohttp that gives what the
    # target's guarantee needs, measured in the same rounds.
    floors = {
        "floor_mailbox": ("floor: bare echo + a per-actor mailbox", "mailbox"),
        "floor_thread": ("floor: bare echo + a mailbox run on a thread", "mailbox on a thread"),
        "floor_keyed": ("floor: bare echo + durable key, group commit", "durable key"),
        "floor_keyed_mailbox": (
            "floor: bare echo + durable key + a per-actor mailbox",
            "durable key, mailbox",
        ),
        "floor_keyed_thread": (
            "floor: bare echo + durable key + a mailbox run on a thread",
            "durable key, mailbox on a thread",
        ),
    }
    for name, (label, _) in floors.items():
        if name not in summary:
            continue
        value = summary[name]["rps_median"]
        ctx.row(
            "ask_throughput", label, value, "req/s", base, _ratio(value, base), "info", None,
            _tput_note(summary[name]),
        )  # fmt: skip
    floor_of = {
        "sync": "floor_thread",
        "async": "floor_mailbox",
        "sync_idem": "floor_keyed_thread",
        "async_idem": "floor_keyed_mailbox",
    }
    # Targets of issue 17 (performance, round two).
    for name, label, target in (
        ("sync", "sync op", 0.7),
        ("async", "async op", 0.8),
        ("nonblocking", "sync op, @nonblocking", None),
        ("pinned", f"sync op, cpu_affinity = [{pinned_cpu()}]", None),
        ("sync_idem", "sync op + Idempotency-Key", 0.6),
        ("async_idem", "async op + Idempotency-Key", 0.6),
    ):
        if name not in summary:
            continue
        value = summary[name]["rps_median"]
        ratio = _ratio(value, base)
        floor = summary[floor_of[name]]["rps_median"] if name in floor_of else None
        note = _tput_note(summary[name])
        if floor is not None:
            note += "; " + _floor_note(
                value,
                floor,
                floors[floor_of[name]][1],
                (summary[name], summary[floor_of[name]]),
                (runs[name], runs[floor_of[name]]),
            )
        ctx.row(
            "ask_throughput",
            label,
            value,
            "req/s",
            base,
            ratio,
            f">= {target}x bare" if target else "info",
            None
            if target is None
            else ratio is not None and ratio >= target and not summary[name]["errors"],
            note,
            _ratio(value, floor),
        )
    if ctx.profile:
        _profile_load(ctx, daemon, targets["sync"][1], "ask_sync")
        _profile_load(ctx, daemon, targets["async"][1], "ask_async")
        _profile_load(ctx, daemon, targets["async_idem"][1], "ask_async_idem")
        _profile_load(ctx, bare, targets["bare"][1], "bare_echo")


def _profile_load(ctx: Context, server: harness.Proc, spec: dict[str, Any], name: str) -> None:
    out = ctx.results_dir / f"profile-{name}.txt"
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    duration = ctx.pick(3, 5)
    sampler = profiling.attach(server.pid, duration, out)
    if sampler is None:
        ctx.profiles[name] = {"error": "py-spy not installed (pip install py-spy)"}
        return
    result = run_loadgen(
        {**spec, "mode": "throughput", "conns": 64, "warmup": 0.2, "duration": duration + 0.5}
    )
    _, err = sampler.communicate(timeout=60)
    summary = profiling.summarize(out)
    summary["rps_while_sampled"] = result["rps"]
    summary["raw"] = str(out)
    if sampler.returncode:
        summary["py_spy_stderr"] = err[-500:]
    ctx.profiles[name] = summary


# ---------------------------------------------------------------------- ask_latency
def _latency_rounds(
    ctx: Context, targets: dict[str, tuple[int, dict[str, Any]]], names: list[str]
) -> dict[str, dict[str, Any]]:
    rounds = ctx.pick(3, 5)
    requests = ctx.pick(1200, 3000)
    samples: dict[str, list[float]] = {name: [] for name in names}
    p50s: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, int] = dict.fromkeys(names, 0)
    for r in range(rounds):
        for name in _rotate(names, r):
            _, spec = targets[name]
            result = run_loadgen(
                {
                    **spec,
                    "mode": "latency",
                    "requests": requests,
                    "warmup_requests": 200,
                    "raw": True,
                }
            )
            samples[name].extend(result["raw_us"])
            p50s[name].append(result["latency"]["p50_ms"])
            errors[name] += result["errors"]
    out = {}
    for name in names:
        values = samples[name]
        out[name] = {
            "p50_ms": percentile(values, 0.5) / 1000,
            "p90_ms": percentile(values, 0.9) / 1000,
            "p99_ms": percentile(values, 0.99) / 1000,
            "max_ms": max(values) / 1000,
            "p50_ms_rounds": spread(p50s[name]),
            "samples": len(values),
            "errors": errors[name],
        }
    return out


def thread_hop_p50_ms(rounds: int = 3000) -> float:
    """p50 of a bare event loop -> thread -> event loop round trip (``run_in_executor``
    of a no-op), in a fresh process: what a sync op pays on top of an async one."""
    code = (
        "import asyncio, concurrent.futures, statistics, time\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    pool = concurrent.futures.ThreadPoolExecutor(4)\n"
        "    samples = []\n"
        f"    for i in range({rounds} + 200):\n"
        "        t = time.perf_counter()\n"
        "        await loop.run_in_executor(pool, int)\n"
        "        if i >= 200: samples.append(time.perf_counter() - t)\n"
        "    print(statistics.median(samples) * 1000)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [harness.PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return float(out.stdout.strip())


def ask_latency(ctx: Context) -> None:
    daemon, bare, pinned = ask_servers(ctx)
    targets = _ask_targets(daemon, bare, pinned)
    names = ["bare", "sync", "async", "nonblocking"] + (["pinned"] if pinned else [])
    stats = _latency_rounds(ctx, targets, names)
    ctx.details["ask_latency"] = stats
    b = stats["bare"]
    ctx.row("ask_latency", "bare p50 / p99", b["p50_ms"], "ms", note=f"p99 {b['p99_ms']:.2f} ms")
    hop = thread_hop_p50_ms()
    ctx.details["ask_latency"]["thread_hop_p50_ms"] = hop
    ctx.row(
        "ask_latency",
        "floor: loop -> thread -> loop hop",
        hop,
        "ms",
        b["p50_ms"],
        _ratio(hop, b["p50_ms"]),
        "info",
        note="run_in_executor of a no-op: a sync op (on a thread) pays it on top of an async op",
    )
    variants = [
        ("sync", "sync op"),
        ("async", "async op"),
        ("nonblocking", "sync op, @nonblocking"),
        ("pinned", f"sync op, cpu_affinity = [{pinned_cpu()}]"),
    ]
    # A sync op runs on a thread by contract (issue 17): its p50 may add the hop's.
    limits = {
        "sync": (2.0 * b["p50_ms"] + hop, "<= 2x bare + hop"),
        "async": (2.0 * b["p50_ms"], "<= 2.0x bare"),
    }
    for name, label in variants:
        if name not in stats:
            continue
        s = stats[name]
        ratio = _ratio(s["p50_ms"], b["p50_ms"])
        limit, target = limits.get(name, (None, "info"))
        ok = limit is not None and s["p50_ms"] <= limit and not s["errors"]
        notes = [f"limit {limit:.3f} ms"] if name == "sync" else []
        if s["errors"]:
            notes.append(f"{s['errors']} errors!")
        ctx.row(
            "ask_latency",
            f"{label} p50",
            s["p50_ms"],
            "ms",
            b["p50_ms"],
            ratio,
            target,
            ok if limit is not None else None,
            "; ".join(notes),
        )
        ctx.row(
            "ask_latency",
            f"{label} p99",
            s["p99_ms"],
            "ms",
            b["p99_ms"],
            _ratio(s["p99_ms"], b["p99_ms"]),
            "info",
        )


# ---------------------------------------------------------------------- process_vs_inline
def process_vs_inline(ctx: Context) -> None:
    daemon, bare, _ = ask_servers(ctx)
    targets = {**_ask_targets(daemon, bare), **_floor_targets(floor_server(ctx))}
    # The floor: a bare aiohttp server forwarding each call to one child over a pipe; for
    # the p50, also the bare echo on the same loop, so that what the pipe adds to a
    # request (the floor's p50 minus the echo's) can be added to the inline p50.
    names = ["sync", "proc", "floor_process"]
    echo = "bare_uvloop" if _add_bare_uvloop(ctx, targets) else "bare"  # the floors' loop
    lat = _latency_rounds(ctx, targets, [*names, echo])
    runs = _throughput_rounds(ctx, targets, names, 64)
    tput = {name: _summ_throughput(runs[name]) for name in names}
    ctx.details["process_vs_inline"] = {"latency": lat, "throughput": tput}
    i, p, f = lat["sync"], lat["proc"], lat["floor_process"]
    ctx.row("process_vs_inline", "inline p50", i["p50_ms"], "ms", note=f"p99 {i['p99_ms']:.2f} ms")
    floor_what = "aiohttp -> one child over a pipe"
    ctx.row(
        "process_vs_inline", f"floor p50: {floor_what}", f["p50_ms"], "ms", i["p50_ms"],
        _ratio(f["p50_ms"], i["p50_ms"]), "info (vs inline)", None, f"p99 {f['p99_ms']:.2f} ms",
    )  # fmt: skip
    # The least a process-isolated ask can take: an inline ask plus the pipe's round trip
    # (a request crossing to one child and back, as the floor server measures it).
    crossing = f["p50_ms"] - lat[echo]["p50_ms"]
    least = i["p50_ms"] + max(0.0, crossing)
    ctx.row(
        "process_vs_inline", "floor p50: inline + the pipe's round trip", least, "ms",
        i["p50_ms"], _ratio(least, i["p50_ms"]), "info (vs inline)", None,
        f"the pipe adds {crossing * 1000:.0f} us ({floor_what}: {f['p50_ms']:.3f} ms, the bare "
        f"echo on its loop: {lat[echo]['p50_ms']:.3f} ms)",
    )  # fmt: skip
    p50_ratio = _ratio(p["p50_ms"], i["p50_ms"])
    ctx.row(
        "process_vs_inline",
        "process p50",
        p["p50_ms"],
        "ms",
        i["p50_ms"],
        p50_ratio,
        "<= 1.2x inline",
        p50_ratio is not None and p50_ratio <= 1.2 and not p["errors"],
        _floor_note(p["p50_ms"], least, "inline + the pipe's round trip"),
        _ratio(p["p50_ms"], least),
    )
    ctx.row(
        "process_vs_inline",
        "process p99",
        p["p99_ms"],
        "ms",
        i["p99_ms"],
        _ratio(p["p99_ms"], i["p99_ms"]),
        "info (vs inline)",
    )
    ti, tp = tput["sync"]["rps_median"], tput["proc"]["rps_median"]
    tf = tput["floor_process"]["rps_median"]
    ctx.row("process_vs_inline", "inline throughput", ti, "req/s", note=_tput_note(tput["sync"]))
    ctx.row(
        "process_vs_inline", f"floor throughput: {floor_what}", tf, "req/s", ti, _ratio(tf, ti),
        "info (vs inline)", None, _tput_note(tput["floor_process"]) + " (child included)",
    )  # fmt: skip
    tput_ratio = _ratio(tp, ti)
    ctx.row(
        "process_vs_inline",
        "process throughput",
        tp,
        "req/s",
        ti,
        tput_ratio,
        ">= 0.6x inline",
        tput_ratio is not None and tput_ratio >= 0.6 and not tput["proc"]["errors"],
        _tput_note(tput["proc"])
        + "; "
        + _floor_note(
            tp,
            tf,
            "pipe to one child",
            (tput["proc"], tput["floor_process"]),
            (runs["proc"], runs["floor_process"]),
        ),
        _ratio(tp, tf),
    )


# ---------------------------------------------------------------------- stream
STREAM_ACTORS = """
[actors.streamer]
class = "actors:Streamer"

[actors.trivial]
class = "actors:Trivial"
"""


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def stream(ctx: Context) -> None:
    n = ctx.pick(20_000, 100_000)
    rounds = ctx.pick(3, 5)
    wd = ctx.workdir("stream")
    daemon = ctx.own(Daemon(wd, STREAM_ACTORS)).start()
    bare = ctx.own(BareServer(wd)).start()
    floors = floor_server(ctx)
    env = child_env(PULSING_ENDPOINT=daemon.endpoint)

    def pulsing_cmd(count: int, op: str = "chunks") -> list[str]:
        return [PULSING, "stream", "streamer", op, f"n={count}", "--json"]

    def bare_cmd(count: int, port: int = bare.port) -> list[str]:
        return [
            PYTHON,
            "-m",
            "benchmarks.stream_client",
            f"http://127.0.0.1:{port}/stream?n={count}",
        ]

    # The floor: the bare stream with every chunk committed to SQLite before it is sent
    # (benchmarks/floors.py), read by the same client.
    def floor_cmd(count: int) -> list[str]:
        return bare_cmd(count, floors.port)

    # Correctness first (and warm-up): every side prints every line exactly once.
    check = {}
    for name, cmd in (
        ("pulsing", pulsing_cmd(2000)),
        ("bare", bare_cmd(2000)),
        ("floor", floor_cmd(2000)),
    ):
        out_path = wd / f"check-{name}.out"
        with open(out_path, "wb") as fh:
            _, code = timed(cmd, env=env, stdout=fh)
        check[name] = {"exit": code, "lines": _count_lines(out_path)}
    valid = all(c["exit"] == 0 and c["lines"] in (2000, 2001) for c in check.values())

    # Each round: the full stream on both sides, and a 1-chunk stream on both sides
    # (the fixed cost: process start-up, imports, connect), to split wall time into
    # a fixed part and a per-chunk part.
    # "pulsing_yielding": the same stream from a producer that awaits every 512 chunks.
    variants = {
        "bare": bare_cmd(n),
        "pulsing": pulsing_cmd(n),
        "bare_1": bare_cmd(1),
        "pulsing_1": pulsing_cmd(1),
        "pulsing_yielding": pulsing_cmd(n, "chunks_yielding"),
        "floor": floor_cmd(n),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    codes: dict[str, list[int]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in _rotate(list(variants), r):
            wall, code = timed(variants[name], env=env, timeout=300)
            walls[name].append(wall)
            codes[name].append(code)
    p_wall, b_wall = median(walls["pulsing"]), median(walls["bare"])
    p_rate, b_rate = n / p_wall, n / b_wall
    f_rate = n / median(walls["floor"])
    p_fixed, b_fixed = median(walls["pulsing_1"]), median(walls["bare_1"])
    p_marginal = (n - 1) / max(1e-6, p_wall - p_fixed)
    b_marginal = (n - 1) / max(1e-6, b_wall - b_fixed)

    # Informational: how long other asks wait while the producer runs (an async
    # generator that never awaits holds the event loop between journal commits).
    def probe(cmd: list[str]) -> dict[str, Any]:
        prober = harness.start_loadgen(
            {
                **_ask_spec(daemon.port, "/v1/actors/trivial/ask", "aecho"),
                "mode": "latency",
                "duration": p_wall + 1.0,
                "warmup_requests": 50,
            }
        )
        time.sleep(0.5)
        timed(cmd, env=env, timeout=300)
        return harness.finish_loadgen(prober)["latency"]

    stall = probe(pulsing_cmd(n))
    stall_yielding = probe(variants["pulsing_yielding"])

    details: dict[str, Any] = {
        "chunks": n,
        "check": check,
        "wall_s": {k: spread(v) for k, v in walls.items()},
        "exit_codes": codes,
        "chunks_per_s": {"pulsing": p_rate, "bare": b_rate, "floor": f_rate},
        "fixed_cost_s": {"pulsing": p_fixed, "bare": b_fixed},
        "marginal_chunks_per_s": {"pulsing": p_marginal, "bare": b_marginal},
        "ask_latency_during_stream_ms": stall,
        "ask_latency_during_yielding_stream_ms": stall_yielding,
    }
    if not ctx.quick:
        sn = 20_000
        sync_wall, code = timed(pulsing_cmd(sn, "sync_chunks"), env=env, timeout=300)
        async_wall, _ = timed(pulsing_cmd(sn), env=env, timeout=300)
        details["sync_generator"] = {
            "chunks": sn,
            "exit": code,
            "sync_wall_s": sync_wall,
            "async_wall_s": async_wall,
        }
    ctx.details["stream"] = details
    bad = [c for cs in codes.values() for c in cs if c != 0]
    note = "" if valid and not bad else f"check {check} exit codes {codes}"
    ctx.row(
        "stream",
        f"bare NDJSON ({n:,} lines, whole client)",
        b_rate,
        "chunks/s",
        note=f"{b_wall:.2f} s",
    )
    ctx.row(
        "stream", "floor: bare NDJSON + SQLite commit per 512", f_rate, "chunks/s", b_rate,
        _ratio(f_rate, b_rate), "info", None,
        "chunks committed (WAL, synchronous=NORMAL) before they are sent; same client",
    )  # fmt: skip
    ratio = _ratio(p_rate, b_rate)
    ctx.row(
        "stream",
        "pulsing stream --json (whole CLI)",
        p_rate,
        "chunks/s",
        b_rate,
        ratio,
        ">= 0.8x bare",
        ratio is not None and ratio >= 0.8 and not note,
        note or f"{p_wall:.2f} s; " + _floor_note(p_rate, f_rate, "journal commits"),
        _ratio(p_rate, f_rate),
    )
    ctx.row(
        "stream",
        "per-chunk rate (minus 1-chunk run)",
        p_marginal,
        "chunks/s",
        b_marginal,
        _ratio(p_marginal, b_marginal),
        "info",
        note=f"fixed cost {1000 * p_fixed:.0f} ms pulsing vs {1000 * b_fixed:.0f} ms bare",
    )
    y_rate = n / median(walls["pulsing_yielding"])
    ctx.row(
        "stream",
        "pulsing, producer awaits every 512 chunks",
        y_rate,
        "chunks/s",
        b_rate,
        _ratio(y_rate, b_rate),
        "info",
        note="what yielding to the loop after each journal commit would give",
    )
    ctx.row(
        "stream",
        "ask p99 / max during a stream",
        stall.get("p99_ms"),
        "ms",
        target="info",
        note=(
            f"max {stall.get('max_ms', 0):.1f} ms (event-loop stall); with the producer "
            f"awaiting every 512 chunks: max {stall_yielding.get('max_ms', 0):.1f} ms"
        ),
    )
    if "sync_generator" in details:
        sg = details["sync_generator"]
        ctx.row(
            "stream",
            f"sync generator ({sg['chunks']:,} chunks)",
            sg["chunks"] / sg["sync_wall_s"],
            "chunks/s",
            sg["chunks"] / sg["async_wall_s"],
            sg["async_wall_s"] / sg["sync_wall_s"],
            "info (vs async gen)",
        )
    if ctx.profile:
        _profile_stream(ctx, daemon, env, pulsing_cmd(100_000))


def _profile_stream(ctx: Context, daemon: Daemon, env: dict[str, str], cmd: list[str]) -> None:
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    out = ctx.results_dir / "profile-stream-daemon.txt"
    sampler = profiling.attach(daemon.pid, 5, out)
    if sampler is None:
        ctx.profiles["stream_daemon"] = {"error": "py-spy not installed"}
        return
    time.sleep(0.3)
    timed(cmd, env=env, timeout=300)
    sampler.communicate(timeout=60)
    ctx.profiles["stream_daemon"] = {**profiling.summarize(out), "raw": str(out)}
    out_cli = ctx.results_dir / "profile-stream-cli.txt"
    wrapped = profiling.wrap(cmd, out_cli)
    if wrapped is not None:
        timed(wrapped, env=env, timeout=300)
        ctx.profiles["stream_cli"] = {**profiling.summarize(out_cli), "raw": str(out_cli)}


# ---------------------------------------------------------------------- cli_startup
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _importtime(stderr: str, top: int = 15) -> dict[str, Any]:
    entries = []
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            entries.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3))))
    top_level = [e for e in entries if e[3] == 1]
    return {
        "total_ms": round(sum(e[2] for e in top_level) / 1000, 1),
        "top_cumulative_ms": [
            [name, round(cum / 1000, 1)]
            for name, _, cum, _ in sorted(top_level, key=lambda e: -e[2])[:top]
        ],
        "top_self_ms": [
            [name, round(own / 1000, 1)]
            for name, own, _, _ in sorted(entries, key=lambda e: -e[1])[:top]
        ],
        "modules": len(entries),
    }


def _console_script(bindir: Path, name: str, module: str, function: str) -> str:
    """A launcher like the one pip wrote for ``pulsing`` (same interpreter, same text),
    calling ``module.function`` instead: both sides start the same way."""
    template = Path(PULSING).read_text()
    if "from pulsing_cli.app import main" not in template:
        raise RuntimeError(f"{PULSING} is not the console script pip writes")
    path = bindir / name
    path.write_text(
        template.replace(
            "from pulsing_cli.app import main", f"from {module} import {function}"
        ).replace("sys.exit(main())", f"sys.exit({function}())")
    )
    path.chmod(0o755)
    return str(path)


def _install_completion(programs: list[str], env: dict[str, str]) -> dict[str, str]:
    """``PROGRAM --install-completion`` for bash in ``env``'s HOME, from a bash (Typer
    detects the shell from its parent), as a user would. Returns what it wrote.
    (``; exit $?``: bash runs a lone command by exec, and the program's parent would
    then be whatever started the benchmarks, maybe ``sh``, which Typer refuses.)"""
    home = Path(env["HOME"])
    for program in programs:
        proc = subprocess.run(
            ["bash", "-c", f"'{program}' --install-completion; exit $?"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        script = home / ".bash_completions" / f"{Path(program).name}.sh"
        if proc.returncode != 0 or not script.is_file():
            raise RuntimeError(
                f"{Path(program).name} --install-completion failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr)[-300:]}"
            )
    return {
        str(path.relative_to(home)): path.read_text()
        for path in sorted([home / ".bashrc", *(home / ".bash_completions").iterdir()])
    }


def cli_startup(ctx: Context) -> None:
    """``pulsing ask`` against a minimal Typer CLI doing one HTTP call (``typer_min``).

    Both run from console scripts of the same form, with bash completion installed in
    a temporary HOME (``--install-completion``: a ``source`` line in ``~/.bashrc`` and
    a script in ``~/.bash_completions``). Installed completion changes nothing in a
    command's own start-up: the script only sets ``_PULSING_COMPLETE`` /
    ``_TYPER_MIN_COMPLETE`` when the shell asks for completions, and both CLIs read
    that variable on every start. The runs are interleaved; figures are medians.
    """
    wd = ctx.workdir("cli")
    daemon = ctx.own(Daemon(wd, '[actors.echo]\nclass = "actors:Echo"\n')).start()
    home = wd / "home"
    bindir = wd / "bin"
    home.mkdir()
    bindir.mkdir()
    typer_min = _console_script(bindir, "typer_min", "benchmarks.typer_min", "main")
    typer_plain = _console_script(bindir, "typer_min_plain", "benchmarks.typer_min", "main_plain")
    env = child_env(PULSING_ENDPOINT=daemon.endpoint, HOME=str(home), SHELL="/bin/bash")
    installed = _install_completion([PULSING, typer_min], env)
    # As this environment runs by default: no .pyc for the (editable) project.
    cold_env = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
    cold_env["PYTHONDONTWRITEBYTECODE"] = "1"
    ask_cmd = [PULSING, "ask", "echo", "ping"]
    cmds: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([PYTHON, "-c", "pass"], env),
        "pulsing --help": ([PULSING, "--help"], env),
        "pulsing ask echo ping": (ask_cmd, env),
        "typer_min ask echo ping": ([typer_min, "ask", "echo", "ping"], env),
        "typer_min ask echo ping, plain conversion": ([typer_plain, "ask", "echo", "ping"], env),
        "pulsing ask echo ping, no .pyc": (ask_cmd, cold_env),
    }
    # What the installed script runs on TAB after `PROG as`: the command names offered.
    for program, var in ((PULSING, "_PULSING_COMPLETE"), (typer_min, "_TYPER_MIN_COMPLETE")):
        prog = Path(program).name
        tab_env = {**env, var: "complete_bash", "COMP_WORDS": f"{prog} as", "COMP_CWORD": "1"}
        offered = subprocess.run(
            [program], env=tab_env, capture_output=True, text=True, timeout=60
        ).stdout.split()
        if offered != ["ask"]:
            raise RuntimeError(f"installed completion: {prog} as<TAB> offered {offered}")
        cmds[f"{prog} as<TAB> (completion)"] = ([program], tab_env)
    runs = ctx.pick(11, 21)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    codes: dict[str, set[int]] = {k: set() for k in cmds}
    for cmd, cmd_env in cmds.values():  # warm the page cache and the .pyc files
        timed(cmd, env=cmd_env)
    for r in range(runs):
        for name in _rotate(list(cmds), r):
            cmd, cmd_env = cmds[name]
            wall, used, code = harness.timed_usage(cmd, env=cmd_env)
            times[name].append(wall * 1000)
            cpu[name].append(used * 1000)
            codes[name].add(code)
    # -X importtime of `pulsing ask` and of the baseline: the least noisy of three runs.
    imports: dict[str, dict[str, Any]] = {}
    for key, cmd in (
        ("pulsing_ask", ask_cmd),
        ("typer_min_plain", cmds["typer_min ask echo ping, plain conversion"][0]),
    ):
        for _ in range(3):
            proc = subprocess.run(
                [PYTHON, "-X", "importtime", *cmd],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            candidate = _importtime(proc.stderr)
            if key not in imports or candidate["total_ms"] < imports[key]["total_ms"]:
                imports[key] = candidate
    ctx.details["cli_startup"] = {
        "runs": runs,
        "ms": {k: spread(v) for k, v in times.items()},
        "cpu_ms": {k: spread(v) for k, v in cpu.items()},
        "ms_per_round": {k: [round(x, 1) for x in v] for k, v in times.items()},
        "exit_codes": {k: sorted(v) for k, v in codes.items()},
        "completion_installed": sorted(installed),
        "importtime_pulsing_ask": imports["pulsing_ask"],
        "importtime_typer_min_plain": imports["typer_min_plain"],
    }

    def note_for(name: str, base_name: str | None = None) -> str:
        parts = [] if codes[name] == {0} else [f"exit codes {sorted(codes[name])}"]
        if base_name is not None:
            cpu_ratio = _ratio(median(cpu[name]), median(cpu[base_name]))
            parts.append(
                f"CPU {median(cpu[name]):.0f} vs {median(cpu[base_name]):.0f} ms"
                + (f" ({cpu_ratio:.2f}x)" if cpu_ratio is not None else "")
            )
            # Each round runs both sides within a second or so: the ratio per round
            # follows the load less than the ratio of the medians does.
            per_round = [a / b for a, b in zip(times[name], times[base_name], strict=True)]
            parts.append(f"median of per-round ratios {median(per_round):.2f}x")
        return "; ".join(parts)

    base = median(times["python -c pass"])
    ctx.row("cli_startup", "python -c pass", base, "ms")
    help_ms = median(times["pulsing --help"])
    ctx.row(
        "cli_startup",
        "pulsing --help",
        help_ms,
        "ms",
        base,
        _ratio(help_ms, base),
        "<= 150 ms",
        help_ms is not None and help_ms <= 150.0 and codes["pulsing --help"] == {0},
        note_for("pulsing --help"),
    )
    ask_ms = median(times["pulsing ask echo ping"])
    for base_name, figure in (
        ("typer_min ask echo ping", "pulsing ask echo ping"),
        ("typer_min ask echo ping, plain conversion", "pulsing ask echo ping, vs plain"),
    ):
        base_ms = median(times[base_name])
        ctx.row("cli_startup", base_name, base_ms, "ms", note=note_for(base_name))
        ratio = _ratio(ask_ms, base_ms)
        ctx.row(
            "cli_startup",
            figure,
            ask_ms,
            "ms",
            base_ms,
            ratio,
            "<= 1.05x",
            ratio is not None
            and ratio <= 1.05
            and codes["pulsing ask echo ping"] == codes[base_name] == {0},
            note_for("pulsing ask echo ping", base_name),
        )
    cold = "pulsing ask echo ping, no .pyc"
    cold_ms = median(times[cold])
    ctx.row(
        "cli_startup",
        cold,
        cold_ms,
        "ms",
        base,
        _ratio(cold_ms, base),
        "info",
        None,
        note_for(cold)
        or "PYTHONDONTWRITEBYTECODE=1 (as in this environment): compiles pulsing_cli",
    )
    tab, tab_base = "pulsing as<TAB> (completion)", "typer_min as<TAB> (completion)"
    tab_ms, tab_base_ms = median(times[tab]), median(times[tab_base])
    ctx.row(
        "cli_startup",
        "TAB completion: pulsing as<TAB> vs typer_min as<TAB>",
        tab_ms,
        "ms",
        tab_base_ms,
        _ratio(tab_ms, tab_base_ms),
        "info",
        None,
        note_for(tab, tab_base) + "; builds the whole app (every command), offers `ask`",
    )
    for key, label in (("pulsing_ask", "pulsing ask"), ("typer_min_plain", "typer_min, plain")):
        worst = ", ".join(f"{n} {ms:.0f}" for n, ms in imports[key]["top_cumulative_ms"][:4])
        ctx.row(
            "cli_startup",
            f"import time of {label} (-X importtime)",
            imports[key]["total_ms"],
            "ms",
            target="info",
            note=f"top: {worst}",
        )


# ---------------------------------------------------------------------- restart_latency
RESTART_BACKOFF = 0.05
RESTART_ACTORS = f"""
[actors.crash_q]
class = "actors:Crasher"
min_backoff = {RESTART_BACKOFF}
max_backoff = {RESTART_BACKOFF}
max_restarts = 1000000

[actors.crash_ff]
class = "actors:Crasher"
min_backoff = {RESTART_BACKOFF}
max_backoff = {RESTART_BACKOFF}
max_restarts = 1000000
during_restart = "fail_fast"
"""


async def _restart_trials(port: int, variant: str, trials: int) -> dict[str, Any]:
    from benchmarks.loadgen import build_request, read_response

    actor = "crash_ff" if variant == "poll_fail_fast" else "crash_q"
    path = f"/v1/actors/{actor}/ask"
    base = {"host": "127.0.0.1", "port": port, "method": "POST", "path": path}
    crash = build_request({**base, "body": '{"op":"crash","args":{}}'})()
    ok = build_request({**base, "body": '{"op":"ok","args":{}}'})()
    r1, w1 = await asyncio.open_connection("127.0.0.1", port)
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    gaps: list[float] = []
    polls: list[int] = []
    bad: list[str] = []
    try:
        for _ in range(trials):
            # Make sure the instance is up before crashing it.
            w1.write(ok)
            status, body = await read_response(r1)
            if status != 200:
                bad.append(f"pre {status} {body[:120]!r}")
                await asyncio.sleep(0.2)
                continue
            w1.write(crash)
            if variant == "queued_behind":
                await asyncio.sleep(0)  # let the crash reach the daemon first
                await asyncio.sleep(0.001)
                w2.write(ok)  # queued in the mailbox behind the crash
            status, body = await read_response(r1)
            t_fail = time.perf_counter()
            if status == 200:
                bad.append(f"crash answered 200 {body[:120]!r}")
                continue
            n = 0
            if variant == "queued_behind":
                status, body = await read_response(r2)
                n = 1
            else:
                while True:
                    w1.write(ok)
                    status, body = await read_response(r1)
                    n += 1
                    if status == 200 or n > 100000 or time.perf_counter() - t_fail > 5.0:
                        break
            t_ok = time.perf_counter()
            if status != 200:
                bad.append(f"after {status} {body[:120]!r}")
                continue
            gaps.append((t_ok - t_fail) * 1000)
            polls.append(n)
            await asyncio.sleep(0.02)
    finally:
        w1.close()
        w2.close()
    return {
        "trials": len(gaps),
        "gap_ms": sorted(round(g, 2) for g in gaps),
        "p50_ms": median(gaps),
        "max_ms": max(gaps) if gaps else None,
        "asks_until_ok_median": median(polls),
        "problems": bad[:5],
    }


def restart_latency(ctx: Context) -> None:
    wd = ctx.workdir("restart")
    daemon = ctx.own(Daemon(wd, RESTART_ACTORS)).start()
    trials = ctx.pick(4, 8)
    rounds = ctx.pick(2, 3)
    variants = ["queued_behind", "poll_queue", "poll_fail_fast"]
    merged: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(rounds):
        for variant in _rotate(variants, r):
            merged[variant].append(asyncio.run(_restart_trials(daemon.port, variant, trials)))
    target_ms = RESTART_BACKOFF * 1000 + 20
    details = {}
    for variant in variants:
        gaps = [g for part in merged[variant] for g in part["gap_ms"]]
        problems = [p for part in merged[variant] for p in part["problems"]]
        polls = [part["asks_until_ok_median"] for part in merged[variant] if part["trials"]]
        details[variant] = {
            "trials": len(gaps),
            "p50_ms": median(gaps),
            "p90_ms": percentile(gaps, 0.9),
            "max_ms": max(gaps) if gaps else None,
            "asks_until_ok_median": median(polls),
            "gap_ms": sorted(gaps),
            "problems": problems[:5],
        }
    ctx.details["restart_latency"] = {"min_backoff_s": RESTART_BACKOFF, "variants": details}
    labels = {
        "queued_behind": "ask queued behind the crash",
        "poll_queue": "ask sent after the failure (queue)",
        "poll_fail_fast": "polling asks (fail_fast)",
    }
    base = RESTART_BACKOFF * 1000
    for variant in variants:
        d = details[variant]
        value = d["p50_ms"]
        note = f"p90 {d['p90_ms']:.1f} max {d['max_ms']:.1f} ms" if d["trials"] else ""
        if variant == "poll_fail_fast" and d["trials"]:
            note += f", {d['asks_until_ok_median']:.0f} asks"
        if d["problems"]:
            note += f" problems: {d['problems'][:1]}"
        ok = value is not None and value <= target_ms and not d["problems"]
        ctx.row(
            "restart_latency",
            labels[variant],
            value,
            "ms",
            base,
            _ratio(value, base),
            f"<= {target_ms:.0f} ms",
            ok,
            note,
        )


# ---------------------------------------------------------------------- scale
SCALE_ACTORS = 10_000
SCALE_READERS = 1000


def _scale_config(n: int) -> str:
    return "".join(f'[actors.a{i:05d}]\nclass = "actors:Idle"\n' for i in range(n))


def _count_running(log_path: Path) -> int:
    try:
        with open(log_path, "rb") as fh:
            return fh.read().count(b"to=running")
    except OSError:
        return 0


def _log_milestones(log_path: Path, spawned: float) -> dict[str, float | None]:
    """Seconds from spawn to the first actor start, ``listening`` and the last ``running``
    (from the daemon's own log timestamps, millisecond resolution)."""
    import calendar

    def stamp(line: str) -> float:
        head = line.split(" ", 1)[0]  # 2026-11-27T23:33:30.822Z
        whole, _, frac = head.rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac}")

    first = listening = last = None
    with open(log_path, errors="replace") as fh:
        for line in fh:
            try:
                if first is None and "event=state" in line:
                    first = stamp(line) - spawned
                elif listening is None and "event=listening" in line:
                    listening = stamp(line) - spawned
                elif "to=running" in line:
                    last = stamp(line) - spawned
            except ValueError:
                continue
    return {"first_actor_starting": first, "listening": listening, "last_running": last}


def _secs(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s"


def _settled_rss(pid: int, wait: float = 1.0) -> int | None:
    time.sleep(wait)
    return rss_kb(pid)


def scale(ctx: Context) -> None:
    wd = ctx.workdir("scale")
    details: dict[str, Any] = {"actors": SCALE_ACTORS}
    # 1) the reference: the same daemon hosting no actor
    empty = Daemon(wd, "", name="empty")
    try:
        empty.start(wait_running=False)
        details["rss_kb_0_actors"] = rss0 = _settled_rss(empty.pid)
    finally:
        empty.stop()

    # 2) 10,000 idle actors: start-up time, memory, status over all of them
    big = ctx.own(Daemon(wd, _scale_config(SCALE_ACTORS), name="big"))
    spawned_wall = time.time()
    t0 = time.perf_counter()
    big.started_at = t0
    big.spawn([PYTHON, "-m", "pulsing_daemon", "--config", str(big.config_path)])
    details["health_s"] = big.wait_health(120.0)
    deadline = time.monotonic() + 180.0
    while _count_running(big.log_path) < SCALE_ACTORS and time.monotonic() < deadline:
        if big.proc is None or big.proc.poll() is not None:
            raise RuntimeError(f"daemon died:\n{big.log_tail()}")
        time.sleep(0.05)
    details["all_running_s"] = all_running = time.perf_counter() - t0
    details["log_s"] = _log_milestones(big.log_path, spawned_wall)
    details["rss_kb_10k_actors"] = rss_big = _settled_rss(big.pid)
    per_actor_kb = (rss_big - rss0) / SCALE_ACTORS if rss_big and rss0 else None
    details["kb_per_idle_actor"] = per_actor_kb

    env = child_env(PULSING_ENDPOINT=big.endpoint)
    out_path = wd / "status.json"
    with open(out_path, "wb") as fh:
        first_wall, code = timed([PULSING, "status", "--json"], env=env, stdout=fh, timeout=120)
    try:
        status = json.loads(out_path.read_text())
        listed = len(status["actors"])
        running = sum(1 for a in status["actors"] if a["state"] == "running")
    except (ValueError, KeyError) as exc:
        listed = running = 0
        details["status_error"] = repr(exc)
    status_walls = [first_wall]
    for _ in range(ctx.pick(2, 4)):
        wall, _ = timed([PULSING, "status", "--json"], env=env, timeout=120)
        status_walls.append(wall)
    details.update(
        status_json_s=spread(status_walls),
        status_exit=code,
        status_listed=listed,
        status_running=running,
        status_bytes=out_path.stat().st_size,
        rss_kb_after_status=rss_kb(big.pid),
    )
    big.stop(grace=30.0)

    # 3) 1,000 concurrent NDJSON readers on one live stream
    details["readers"] = _scale_readers(ctx, wd)
    ctx.details["scale"] = details

    ctx.row(
        "scale",
        f"start-up to all {SCALE_ACTORS:,} running",
        all_running,
        "s",
        target="info",
        note=(
            f"health after {details['health_s']:.2f} s; log: first actor starting "
            f"{_secs(details['log_s']['first_actor_starting'])}, listening "
            f"{_secs(details['log_s']['listening'])}, last running "
            f"{_secs(details['log_s']['last_running'])}"
        ),
    )
    ctx.row(
        "scale",
        "RSS per idle actor",
        per_actor_kb,
        "KB",
        target="<= 20 KB",
        ok=per_actor_kb is not None and per_actor_kb <= 20,
        note=f"{rss_big and rss_big // 1024} MB vs {rss0 and rss0 // 1024} MB empty",
    )
    status_s = median(status_walls)
    ok = status_s is not None and status_s <= 1.0 and running == SCALE_ACTORS and code == 0
    ctx.row(
        "scale",
        f"pulsing status --json ({SCALE_ACTORS:,} actors)",
        status_s,
        "s",
        target="<= 1 s",
        ok=ok,
        note=f"{listed} listed, {running} running, {details['status_bytes'] // 1024} KB",
    )
    rd = details["readers"]
    ctx.row(
        "scale",
        f"{SCALE_READERS:,} NDJSON readers, one stream",
        rd["completed"],
        "readers",
        target=f"all {SCALE_READERS} get every chunk",
        ok=rd["completed"] == SCALE_READERS and rd["records_min"] == rd["chunks"],
        note=(
            f"RSS {rd['rss_kb_before'] // 1024}/{rd['rss_kb_peak'] // 1024}/"
            f"{rd['rss_kb_after'] // 1024} MB before/peak/after, {rd['elapsed']:.1f} s"
        ),
    )


def _scale_readers(ctx: Context, wd: Path) -> dict[str, Any]:
    chunks = ctx.pick(2000, 3000)
    daemon = ctx.own(Daemon(wd, '[actors.streamer]\nclass = "actors:Streamer"\n', name="readers"))
    daemon.start()
    before = _settled_rss(daemon.pid, 0.5)
    status, body = harness.http_json(
        daemon.url("/v1/actors/streamer/streams"),
        {"op": "paced", "args": {"n": chunks, "batch": 20, "delay": 0.01}},
    )
    if status not in (200, 201):
        raise RuntimeError(f"cannot start stream: {status} {body}")
    stream_id = body["stream"]
    loader = harness.start_loadgen(
        {
            "mode": "readers",
            "port": daemon.port,
            "method": "GET",
            "path": f"/v1/streams/{stream_id}?from=0",
            "headers": {"Accept": "application/x-ndjson"},
            "readers": SCALE_READERS,
            "timeout": 150,
        }
    )
    peak = before or 0
    cpu0 = cpu_seconds(daemon.pid)
    while loader.poll() is None:
        peak = max(peak, rss_kb(daemon.pid) or 0)
        time.sleep(0.05)
    result = harness.finish_loadgen(loader, timeout=10)
    cpu = cpu_seconds(daemon.pid) - cpu0
    after = _settled_rss(daemon.pid, 1.0)
    daemon.stop()
    return {
        **result,
        "chunks": chunks,
        "rss_kb_before": before,
        "rss_kb_peak": peak,
        "rss_kb_after": after,
        "daemon_cpu_s": cpu,
    }


# ---------------------------------------------------------------------- event_followers
EVENT_FOLLOWERS = 100
EVENT_EVERY = 0.25  # seconds between crashes of crash_q: ~16 events/s (failure, restart, states)
EVENT_ACTORS = """
[actors.trivial]
class = "actors:Trivial"

[actors.crash_q]
class = "actors:Crasher"
min_backoff = 0.05
max_backoff = 0.05
max_restarts = 1000000
"""


class EventSource:
    """Crashes an actor every ``every`` seconds, so the followers have events to carry."""

    def __init__(self, port: int, every: float = EVENT_EVERY) -> None:
        import threading

        self.port = port
        self.every = every
        self.crashes = 0  # crash asks answered
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client

        while not self.stop.wait(self.every):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request(
                    "POST",
                    "/v1/actors/crash_q/ask",
                    body=b'{"op":"crash","args":{}}',
                    headers={"Content-Type": "application/json"},
                )
                conn.getresponse().read()
                self.crashes += 1
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self) -> EventSource:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def start_followers(port: int, followers: int = EVENT_FOLLOWERS) -> subprocess.Popen:
    """``benchmarks.event_followers``: ``followers`` NDJSON followers of the event log at
    ``port``, all connected when this returns (stop it with ``terminate``)."""
    process = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.event_followers", str(port), str(followers)],
        stdout=subprocess.PIPE, text=True, cwd=str(harness.REPO), env=child_env(),
    )  # fmt: skip
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("event followers did not connect")
    return process


def event_followers(ctx: Context) -> None:
    """Ask throughput with 100 followers of the event log (`pulsing events -f`) vs none.

    Both variants run against one daemon while an actor crashes every EVENT_EVERY
    seconds (~16 events/s fanned out to every follower); rounds are interleaved.
    """
    wd = ctx.workdir("events")
    daemon = ctx.own(Daemon(wd, EVENT_ACTORS)).start()
    floor = floor_server(ctx)  # its own event source ticks at EVENT_EVERY all along
    specs = {
        "none": (daemon, _ask_spec(daemon.port, "/v1/actors/trivial/ask", "aecho")),
        "followers": (daemon, _ask_spec(daemon.port, "/v1/actors/trivial/ask", "aecho")),
        "floor_none": (floor, _ask_spec(floor.port, "/mailbox", "aecho")),
        "floor_followers": (floor, _ask_spec(floor.port, "/mailbox", "aecho")),
    }
    rounds = ctx.pick(3, 5)
    warmup, duration = ctx.pick((0.4, 1.5), (0.5, 2.5))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    received: list[dict[str, Any]] = []
    with EventSource(daemon.port):
        for r in range(rounds):
            for name in _rotate(list(runs), r):
                server, spec = specs[name]
                followers = start_followers(server.port) if name.endswith("followers") else None
                cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
                result = run_loadgen(
                    {**spec, "mode": "throughput", "conns": 64, "warmup": warmup,
                     "duration": duration, "sample_every": 4}
                )  # fmt: skip
                cpu = cpu_seconds(server.pid) - cpu0
                result["server_cpu_util"] = cpu / (time.perf_counter() - t0)
                result["server_cpu_us_per_req"] = 1e6 * cpu / max(1, result["total_requests"])
                runs[name].append(result)
                if followers is not None:
                    followers.terminate()
                    out, _ = followers.communicate(timeout=30)
                    if name == "followers":
                        received.append(json.loads(out.strip().splitlines()[-1]))
    summary = {name: _summ_throughput(runs[name]) for name in runs}
    ctx.details["event_followers"] = {
        "followers": EVENT_FOLLOWERS,
        "event_every_s": EVENT_EVERY,
        "variants": summary,
        "received": received,
        "runs": runs,
    }
    base = summary["none"]["rps_median"]
    ctx.row(
        "event_followers", "async op, no followers", base, "req/s", note=_tput_note(summary["none"])
    )
    # The floor (benchmarks/floors.py): the mailbox echo with and without 100 NDJSON
    # followers that get the same number of event lines per second, encoded once.
    floor_base = summary["floor_none"]["rps_median"]
    floor_value = summary["floor_followers"]["rps_median"]
    floor_ratio = _ratio(floor_value, floor_base)
    ctx.row(
        "event_followers",
        f"floor: mailbox echo, {EVENT_FOLLOWERS} NDJSON followers vs none",
        floor_value,
        "req/s",
        floor_base,
        floor_ratio,
        "info",
        None,
        _tput_note(summary["floor_followers"]),
    )
    value = summary["followers"]["rps_median"]
    ratio = _ratio(value, base)
    carried = median([float(r["events"]) / EVENT_FOLLOWERS for r in received])
    dropped = sum(r["dropped"] for r in received)
    per_round = [
        _ratio(a["rps"], b["rps"]) for a, b in zip(runs["followers"], runs["none"], strict=True)
    ]
    note = f"{_tput_note(summary['followers'])}; ~{carried:.0f} events per follower per round"
    if None not in per_round:
        note += f"; per-round median {median(per_round):.2f}x"  # type: ignore[arg-type]
    relative = _ratio(ratio, floor_ratio)
    if relative is not None:
        note += f"; {relative:.2f}x the floor's ratio ({floor_ratio:.2f}x)"
    ctx.row(
        "event_followers",
        f"async op, {EVENT_FOLLOWERS} events -f followers",
        value,
        "req/s",
        base,
        ratio,
        ">= 0.95x none",
        ratio is not None and ratio >= 0.95 and not summary["followers"]["errors"] and not dropped,
        note + (f"; {dropped} followers cut off!" if dropped else ""),
        relative,
    )


# ---------------------------------------------------------------------- actor_logs
LOG_ACTORS = """
[actors.chatty]
class = "actors:Chatty"
"""


def actor_logs(ctx: Context) -> None:
    """Asks/s of an actor that writes one line per ask, with the daemon capturing its
    output into its logs (state_dir/logs) vs not (PULSING_LOG_CAPTURE=0: print goes to
    the daemon's stdout, a file here, and logging.info is dropped at the root logger's
    level WARNING, as before per-actor logs). Also a quiet op on both daemons (the cost
    of capture to actors that write nothing) and an annotated op vs an unannotated one
    (the argument check), and the floor of capturing a logging call: the record Python's
    logging makes anyway, handed to a handler that does nothing. Rounds are interleaved.
    """
    wd = ctx.workdir("logs")
    on = ctx.own(Daemon(wd, LOG_ACTORS, name="capture")).start()
    off = ctx.own(Daemon(wd, LOG_ACTORS, name="nocapture", env={"PULSING_LOG_CAPTURE": "0"}))
    off.start()

    def ask(server: Daemon, op: str) -> tuple[int, dict[str, Any]]:
        return server.pid, _ask_spec(server.port, "/v1/actors/chatty/ask", op)

    targets = {
        "logged_off": ask(off, "logged"), "logged_on": ask(on, "logged"),
        "logged_floor": ask(off, "logged_floor"),
        "printed_off": ask(off, "printed"), "printed_on": ask(on, "printed"),
        "quiet_off": ask(off, "quiet"), "quiet_on": ask(on, "quiet"),
        "typed_on": ask(on, "typed"),
    }  # fmt: skip
    runs = _throughput_rounds(ctx, targets, list(targets), 64)
    summary = {name: _summ_throughput(runs[name]) for name in targets}
    written = sum(p.stat().st_size for p in (wd / "capture-state" / "logs").glob("chatty.log*"))
    ctx.details["actor_logs"] = {"variants": summary, "log_bytes": written, "runs": runs}
    for base_name, name, label, target in (
        ("logged_off", "logged_on", "logging.info per ask, captured vs not", 0.8),
        ("printed_off", "printed_on", "print per ask, captured vs to stdout", 0.8),
        ("quiet_off", "quiet_on", "quiet async op, capture on vs off", 0.95),
        ("quiet_on", "typed_on", "annotated op (x: int) vs unannotated", 0.95),
        ("logged_floor", "logged_on", "logging.info per ask, captured vs the floor", None),
    ):
        base = summary[base_name]["rps_median"]
        value = summary[name]["rps_median"]
        ratio = _ratio(value, base)
        ctx.row(
            "actor_logs",
            label,
            value,
            "req/s",
            base,
            ratio,
            "info" if target is None else f">= {target}x",
            None
            if target is None
            else ratio is not None and ratio >= target and not summary[name]["errors"],
            _tput_note(summary[name])
            + (
                "; floor: the record Python's logging makes, to a handler that does nothing"
                if target is None
                else ""
            ),
        )


# ---------------------------------------------------------------------- reload
RELOAD_ACTORS = 10_000


def _reload_config(n: int, changing: dict[str, Any]) -> str:
    """``n`` idle actors, the ``trivial`` actor asks go to, and ``changing``: the one actor
    each reload changes -- a supervision key (``mailbox_size``) or its class."""
    return (
        _scale_config(n)
        + '[actors.trivial]\nclass = "actors:Trivial"\n'
        + f'[actors.changing]\nclass = "actors:{changing["class"]}"\n'
        + f"mailbox_size = {changing['mailbox_size']}\n"
    )


def _reload_once(daemon: Daemon, changing: dict[str, Any], kind: str) -> float:
    """Rewrite the config so exactly one actor changes (``kind``: live | restart), reload;
    returns the seconds the reload took, answer included."""
    _change_config(daemon, changing, kind)
    t0 = time.perf_counter()
    status, plan = http_json(daemon.url("/v1/reload"), {"dry_run": False}, timeout=60.0)
    took = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"reload answered {status}: {str(plan)[:300]}")
    expected = "updated" if kind == "live" else "restarted"
    if plan[expected] != ["changing"] or len(plan["unchanged"]) != RELOAD_ACTORS + 1:
        raise RuntimeError(f"unexpected plan: { {k: plan[k] for k in ('updated', 'restarted')} }")
    return took


def _change_config(daemon: Daemon, changing: dict[str, Any], kind: str) -> str:
    """Rewrite the daemon's config file so exactly one actor changes (``kind``: live, a
    supervision key | restart, its class); returns the text it replaced."""
    if kind == "live":
        changing["mailbox_size"] = 2001 - changing["mailbox_size"]  # 1000 <-> 1001
    else:
        changing["class"] = "Trivial" if changing["class"] == "Idle" else "Idle"
    text = daemon.config_path.read_text()
    head = text[: text.index("[actors.")]
    daemon.config_path.write_text(head + _reload_config(RELOAD_ACTORS, changing))
    return text


def _read_only_once(daemon: Daemon, changing: dict[str, Any], running: Any) -> None:
    """The floor of a reload beside the asks: the file rewritten as for a reload, then
    read and checked by the reload's own reader (``reload_plan.main``, a child process
    at nice 10) given the request the daemon would give it (``running``: the daemon's
    ``[daemon]`` config), with no reload in the daemon."""
    import pickle
    import sys

    from pulsing_daemon.reload import _PACKAGE_ROOT, _READER, TABLES_CACHE
    from pulsing_daemon.reload_plan import Request

    old_text = _change_config(daemon, changing, "live")
    request = Request(
        path=str(daemon.config_path),
        old_text=old_text,
        running=running,
        token=None,
        listen_override=None,
        sys_path=[str(harness.BENCH_DIR), *sys.path],
        tables_cache=str(running.state_dir / f"floor-{TABLES_CACHE}"),
    )
    try:
        subprocess.run(
            [PYTHON, "-c", _READER, _PACKAGE_ROOT],
            input=pickle.dumps(request, pickle.HIGHEST_PROTOCOL),
            capture_output=True,
            check=True,
            timeout=60,
        )
    finally:
        # The daemon still runs the text it had: put it back, so that the next reload
        # (in the "during" rounds) changes exactly one actor again.
        _change_config(daemon, changing, "live")


def reload(ctx: Context) -> None:
    """Reload of a 10,000-actor config that changes one actor: how long it takes, and the
    ask p99 while reloads run back to back against the p99 without (interleaved rounds)."""
    import threading

    wd = ctx.workdir("reload")
    changing: dict[str, Any] = {"class": "Idle", "mailbox_size": 1000}
    config = _reload_config(RELOAD_ACTORS, changing)
    daemon = ctx.own(Daemon(wd, config, name="reload"))
    daemon.start(timeout=180.0)
    timings: dict[str, list[float]] = {"live": [], "restart": []}
    for _ in range(ctx.pick(3, 6)):
        for kind in ("live", "restart"):
            timings[kind].append(_reload_once(daemon, changing, kind))

    spec = {
        **_ask_spec(daemon.port, "/v1/actors/trivial/ask", "echo"),
        "mode": "latency",
        "requests": ctx.pick(1500, 3000),
        "warmup_requests": 200,
        "raw": True,
    }
    # "reader": the floor -- the same file rewrites, read by the reload's own reader
    # process, with no reload in the daemon (_read_only_once).
    from pulsing_daemon.config import parse_config

    text = daemon.config_path.read_text()  # only its [daemon] table: no actor to parse
    running = parse_config(text[: text.index("[actors.")], daemon.config_path).daemon
    samples: dict[str, list[float]] = {"before": [], "during": [], "reader": []}
    errors = dict.fromkeys(samples, 0)
    background = {"during": 0, "reader": 0}
    for r in range(ctx.pick(3, 5)):
        for variant in _rotate(["before", "during", "reader"], r):
            stop = threading.Event()
            done: list[int] = []
            failed: list[BaseException] = []

            def work_loop(
                variant: str = variant,
                stop: threading.Event = stop,
                done: list[int] = done,
                failed: list[BaseException] = failed,
            ) -> None:
                try:
                    while not stop.is_set():
                        if variant == "during":
                            _reload_once(daemon, changing, "live")
                        else:
                            _read_only_once(daemon, changing, running)
                        done.append(1)
                except BaseException as exc:  # raised below, in the benchmark's thread
                    failed.append(exc)

            loop = threading.Thread(target=work_loop) if variant != "before" else None
            if loop is not None:
                loop.start()
            result = run_loadgen(spec)
            stop.set()
            if loop is not None:
                loop.join(60)
                if failed:
                    raise RuntimeError(f"{variant} rounds: {failed[0]}") from failed[0]
                background[variant] += len(done)
            samples[variant].extend(result["raw_us"])
            errors[variant] += result["errors"]
    p99 = {k: percentile(v, 0.99) / 1000 for k, v in samples.items()}
    p50 = {k: percentile(v, 0.5) / 1000 for k, v in samples.items()}
    ctx.details["reload"] = {
        "actors": RELOAD_ACTORS + 2,
        "reload_s": {kind: spread(values) for kind, values in timings.items()},
        "ask_p50_ms": p50,
        "ask_p99_ms": p99,
        "ask_max_ms": {k: max(v) / 1000 for k, v in samples.items()},
        "reloads_during_latency": background["during"],
        "reader_runs_during_latency": background["reader"],
        "errors": errors,
    }
    labels = {"live": "one actor's supervision key", "restart": "one actor's class (restart)"}
    for kind, values in timings.items():
        value = median(values)
        ctx.row(
            "reload",
            f"{RELOAD_ACTORS:,} actors, {labels[kind]}",
            value,
            "s",
            target="<= 1 s",
            ok=value is not None and value <= 1.0,
            note=f"max {max(values):.2f} s over {len(values)} reloads",
        )
    floor_what = "the reload's config reader alone, beside the asks"
    ctx.row(
        "reload",
        f"floor: {floor_what}",
        p99["reader"],
        "ms",
        p99["before"],
        _ratio(p99["reader"], p99["before"]),
        "info (vs without)",
        None,
        f"{background['reader']} reads during the runs; p50 {p50['reader']:.2f} ms; the "
        "file rewritten and read as for a reload, no reload in the daemon",
    )
    ratio = _ratio(p99["during"], p99["before"])
    ctx.row(
        "reload",
        "ask p99 during reloads",
        p99["during"],
        "ms",
        p99["before"],
        ratio,
        "<= 2.0x without",
        ratio is not None and ratio <= 2.0 and not any(errors.values()),
        f"{background['during']} reloads during the runs; p50 {p50['during']:.2f} vs "
        f"{p50['before']:.2f} ms; "
        + _floor_note(p99["during"], p99["reader"], "reader alone")
        + (f"; errors {errors}" if any(errors.values()) else ""),
        _ratio(p99["during"], p99["reader"]),
    )


# ---------------------------------------------------------------------- ray
def ray(ctx: Context) -> None:
    """isolation = "ray" (benchmarks/ray_bench.py), run inside a loopback-only network
    namespace so that no Ray process can reach anything but loopback."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("ray") is None:
        ctx.row("ray", "skipped", None, "", note="Ray is not installed (pip install -e '.[ray]')")
        return
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("unshare")):
        ctx.row("ray", "skipped", None, "", note="needs root, unshare and ip to isolate Ray")
        return
    netns = f"pulsing-bench-{os.getpid()}"
    out = ctx.workdir("ray") / "ray.json"
    make_loopback_netns(netns)
    try:
        command = ["ip", "netns", "exec", netns, PYTHON, "-m", "benchmarks.ray_bench",
                   "--out", str(out), *(["--quick"] if ctx.quick else [])]  # fmt: skip
        done = subprocess.run(
            command, env=child_env(), capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray_bench exited with {done.returncode}: {done.stderr[-2000:]}")
    finally:
        pids = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        remove_netns(netns)
    r = json.loads(out.read_text())
    ctx.details["ray"] = r
    # The floor: a bare aiohttp server awaiting a raw Ray actor call per request.
    floor_what = "aiohttp -> raw Ray actor call"
    ctx.row(
        "ray", f"floor throughput: {floor_what}", r["floor_tput"], "req/s", r["raw_tput"],
        _ratio(r["floor_tput"], r["raw_tput"]), "info (vs raw Ray call)", None,
    )  # fmt: skip
    ctx.row(
        "ray", f"floor p50: {floor_what}", r["floor_p50_ms"], "ms", r["raw_p50_ms"],
        _ratio(r["floor_p50_ms"], r["raw_p50_ms"]), "info (vs raw Ray call)", None,
    )  # fmt: skip
    ctx.row(
        "ray", "ask throughput, 64 in flight", r["pulsing_tput"], "req/s", r["raw_tput"],
        _ratio(r["pulsing_tput"], r["raw_tput"]), ">= 0.8x raw Ray call",
        r["pulsing_tput"] >= 0.8 * r["raw_tput"],
        _floor_note(r["pulsing_tput"], r["floor_tput"], floor_what),
        _ratio(r["pulsing_tput"], r["floor_tput"]),
    )  # fmt: skip
    allowed = r["raw_p50_ms"] + r["bare_p50_ms"] + 0.2
    ctx.row(
        "ray", "ask p50", r["pulsing_p50_ms"], "ms", r["raw_p50_ms"],
        _ratio(r["pulsing_p50_ms"], r["raw_p50_ms"]), f"<= raw + bare HTTP + 0.2 = {allowed:.2f}",
        r["pulsing_p50_ms"] <= allowed, f"bare HTTP p50 {r['bare_p50_ms']:.2f} ms; "
        + _floor_note(r["pulsing_p50_ms"], r["floor_p50_ms"], floor_what),
        _ratio(r["pulsing_p50_ms"], r["floor_p50_ms"]),
    )  # fmt: skip
    problems = r["pulsing_restart_problems"]
    ctx.row(
        "ray", "crash -> next success", r["pulsing_restart_ms"], "ms", r["ray_restart_ms"],
        _ratio(r["pulsing_restart_ms"], r["ray_restart_ms"]), "info (vs Ray's own restart)",
        None, f"ask queued behind the crash {r['pulsing_restart_queued_ms']:.0f} ms; first crash "
        f"(no warm spare yet) {r['pulsing_first_crash_ms'] or 0:.0f} ms; min_backoff "
        f"{RESTART_BACKOFF}s" + (f"; problems {problems[:1]}" if problems else ""),
    )  # fmt: skip
    ctx.row(
        "ray", "stream chunks/s", r["ray_stream_cps"], "chunks/s", r["inline_stream_cps"],
        _ratio(r["ray_stream_cps"], r["inline_stream_cps"]), "info (vs inline)",
    )  # fmt: skip


ALL: dict[str, Callable[[Context], None]] = {
    "ask_throughput": ask_throughput,
    "ask_latency": ask_latency,
    "process_vs_inline": process_vs_inline,
    "stream": stream,
    "cli_startup": cli_startup,
    "restart_latency": restart_latency,
    "event_followers": event_followers,
    "actor_logs": actor_logs,
    "scale": scale,
    "reload": reload,
    "ray": ray,
}

# How the cost grows as the durable state grows (benchmarks/state.py).
from benchmarks import state as _state  # noqa: E402

ALL.update(_state.SUITES)
