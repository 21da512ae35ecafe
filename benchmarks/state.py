"""How the cost grows with the durable state: benchmarks on large journals.

- ``keys_at_scale``: keyed asks against a store holding 1,000,000 finished records vs an
  empty one (two daemons, interleaved rounds), and the housekeeping prune pass over the
  big store (it runs on the event loop every minute).
- ``resume_depth``: time to the first chunk of a resume from the middle of finished
  streams of 10k, 1M and 10M chunks (full run; the quick run stops at 1M).
- ``retention``: 48 simulated hours of keyed asks and streams through the journal's own
  code with a shifted clock, the retention pass every simulated minute; the journal's
  bytes on disk hour by hour, against what retention keeps.

The big journals are written directly, with the journal's own schema (``Journal``
creates it) and one bulk ``INSERT ... SELECT`` per table in one transaction, not
through the daemon: a million asks would take minutes.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import Daemon, median, percentile

if TYPE_CHECKING:
    from benchmarks.suites import Context


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else value / baseline


ASK_ACTOR = '[actors.trivial]\nclass = "actors:Trivial"\n'
STORED_KEYS = 1_000_000
AECHO = '{"op":"aecho","args":{"x":1}}'
# What a stored record of that ask holds (fingerprint and outcome as the daemon writes them).
AECHO_FINGERPRINT = '["aecho",[],{"x":1}]'
AECHO_OUTCOME = '{"result":{"x":1}}'


def _new_journal(state_dir: Path) -> sqlite3.Connection:
    """A fresh journal.db with the journal's own schema, opened for a bulk load."""
    from pulsing_daemon.journal import Journal

    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    Journal(state_dir).close()
    db = sqlite3.connect(state_dir / "journal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # a bulk load: the daemon reopens it as usual
    db.execute("PRAGMA cache_size=-262144")
    return db


def _close_bulk(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _series(n: int) -> str:
    """A recursive CTE yielding i = 0 .. n-1 (no Python per row)."""
    return f"WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {n - 1}) "


def fill_asks(state_dir: Path, actor: str, n: int, created: float) -> None:
    """``n`` finished keyed asks of ``actor`` with random 32-hex-digit keys (as UUIDs)."""
    db = _new_journal(state_dir)
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO asks (actor, key, fingerprint, done, outcome, created, finished) "
        + _series(n)
        + "SELECT ?, lower(hex(randomblob(16))) AS k, ?, 1, ?, ?, ? FROM c ORDER BY k",
        (actor, AECHO_FINGERPRINT, AECHO_OUTCOME, created, created),
    )
    db.execute("COMMIT")
    _close_bulk(db)


def fill_streams(state_dir: Path, actor: str, sizes: list[int], created: float) -> dict[int, str]:
    """One finished stream of ``{"i": seq}`` chunks per size; returns size -> stream id."""
    db = _new_journal(state_dir)
    ids = {}
    for size in sizes:
        stream_id = f"s{size:016x}"
        ids[size] = stream_id
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO chunks (stream, seq, data) "
            + _series(size)
            + "SELECT ?, i, '{\"i\":' || i || '}' FROM c",
            (stream_id,),
        )
        total = db.execute(
            "SELECT SUM(LENGTH(data)) FROM chunks WHERE stream = ?", (stream_id,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO streams (id, actor, op, fingerprint, key, open, terminal, first_seq, "
            "next_seq, bytes, created, finished) VALUES (?, ?, 'chunks', ?, NULL, 0, "
            "'{\"end\":true}', 0, ?, ?, ?, ?)",
            (stream_id, actor, f'["chunks",[],{{"n":{size}}}]', size, total, created, created),
        )
        db.execute("COMMIT")
    _close_bulk(db)
    return ids


# ---------------------------------------------------------------------- keys_at_scale
def _prune_pass_ms(state_dir: Path, rounds: int = 5) -> float | None:
    """The housekeeping prune over the store (nothing expired), as the daemon runs it."""
    from pulsing_daemon.journal import Journal

    journal = Journal(state_dir)
    try:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            journal.prune_asks(86400.0)
            times.append((time.perf_counter() - t0) * 1000)
        return median(times)
    finally:
        journal.close()


def keys_at_scale(ctx: Context) -> None:
    from benchmarks.suites import _throughput_rounds, _tput_note  # (suites imports this module)

    wd = ctx.workdir("keys")
    empty = Daemon(wd, ASK_ACTOR, name="keys-empty")
    full = Daemon(wd, ASK_ACTOR, name="keys-full")
    t0 = time.perf_counter()
    fill_asks(wd / "keys-full-state", "trivial", STORED_KEYS, time.time())
    fill_s = time.perf_counter() - t0
    journal_mb = (wd / "keys-full-state" / "journal.db").stat().st_size / 1e6
    empty_dir = wd / "keys-empty-state"
    _new_journal(empty_dir).close()
    prune_ms = {"empty": _prune_pass_ms(empty_dir), "full": _prune_pass_ms(wd / "keys-full-state")}
    ctx.own(empty).start()
    ctx.own(full).start()

    def spec(daemon: Daemon) -> tuple[int, dict[str, Any]]:
        return daemon.pid, {
            "port": daemon.port,
            "method": "POST",
            "path": "/v1/actors/trivial/ask",
            "body": AECHO,
            "idempotency": "random",
        }

    targets = {"empty": spec(empty), "full": spec(full)}
    runs = _throughput_rounds(ctx, targets, ["empty", "full"], 64)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "rps_median": median([r["rps"] for r in rs]),
            "rps_rounds": [r["rps"] for r in rs],
            "errors": sum(r["errors"] for r in rs),
            "server_cpu_us_per_req_median": median([r["server_cpu_us_per_req"] for r in rs]),
            "server_cpu_util_median": median([r["server_cpu_util"] for r in rs]),
        }
    # Same-round ratios too: the spread says how much of the median ratio is noise.
    round_ratios = [f["rps"] / e["rps"] for e, f in zip(runs["empty"], runs["full"], strict=True)]
    ctx.details["keys_at_scale"] = {
        "stored_keys": STORED_KEYS,
        "fill_s": round(fill_s, 2),
        "journal_mb": round(journal_mb, 1),
        "prune_pass_ms": prune_ms,
        "variants": summary,
        "round_ratios": round_ratios,
    }
    base, value = summary["empty"]["rps_median"], summary["full"]["rps_median"]
    ratio = _ratio(value, base)
    ctx.row(
        "keys_at_scale",
        "async op + random Idempotency-Key, empty store",
        base,
        "req/s",
        note=_tput_note(summary["empty"]),
    )
    ctx.row(
        "keys_at_scale",
        f"the same, {STORED_KEYS:,} keys stored",
        value,
        "req/s",
        base,
        ratio,
        ">= 0.9x empty",
        ratio is not None and ratio >= 0.9 and not summary["full"]["errors"],
        f"{_tput_note(summary['full'])}; per-round ratios "
        + " ".join(f"{r:.2f}" for r in round_ratios)
        + f"; journal {journal_mb:.0f} MB",
    )
    ctx.row(
        "keys_at_scale",
        f"prune pass over {STORED_KEYS:,} keys (nothing expired)",
        prune_ms["full"],
        "ms",
        prune_ms["empty"],
        None,
        "<= 5 ms",
        prune_ms["full"] is not None and prune_ms["full"] <= 5.0,
        "housekeeping, on the event loop once a minute; baseline: empty store",
    )


# ---------------------------------------------------------------------- resume_depth
def _first_chunk_ms(port: int, stream_id: str, offset: int) -> float:
    """From connect to the first complete NDJSON chunk of ``GET /v1/streams/ID?from=N``
    (what ``pulsing stream --id ID --resume N`` sends); then hang up."""
    request = (
        f"GET /v1/streams/{stream_id}?from={offset} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: application/x-ndjson\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            part = sock.recv(65536)
            if not part:
                raise RuntimeError(f"connection closed: {data[:300]!r}")
            data += part
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"resume failed: {data[:300]!r}")
            if sep and b"}\n" in body:
                elapsed = (time.perf_counter() - t0) * 1000
                first = body.split(b"\r\n", 1)[1].split(b"\n", 1)[0]
                if f'"seq":{offset}'.encode() not in first:
                    raise RuntimeError(f"first chunk is not seq {offset}: {first[:200]!r}")
                return elapsed
            if len(data) > 1 << 20:
                raise RuntimeError("no chunk in the first MiB")


def resume_depth(ctx: Context) -> None:
    from benchmarks.suites import _rotate

    sizes = ctx.pick([10_000, 1_000_000], [10_000, 1_000_000, 10_000_000])
    wd = ctx.workdir("resume")
    daemon = Daemon(wd, '[actors.streamer]\nclass = "actors:Streamer"\n', name="resume")
    t0 = time.perf_counter()
    ids = fill_streams(wd / "resume-state", "streamer", sizes, time.time())
    fill_s = time.perf_counter() - t0
    journal_mb = (wd / "resume-state" / "journal.db").stat().st_size / 1e6
    ctx.own(daemon).start()
    trials = ctx.pick(20, 40)
    rng = __import__("random").Random(17)
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for size in sizes:  # warm-up: one resume each
        _first_chunk_ms(daemon.port, ids[size], size // 2)
    for r in range(trials):
        for size in _rotate(sizes, r):
            offset = size // 2 + rng.randrange(-size // 20, size // 20)
            samples[size].append(_first_chunk_ms(daemon.port, ids[size], offset))
            time.sleep(0.02)  # let the daemon notice the hang-up before the next one
    stats = {
        size: {
            "p50_ms": statistics.median(v),
            "p90_ms": percentile(v, 0.9),
            "max_ms": max(v),
        }
        for size, v in samples.items()
    }
    ctx.details["resume_depth"] = {
        "sizes": sizes,
        "trials": trials,
        "fill_s": round(fill_s, 2),
        "journal_mb": round(journal_mb, 1),
        "first_chunk_ms": stats,
        "samples_ms": samples,
    }
    base = stats[sizes[0]]["p50_ms"]
    for size in sizes:
        s = stats[size]
        ratio = _ratio(s["p50_ms"], base)
        flat = size == sizes[0] or (ratio is not None and ratio <= 1.5)
        ctx.row(
            "resume_depth",
            f"resume mid-stream, {size:,}-chunk journal: first chunk",
            s["p50_ms"],
            "ms",
            None if size == sizes[0] else base,
            None if size == sizes[0] else ratio,
            "<= 20 ms" + ("" if size == sizes[0] else f", <= 1.5x {sizes[0]:,}"),
            s["p50_ms"] <= 20.0 and flat,
            f"p90 {s['p90_ms']:.1f} max {s['max_ms']:.1f} ms"
            + (f"; journal {journal_mb:.0f} MB" if size == sizes[-1] else ""),
        )


# ---------------------------------------------------------------------- retention
class _Clock:
    """A stand-in for the ``time`` module in pulsing_daemon.journal: simulated time."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now


def _disk_bytes(state_dir: Path) -> tuple[int, int]:
    def size(name: str) -> int:
        try:
            return (state_dir / name).stat().st_size
        except OSError:
            return 0

    return size("journal.db"), size("journal.db-wal")


def simulate_retention(
    state_dir: Path,
    hours: int,
    asks_per_minute: int,
    stream_every_minutes: int,
    chunks_per_stream: int,
    idempotency_retention: float,
    stream_age: float,
    stream_bytes: int,
    step_minutes: int = 1,
) -> dict[str, Any]:
    """Keyed asks and streams through the journal's own code, a simulated minute at a
    time, with the housekeeping prune every simulated minute (as the daemon runs it;
    ``step_minutes`` > 1 runs a coarser simulation: that many minutes' asks, then one
    prune). Returns the file sizes at each simulated hour."""
    from pulsing_daemon import journal as journal_mod
    from pulsing_daemon.journal import Journal, StreamRecord

    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    clock = _Clock(1.7e9)
    real_time = journal_mod.time
    journal_mod.time = clock  # type: ignore[assignment]
    # Records are stamped by the journal's wall clock (a default argument bound at
    # import): the simulated one, or no ask would ever be old enough to prune.
    journal = Journal(state_dir, wall_clock=clock.time)
    hourly = []
    wal_max = 0
    serial = 0
    try:
        for minute in range(0, hours * 60, step_minutes):
            clock.now += 60.0 * step_minutes
            keys = [os.urandom(16).hex() for _ in range(asks_per_minute * step_minutes)]
            with journal.transaction():  # the claims of one group commit
                for key in keys:
                    journal.claim_ask("trivial", key, AECHO_FINGERPRINT)
            with journal.transaction():  # their outcomes
                for key in keys:
                    journal.finish_ask("trivial", key, AECHO_OUTCOME)
            if minute % stream_every_minutes < step_minutes:
                serial += 1
                stream_id = f"s{serial:016x}"
                journal.create_stream(
                    StreamRecord(
                        stream_id, "streamer", "chunks", "[]", None, True, None, 0, 0, 0,
                        clock.now, None,
                    )
                )  # fmt: skip
                kept = 0
                for first in range(0, chunks_per_stream, 512):
                    last = min(chunks_per_stream, first + 512)
                    batch = [f'{{"i":{i}}}' for i in range(first, last)]
                    kept = journal.append_chunks(stream_id, first, batch, 1_000_000, kept)
                journal.finish_stream(stream_id, '{"end":true}')
            journal.prune_streams(stream_age, stream_bytes, now=clock.now)
            journal.prune_asks(idempotency_retention, now=clock.now)
            db_bytes, wal_bytes = _disk_bytes(state_dir)
            wal_max = max(wal_max, wal_bytes)
            if (minute + step_minutes) % 60 == 0:
                asks, streams_n, chunks, live = journal.db.execute(
                    "SELECT (SELECT COUNT(*) FROM asks), (SELECT COUNT(*) FROM streams), "
                    "(SELECT COUNT(*) FROM chunks), "
                    "(SELECT COALESCE(SUM(LENGTH(key) + LENGTH(fingerprint) + LENGTH(outcome)), 0)"
                    " FROM asks) + (SELECT COALESCE(SUM(bytes), 0) FROM streams)"
                ).fetchone()
                hourly.append(
                    {
                        "hour": (minute + step_minutes) // 60,
                        "db_bytes": db_bytes,
                        "wal_bytes": wal_bytes,
                        "asks": asks,
                        "streams": streams_n,
                        "chunks": chunks,
                        "payload_bytes": live,
                    }
                )
        # The daemon was down for a whole retention period: the first prune after the
        # restart drops everything at once (the largest transaction retention makes).
        clock.now += max(idempotency_retention, stream_age) + 60.0
        journal.prune_streams(stream_age, stream_bytes, now=clock.now)
        journal.prune_asks(idempotency_retention, now=clock.now)
        after_catch_up = _disk_bytes(state_dir)
        with journal.transaction():  # the next keyed ask
            journal.claim_ask("trivial", os.urandom(16).hex(), AECHO_FINGERPRINT)
        after_next_write = _disk_bytes(state_dir)
    finally:
        journal_mod.time = real_time
        journal.db.close()  # not close(): that checkpoints and truncates the WAL
    return {
        "hourly": hourly,
        "wal_max_bytes": wal_max,
        "after_catch_up": after_catch_up,
        "after_next_write": after_next_write,
    }


def retention(ctx: Context) -> None:
    hours = 48
    asks_per_minute = ctx.pick(60, 200)
    setup = {
        "hours": hours,
        "asks_per_minute": asks_per_minute,
        "stream_every_minutes": 10,
        "chunks_per_stream": 5000,
        "idempotency_retention": 86400.0,  # the default
        "stream_age": 6 * 3600.0,  # stream_retention_age = 21600
        "stream_bytes": 1 << 30,  # the default
        "step_minutes": ctx.pick(5, 1),
    }
    wd = ctx.workdir("retention")
    t0 = time.perf_counter()
    result = simulate_retention(wd / "state", **setup)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    ctx.details["retention"] = {**setup, "seconds": round(seconds, 1), **result}
    hourly = {h["hour"]: h for h in result["hourly"]}

    def total(h: dict[str, Any]) -> int:
        return h["db_bytes"] + h["wal_bytes"]

    day, end = hourly[24], hourly[hours]
    growth = total(end) / total(day)
    ctx.row(
        "retention",
        "journal on disk after 24 h of load (db + WAL)",
        total(day) / 1e6,
        "MB",
        target="info",
        note=(
            f"{day['asks']:,} keys, {day['streams']} streams / {day['chunks']:,} chunks kept; "
            f"{day['payload_bytes'] / 1e6:.1f} MB of payload; {asks_per_minute} keyed asks/min, "
            f"a 5,000-chunk stream every 10 min, keys kept 24 h, streams 6 h"
        ),
    )
    ctx.row(
        "retention",
        f"the same after {hours} h (retention pass every {setup['step_minutes']} min)",
        total(end) / 1e6,
        "MB",
        total(day) / 1e6,
        growth,
        "<= 1.1x 24 h (bounded)",
        growth <= 1.1,
        f"WAL {end['wal_bytes'] / 1e6:.1f} MB now, {result['wal_max_bytes'] / 1e6:.1f} MB at most",
    )
    db_bytes, wal_bytes = result["after_next_write"]
    ctx.row(
        "retention",
        "after a prune of everything (daemon down a whole retention period)",
        (db_bytes + wal_bytes) / 1e6,
        "MB",
        total(end) / 1e6,
        _ratio(db_bytes + wal_bytes, total(end)),
        "info",
        note=(
            f"WAL {result['after_catch_up'][1] / 1e6:.1f} MB after that prune, "
            f"{wal_bytes / 1e6:.1f} MB after the next write (journal_size_limit); "
            "freed database pages are reused, not returned"
        ),
    )


# ---------------------------------------------------------------------- actor_memory
MEMORY_ACTORS = 10_000


def daemon_rss_per_actor(
    wd: Path, n: int, name: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """RSS of a daemon hosting ``n`` idle inline actors minus one hosting none, per actor."""
    from benchmarks.harness import PYTHON, child_env, rss_kb
    from benchmarks.suites import _count_running, _scale_config

    def settled(daemon: Daemon) -> int | None:
        time.sleep(1.0)
        return rss_kb(daemon.pid)

    empty = Daemon(wd, "", name=f"{name}-empty", log_level="warning")
    big = Daemon(wd, _scale_config(n), name=f"{name}-{n}")
    cmd = [PYTHON, "-m", "pulsing_daemon", "--config"]
    try:
        empty.started_at = time.perf_counter()
        empty.spawn([*cmd, str(empty.config_path), "--log-level", "warning"], env=env)
        empty.wait_health(60.0)
        rss0 = settled(empty)
    finally:
        empty.stop()
    try:
        big.started_at = t0 = time.perf_counter()
        big.spawn([*cmd, str(big.config_path)], env=env or child_env())
        big.wait_health(120.0)
        deadline = time.monotonic() + 180.0
        while _count_running(big.log_path) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        running_s = time.perf_counter() - t0
        rss1 = settled(big)
    finally:
        big.stop(grace=30.0)
    per_actor = (rss1 - rss0) * 1024 / n / 1000 if rss1 and rss0 else None  # KB (1000 B)
    return {"rss_kb_0": rss0, "rss_kb_n": rss1, "kb_per_actor": per_actor, "running_s": running_s}


def actor_memory(ctx: Context) -> None:
    wd = ctx.workdir("memory")
    rounds = [daemon_rss_per_actor(wd, MEMORY_ACTORS, f"m{r}") for r in range(ctx.pick(1, 2))]
    values = [r["kb_per_actor"] for r in rounds if r["kb_per_actor"] is not None]
    ctx.details["actor_memory"] = {"actors": MEMORY_ACTORS, "rounds": rounds}
    value = median(values)
    last = rounds[-1]
    ctx.row(
        "actor_memory",
        f"RSS per idle inline actor ({MEMORY_ACTORS:,} actors)",
        value,
        "KB",
        target="<= 8 KB",
        ok=value is not None and value <= 8.0,
        note=(
            f"{last['rss_kb_n'] // 1024} MB vs {last['rss_kb_0'] // 1024} MB with no actor; "
            f"rounds {' '.join(f'{v:.2f}' for v in values)}; all running after "
            f"{last['running_s']:.1f} s"
        ),
    )


SUITES = {
    "keys_at_scale": keys_at_scale,
    "resume_depth": resume_depth,
    "retention": retention,
    "actor_memory": actor_memory,
}
