"""The ``ray`` benchmark's driver: ``python -m benchmarks.ray_bench --out FILE``.

Run by ``suites.ray`` inside a loopback-only network namespace (``ip netns exec``),
never directly: it starts a Ray head, a pulsing daemon joining it, and a raw Ray
actor, and measures, interleaved round by round:

- asks: pulsing ask to a Ray-hosted actor (HTTP, loadgen) vs a raw Ray actor call
  from asyncio -- throughput with 64 in flight, and sequential p50; plus the bare
  aiohttp echo's p50 (what one HTTP hop costs), and the floor: a bare aiohttp server
  whose handler awaits a raw Ray actor call (``benchmarks/floors.py``, loadgen, the
  least an HTTP front to a Ray actor costs);
- crash -> next success: a Ray-hosted actor crashing (min_backoff 0.05) vs Ray's own
  restart of a raw actor (max_restarts=-1) whose process exits;
- streams: chunks/s of ``pulsing stream`` from a Ray-hosted actor vs the same op inline.

Writes the figures as JSON to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    PULSING,
    BareServer,
    Daemon,
    FloorServer,
    child_env,
    median,
    percentile,
    run_loadgen,
    timed,
)
from benchmarks.suites import RESTART_BACKOFF, _restart_trials

ACTORS = f"""
[actors.rt]
class = "actors:Trivial"
isolation = "ray"

[actors.crash_q]
class = "actors:Crasher"
isolation = "ray"
min_backoff = {RESTART_BACKOFF}
max_backoff = {RESTART_BACKOFF}
max_restarts = 1000000

[actors.streamer]
class = "actors:Streamer"

[actors.ray_streamer]
class = "actors:Streamer"
isolation = "ray"
"""


PAUSE = 1.5  # seconds between two crashes of the same actor


class RawTrivial:
    def echo(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def die(self) -> None:
        os._exit(1)


def start_head(directory: Path) -> tuple[str, dict[str, str]]:
    home = directory / "home"
    home.mkdir(parents=True)
    (home / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")
    (directory / "auth_token").write_text(os.urandom(16).hex())
    env = {
        **child_env(),
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(directory / "auth_token"),
    }
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", "--port=6380",
         "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={directory / 's'}", "--num-cpus=8"],
        env=env, check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    return "127.0.0.1:6380", env


async def raw_throughput(handle: Any, seconds: float, in_flight: int = 64) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await handle.echo.remote(x=1)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


async def raw_latency(handle: Any, requests: int) -> list[float]:
    samples = []
    for _ in range(requests):
        t0 = time.perf_counter()
        await handle.echo.remote(x=1)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def ray_restart_trials(trials: int) -> list[float]:
    """Ray's own restart: a raw actor with max_restarts=-1 dies; time from the failed
    call to the next successful one (polling)."""
    import ray

    actor = ray.remote(max_restarts=-1, max_task_retries=0)(RawTrivial).remote()
    await actor.echo.remote()
    gaps = []
    for _ in range(trials):
        try:
            await actor.die.remote()
        except Exception:
            pass
        failed = time.perf_counter()
        while time.perf_counter() - failed < 30:
            try:
                await actor.echo.remote(x=1)
                break
            except Exception:
                await asyncio.sleep(0.005)
        gaps.append((time.perf_counter() - failed) * 1000)
        await asyncio.sleep(PAUSE)
    ray.kill(actor)
    return gaps


def pulsing_latency(daemon: Daemon, requests: int) -> list[float]:
    result = run_loadgen(
        {"port": daemon.port, "method": "POST", "path": "/v1/actors/rt/ask",
         "body": '{"op":"echo","args":{"x":1}}', "mode": "latency", "requests": requests,
         "warmup_requests": 100, "raw": True}
    )  # fmt: skip
    return [us / 1000 for us in result["raw_us"]]


def pulsing_throughput(daemon: Daemon, seconds: float) -> float:
    result = run_loadgen(
        {"port": daemon.port, "method": "POST", "path": "/v1/actors/rt/ask",
         "body": '{"op":"echo","args":{"x":1}}', "mode": "throughput", "conns": 64,
         "warmup": 0.5, "duration": seconds}
    )  # fmt: skip
    return float(result["rps"])


def bare_latency(bare: BareServer, requests: int) -> list[float]:
    result = run_loadgen(
        {"port": bare.port, "method": "POST", "path": "/echo",
         "body": '{"op":"echo","args":{"x":1}}', "mode": "latency", "requests": requests,
         "warmup_requests": 100, "raw": True}
    )  # fmt: skip
    return [us / 1000 for us in result["raw_us"]]


def floor_load(floor: FloorServer, mode: str, seconds: float, requests: int) -> dict[str, Any]:
    spec = {"port": floor.port, "method": "POST", "path": "/ray",
            "body": '{"op":"echo","args":{"x":1}}'}  # fmt: skip
    if mode == "throughput":
        spec.update(mode="throughput", conns=64, warmup=0.5, duration=seconds)
    else:
        spec.update(mode="latency", requests=requests, warmup_requests=100, raw=True)
    return run_loadgen(spec)


def stream_rate(daemon: Daemon, actor: str, n: int) -> float:
    env = child_env(PULSING_ENDPOINT=daemon.endpoint)
    wall, code = timed(
        [PULSING, "stream", actor, "chunks", f"n={n}", "--json"], env=env, timeout=300
    )
    if code != 0:
        raise RuntimeError(f"pulsing stream {actor} exited with {code}")
    return n / wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    rounds = 2 if ns.quick else 3
    seconds = 2.0 if ns.quick else 3.0
    requests = 600 if ns.quick else 1500
    chunks = 20_000 if ns.quick else 100_000
    directory = Path(tempfile.mkdtemp(prefix="prb-"))
    ray_dir = directory / "ray"
    ray_dir.mkdir()
    try:
        address, env = start_head(ray_dir)
        os.environ.update({k: v for k, v in env.items() if k.startswith("RAY_")})
        os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
        daemon = Daemon(
            directory, ACTORS, f'[daemon.ray]\naddress = "{address}"\nnamespace = "bench"\n',
            env={k: v for k, v in env.items() if k.startswith("RAY_")},
        )  # fmt: skip
        daemon.start(timeout=120)
        bare = BareServer(directory).start()
        floor = FloorServer(directory, ray_address=address).start(timeout=120)
        import ray

        ray.init(address=address, namespace="raw", log_to_driver=False, logging_level="ERROR")
        raw = ray.remote(max_restarts=0, max_task_retries=0)(RawTrivial).remote()
        ray.get(raw.echo.remote())
        results: dict[str, list[float]] = {
            k: [] for k in ("raw_tput", "pulsing_tput", "raw_lat", "pulsing_lat", "bare_lat",
                            "ray_stream", "inline_stream", "floor_tput", "floor_lat")
        }  # fmt: skip
        for r in range(rounds):
            order = ["raw", "pulsing", "bare", "floor"]
            for name in order[r % 4 :] + order[: r % 4]:
                if name == "raw":
                    results["raw_tput"].append(asyncio.run(raw_throughput(raw, seconds)))
                    results["raw_lat"] += asyncio.run(raw_latency(raw, requests))
                elif name == "pulsing":
                    results["pulsing_tput"].append(pulsing_throughput(daemon, seconds))
                    results["pulsing_lat"] += pulsing_latency(daemon, requests)
                elif name == "floor":
                    tput = floor_load(floor, "throughput", seconds, requests)
                    results["floor_tput"].append(float(tput["rps"]))
                    lat = floor_load(floor, "latency", seconds, requests)
                    results["floor_lat"] += [us / 1000 for us in lat["raw_us"]]
                else:
                    results["bare_lat"] += bare_latency(bare, requests)
            for actor, key in (("ray_streamer", "ray_stream"), ("streamer", "inline_stream")):
                results[key].append(stream_rate(daemon, actor, chunks))
        trials = 4 if ns.quick else 8
        # One crash at a time, PAUSE apart (Ray's side too): the first crash of an actor
        # has no warm spare yet (a fresh Ray actor); later ones find one ready.
        pulsing_restart = {"gap_ms": [], "problems": []}
        queued_restart = {"gap_ms": [], "problems": []}
        for variant, into in (("poll_queue", pulsing_restart), ("queued_behind", queued_restart)):
            for _ in range(trials + (variant == "poll_queue")):
                one = asyncio.run(_restart_trials(daemon.port, variant, 1))
                into["gap_ms"] += one["gap_ms"]
                into["problems"] += one["problems"]
                time.sleep(PAUSE)
        first_crash = pulsing_restart["gap_ms"].pop(0) if pulsing_restart["gap_ms"] else None
        ray_restart = asyncio.run(ray_restart_trials(trials))
        out = {
            "raw_tput": median(results["raw_tput"]),
            "pulsing_tput": median(results["pulsing_tput"]),
            "raw_p50_ms": percentile(results["raw_lat"], 0.5),
            "pulsing_p50_ms": percentile(results["pulsing_lat"], 0.5),
            "bare_p50_ms": percentile(results["bare_lat"], 0.5),
            "floor_tput": median(results["floor_tput"]),
            "floor_p50_ms": percentile(results["floor_lat"], 0.5),
            "ray_stream_cps": median(results["ray_stream"]),
            "inline_stream_cps": median(results["inline_stream"]),
            "pulsing_restart_ms": median(pulsing_restart["gap_ms"]),
            "pulsing_restart_gaps_ms": sorted(round(g, 1) for g in pulsing_restart["gap_ms"]),
            "pulsing_restart_queued_ms": median(queued_restart["gap_ms"]),
            "pulsing_first_crash_ms": first_crash,
            "pulsing_restart_problems": pulsing_restart["problems"] + queued_restart["problems"],
            "ray_restart_ms": median(ray_restart),
            "ray_restart_gaps_ms": sorted(round(g, 1) for g in ray_restart),
            "rounds": results,
        }
        ns.out.write_text(json.dumps(out, default=float))
        ray.shutdown()
        floor.stop()
        bare.stop()
        daemon.stop()
        return 0
    finally:  # never `ray stop`: the caller ends every process of the namespace
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
