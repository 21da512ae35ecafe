"""The load generator, run as its own process: ``python -m benchmarks.loadgen SPEC_JSON``.

N concurrent keep-alive connections on raw asyncio streams, each sending one
pre-built HTTP/1.1 request at a time (no pipelining) and reading the response by its
Content-Length. Only the stdlib is imported, so start-up is cheap and the client does
as little per request as possible. Prints one JSON object on stdout.

Modes (``spec["mode"]``):

- ``throughput``: ``conns`` connections for ``warmup`` + ``duration`` seconds; counts
  responses completed in the measured window; samples latencies.
- ``latency``: one connection, sequential; ``warmup_requests`` then ``requests``
  timed requests (or, with ``duration``, as many as fit). All latencies recorded.
- ``readers``: ``readers`` connections each GET one NDJSON stream to its end; counts
  records per reader and the time to the terminal record.

With ``"idempotency": true`` every request carries a unique ``Idempotency-Key``
(a counter: keys sort in the order sent); with ``"idempotency": "random"`` a random
32-hex-digit key (as a UUID would land: anywhere in the store's key order).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import Callable

_CL = b"content-length:"


def build_request(spec: dict) -> Callable[[], bytes]:
    """A function returning the next request's bytes (constant unless keys vary)."""
    method = spec.get("method", "GET")
    body = spec.get("body")
    body_bytes = body.encode() if isinstance(body, str) else b""
    head = [f"{method} {spec['path']} HTTP/1.1", f"Host: {spec['host']}:{spec['port']}"]
    for name, value in (spec.get("headers") or {}).items():
        head.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT"):
        head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(body_bytes)}")
    if not spec.get("idempotency"):
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body_bytes
        return lambda: data
    prefix = ("\r\n".join(head) + "\r\nIdempotency-Key: ").encode()
    suffix = b"\r\n\r\n" + body_bytes
    if spec["idempotency"] == "random":
        return lambda: b"%s%s%s" % (prefix, os.urandom(16).hex().encode(), suffix)
    prefix += f"lg-{os.getpid()}-{time.time_ns()}-".encode()
    counter = itertools.count()
    return lambda: b"%s%d%s" % (prefix, next(counter), suffix)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response framed by Content-Length (or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    i = head.find(b"Content-Length: ")
    if i >= 0:
        j = head.find(b"\r\n", i)
        return status, await reader.readexactly(int(head[i + 16 : j]))
    lower = head.lower()
    i = lower.find(_CL)
    if i >= 0:
        j = lower.find(b"\r\n", i)
        return status, await reader.readexactly(int(lower[i + 15 : j]))
    if b"chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, b""


class _State:
    def __init__(self) -> None:
        self.stop = False
        self.measuring = False
        self.count = 0
        self.total = 0  # every response, warm-up and tail included
        self.errors = 0
        self.error_samples: list[str] = []
        self.latencies: list[int] = []  # ns
        self.reconnects = 0


async def _worker(spec: dict, state: _State, make: Callable[[], bytes], sample_every: int) -> None:
    host, port = spec["host"], spec["port"]
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    clock = time.perf_counter_ns
    n = 0
    try:
        while not state.stop:
            data = make()
            t0 = clock()
            try:
                writer.write(data)
                status, body = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                state.reconnects += 1
                if state.measuring:
                    state.errors += 1
                    if len(state.error_samples) < 3:
                        state.error_samples.append(repr(exc))
                writer.close()
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
                continue
            t1 = clock()
            state.total += 1
            if state.measuring:
                state.count += 1
                if status != 200:
                    state.errors += 1
                    if len(state.error_samples) < 3:
                        state.error_samples.append(f"{status} {body[:200]!r}")
                n += 1
                if n % sample_every == 0:
                    state.latencies.append(t1 - t0)
    finally:
        writer.close()


def _percentiles(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {}
    values = sorted(values_ns)

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] / 1e6

    return {
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": values[-1] / 1e6,
        "mean_ms": sum(values) / len(values) / 1e6,
        "samples": len(values),
    }


async def throughput(spec: dict) -> dict:
    state = _State()
    make = build_request(spec)
    conns = int(spec.get("conns", 64))
    tasks = [
        asyncio.create_task(_worker(spec, state, make, int(spec.get("sample_every", 1))))
        for _ in range(conns)
    ]
    await asyncio.sleep(float(spec.get("warmup", 0.5)))
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    if failed:
        state.stop = True
        raise RuntimeError(f"connections failed: {failed[0].exception()!r}")
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    state.measuring = True
    await asyncio.sleep(float(spec.get("duration", 2.0)))
    state.measuring = False
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    count = state.count
    state.stop = True
    _done, pending = await asyncio.wait(tasks, timeout=5.0)
    for task in pending:
        task.cancel()
    return {
        "mode": "throughput",
        "conns": conns,
        "requests": count,
        "total_requests": state.total,
        "elapsed": elapsed,
        "rps": count / elapsed,
        "errors": state.errors,
        "error_samples": state.error_samples,
        "reconnects": state.reconnects,
        "client_cpu_fraction": cpu / elapsed,
        "latency": _percentiles(state.latencies),
    }


async def latency(spec: dict) -> dict:
    make = build_request(spec)
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"], limit=1 << 20)
    clock = time.perf_counter_ns
    errors = 0
    samples: list[str] = []
    for _ in range(int(spec.get("warmup_requests", 100))):
        writer.write(make())
        await read_response(reader)
    lat: list[int] = []
    duration = spec.get("duration")
    limit = int(spec.get("requests", 2000)) if duration is None else 1 << 62
    end = time.perf_counter() + float(duration) if duration is not None else float("inf")
    t_start = time.perf_counter()
    while len(lat) < limit and time.perf_counter() < end:
        data = make()
        t0 = clock()
        writer.write(data)
        status, body = await read_response(reader)
        lat.append(clock() - t0)
        if status != 200:
            errors += 1
            if len(samples) < 3:
                samples.append(f"{status} {body[:200]!r}")
        if spec.get("pause"):
            await asyncio.sleep(float(spec["pause"]))
    elapsed = time.perf_counter() - t_start
    writer.close()
    return {
        "mode": "latency",
        "requests": len(lat),
        "elapsed": elapsed,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        "errors": errors,
        "error_samples": samples,
        "latency": _percentiles(lat),
        "raw_us": [round(v / 1000, 1) for v in lat] if spec.get("raw") else None,
    }


async def _reader(spec: dict, make: Callable[[], bytes], out: list) -> None:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"], limit=1 << 20)
    writer.write(make())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    first = time.perf_counter() - t0
    records = 0
    ended = False
    tail = b""
    nbytes = 0
    while status == 200:
        data = await reader.read(1 << 18)
        if not data:
            break
        nbytes += len(data)
        window = tail + data
        records += window.count(b'{"seq":') - tail.count(b'{"seq":')
        if not ended and b'{"end":true}' in window:
            ended = True
        if ended and window.endswith(b"0\r\n\r\n"):
            break
        tail = window[-16:]
    writer.close()
    out.append(
        {
            "status": status,
            "records": records,
            "ended": ended,
            "first_byte": first,
            "elapsed": time.perf_counter() - t0,
            "bytes": nbytes,
        }
    )


async def readers(spec: dict) -> dict:
    make = build_request(spec)
    n = int(spec.get("readers", 100))
    out: list[dict] = []
    t0 = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(*(_reader(spec, make, out) for _ in range(n)), return_exceptions=True),
        float(spec.get("timeout", 120.0)),
    )
    elapsed = time.perf_counter() - t0
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    records = sorted(r["records"] for r in out)
    return {
        "mode": "readers",
        "readers": n,
        "completed": sum(1 for r in out if r["ended"]),
        "failures": len(failures),
        "failure_samples": failures[:3],
        "records_min": records[0] if records else 0,
        "records_max": records[-1] if records else 0,
        "elapsed": elapsed,
        "bytes": sum(r["bytes"] for r in out),
        "first_byte_max": max((r["first_byte"] for r in out), default=None),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    mode = spec.get("mode", "throughput")
    runner = {"throughput": throughput, "latency": latency, "readers": readers}[mode]
    result = asyncio.run(runner(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
