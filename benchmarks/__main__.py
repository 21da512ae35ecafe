"""``python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--profile] [--keep]``

Runs the benchmarks (each interleaved with its baseline), prints a table and writes
the results as JSON (default ``benchmarks/results/latest.json``). ``--quick`` keeps the
whole run under about two and a half minutes and skips ``scale`` unless it is named in
``--only``; the full run stays under about fifteen (ten on a quiet machine).
``--profile`` also samples the daemon with py-spy under the ask and stream loads
(``pip install py-spy``) and puts the top frames in the JSON. Exit status: 0 when every
target is met, 1 otherwise, 2 on a harness error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.readme import fmt_ratio, fmt_value, verdict
from benchmarks.suites import ALL, Context, Row

QUICK_SKIP = {"scale", "reload"}
# Soft budgets: a benchmark that would start after this many seconds is skipped. The
# same-run floors (benchmarks/floors.py) added about 25 s to the quick run's first suites
# and about 60 s to the full run's; the budgets grew by as much, so that the floors do
# not push later benchmarks out of the run. The full run's first eleven suites take
# 520-710 s on this 2-CPU VM (the Ray suite then starts past 590 s), so its budget
# leaves room for the last ones: every row of the README's table comes from one run.
BUDGET = {True: 130.0, False: 900.0}


def render_table(rows: list[Row]) -> str:
    header = ("benchmark", "figure", "value", "baseline", "ratio", "target", "result")
    table = [header]
    for row in rows:
        table.append(
            (
                row.benchmark,
                row.figure,
                fmt_value(row.value, row.unit),
                fmt_value(row.baseline, row.unit) if row.baseline is not None else "",
                fmt_ratio(row.ratio, row.floor_ratio, row.ok),
                row.target,
                verdict(row.ok, row.target),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for n, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {row.benchmark} / {row.figure}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Benchmarks of pulsing against baselines."
    )
    parser.add_argument("--quick", action="store_true", help="short run (< ~2.5 min)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=sorted(ALL), help="run only these"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=harness.BENCH_DIR / "results" / "latest.json",
        help="where to write the results (default: benchmarks/results/latest.json)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the daemon under load")
    parser.add_argument("--keep", action="store_true", help="keep temp dirs (configs, logs)")
    ns = parser.parse_args(argv)

    names = ns.only or [n for n in ALL if not (ns.quick and n in QUICK_SKIP)]
    ctx = Context(quick=ns.quick, profile=ns.profile, keep=ns.keep)
    ctx.results_dir = ns.json.parent
    started = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    budget = BUDGET[ns.quick]
    status: dict[str, Any] = {}
    mode = "quick" if ns.quick else "full"
    print(
        f"pulsing benchmarks ({mode}): {', '.join(names)}\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    try:
        for name in names:
            elapsed = time.perf_counter() - started
            if elapsed > budget and not ns.only:
                status[name] = {"status": "skipped", "reason": f"time budget ({budget:.0f} s)"}
                print(f"- {name}: skipped (time budget)", flush=True)
                continue
            print(f"- {name} ...", end="", flush=True)
            t0 = time.perf_counter()
            try:
                ALL[name](ctx)
                status[name] = {"status": "ok", "seconds": round(time.perf_counter() - t0, 1)}
            except Exception as exc:
                status[name] = {
                    "status": "error",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                ctx.row(
                    name,
                    "harness error",
                    None,
                    "",
                    target="runs",
                    ok=False,
                    note=f"{type(exc).__name__}: {str(exc)[:300]}",
                )
            finally:
                # Benchmarks sharing the ask servers run back to back; stop the rest.
                if name not in ("ask_throughput", "ask_latency", "process_vs_inline"):
                    ctx.cleanup()
            print(f" {status[name]['status']} ({status[name].get('seconds', 0)} s)", flush=True)
    finally:
        ctx.cleanup()
    total = time.perf_counter() - started

    print()
    print(render_table(ctx.rows))
    for key, prof in ctx.profiles.items():
        print(f"\nprofile {key}: {prof.get('samples', 0)} samples ({prof.get('raw', '')})")
        for frame, pct in prof.get("self_pct", [])[:10]:
            print(f"  self {pct:5.1f}%  {frame}")
        for frame, pct in prof.get("inclusive_pct", [])[:10]:
            print(f"  incl {pct:5.1f}%  {frame}")
    print(f"\ntotal {total:.1f} s")

    failed = [r for r in ctx.rows if r.ok is False]
    results = {
        "schema": 1,
        "meta": {
            "mode": mode,
            "started": started_at,
            "seconds": round(total, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(),
            "benchmarks": status,
        },
        "rows": [r.as_dict() for r in ctx.rows],
        "details": ctx.details,
        "profiles": ctx.profiles,
        "passed": not failed,
    }
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {ns.json}")
    if any(s["status"] == "error" for s in status.values()):
        return 2
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
