#!/usr/bin/env python
"""Fault-injection soak of the pulsing daemon: one command, bounded in time, loopback only.

::

    python benchmarks/soak.py --duration 60 [--kills N] [--clients N] [--readers N]
                              [--seed S] [--json PATH] [--keep]

also importable: ``run_soak(duration, kills, ...) -> dict`` (``tests/e2e/test_soak.py``
runs a short version).

What runs, all at once, for ``duration`` seconds against one daemon on 127.0.0.1:

- ``--clients`` ask clients (``pulsing_cli.client``), a quarter of them through a TCP
  proxy that cuts connections at random byte counts. They ask actors
  (``benchmarks/soak_actors.py``) to succeed, raise business errors, raise recoverable
  and non-recoverable system errors, crash, crash in ``__init__``, sleep or block past
  their deadline, call unknown ops, die hard (process isolation), or pick at random.
  About 40 % of the asks carry an ``Idempotency-Key`` (only in modes whose outcome is
  final, so a retry must never run the op again) and are retried with the same key on
  retryable errors, as the reliability rules allow.
- ``--readers`` stream readers start keyed streams (some attached by a second reader,
  some with a producer that crashes midway) through the cutting proxy and follow them
  with ``pulsing_cli.follow.follow_lines`` / ``ActorRef.stream`` (auto-resume).
- a monkey that operator-restarts failed actors and now and then stops/starts one.
- a status sampler (restart counts against the policies) and a killer that SIGKILLs
  the daemon ``--kills`` times and restarts it on the same state_dir.

At the end it verifies and prints (``ok`` is true only when every invariant holds):

- asks sent == answered: every ask ended in exactly one result or one categorised
  ``pulsing_daemon.exceptions`` error (a connection cut counts only when the client
  raised ``PulsingRuntimeError``); none hung, none miscategorised, no wrong result.
- keyed asks executed more than once == 0 (side-effect lines per key), and no keyed
  ask answered from an execution that never happened. Reported beside it: keyed asks
  answered "outcome unknown", and how many of those never ran (no side-effect line;
  target at most 5 % of the unknowns).
- stream chunks lost or duplicated across reconnects == 0: every reader saw seq
  0..n-1 exactly once, in order, with matching data, n == the stream's committed
  length; no producer started twice for one key.
- restarts observed vs allowed, per actor: ``restarts`` never above ``max_restarts``,
  never more than ``max_restarts`` automatic restarts within one ``restart_window``
  (or since the last operator restart without a window), none under ``never``.
- daemon memory (VmRSS) before/after, internal errors in the daemon log, the final
  SIGTERM exit code, orphaned process-isolation children.

Every wait is bounded; the run ends within ``duration + 60`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run as a script from a checkout: find pulsing_cli
    sys.path.append(str(REPO))

from benchmarks.harness import free_port, rss_kb  # noqa: E402
from pulsing_cli.client import Client, is_retryable  # noqa: E402
from pulsing_cli.follow import StreamState, chunk_data, follow_lines, start_stream  # noqa: E402
from pulsing_daemon.exceptions import (  # noqa: E402
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
)

# ---------------------------------------------------------------------------- actors
# name -> (TOML table body, restart_policy, max_restarts, restart_window or None)
ASK_ACTORS = ("chaos", "chaos_ff", "fragile", "oneshot", "proc")
STREAM_ACTORS = ("streams", "streams2")

# Modes of ``Chaos.work`` (plus pseudo-modes mapped to other ops), and what a daemon
# may answer for each. ``None`` in the table = a successful result.
ALL_MODES = (
    *["ok"] * 6,
    "business",
    "business",
    "recoverable",
    "recoverable",
    "fatal",
    "crash",
    "slow",
    "block",
    "unsupported",
    "badargs",
    "random",
)
# Keyed asks only use modes whose every executed outcome is stored, so a retry with the
# same key must never run the op a second time.
KEYED_MODES = (*["ok"] * 5, "business", "business", "slow", "block", "unsupported")
ERR = ("timeout", "runtime", "system")  # what any ask may get (deadline, down, restarting)
ALLOWED: dict[str, set[str]] = {
    "ok": {"ok", *ERR},
    "business": {"business", *ERR},
    "recoverable": {*ERR},
    "fatal": {*ERR},
    "crash": {*ERR},
    "hard": {*ERR},
    "slow": {*ERR},
    "block": {*ERR},  # + "ok" when replayed: the op finished after its caller timed out
    "unsupported": {"unsupported", *ERR},
    "badargs": {"business", *ERR},
    "random": {"ok", "business", *ERR},
}
CATEGORIES = ("ok", "business", "system", "timeout", "unsupported", "runtime")


def config_text(port: int, state_dir: Path, effects: Path) -> str:
    fx = json.dumps(str(effects))
    return f"""\
[daemon]
listen = "127.0.0.1:{port}"
state_dir = {json.dumps(str(state_dir))}
pythonpath = [{json.dumps(str(BENCH_DIR))}]
default_timeout = 5.0
grace_period = 3.0

[defaults]
restart_policy = "on_failure"
min_backoff = 0.02
max_backoff = 0.25

# crashes often, restarts within a sliding window, sometimes crashes in __init__
[actors.chaos]
class = "soak_actors:Chaos"
args = {{ name = "chaos", effects_dir = {fx}, init_fail_rate = 0.1 }}
max_restarts = 40
restart_window = 5.0
mailbox_size = 256

# same, but asks during a restart fail fast (recoverable system error + retry_after)
[actors.chaos_ff]
class = "soak_actors:Chaos"
args = {{ name = "chaos_ff", effects_dir = {fx}, init_fail_rate = 0.1 }}
max_restarts = 40
restart_window = 5.0
during_restart = "fail_fast"
mailbox_size = 256

# no window: after 4 restarts it is failed until the monkey runs `pulsing restart`
[actors.fragile]
class = "soak_actors:Chaos"
args = {{ name = "fragile", effects_dir = {fx}, init_fail_rate = 0.3 }}
max_restarts = 4
reset_after = 1000000.0
mailbox_size = 256

# never restarted automatically
[actors.oneshot]
class = "soak_actors:Chaos"
args = {{ name = "oneshot", effects_dir = {fx} }}
restart_policy = "never"
max_restarts = 5
mailbox_size = 256

# own child process; killed at an op's deadline
[actors.proc]
class = "soak_actors:Chaos"
args = {{ name = "proc", effects_dir = {fx}, init_fail_rate = 0.05 }}
isolation = "process"
kill_on_timeout = true
max_restarts = 40
restart_window = 5.0
min_backoff = 0.05
mailbox_size = 256

[actors.streams]
class = "soak_actors:Streams"
args = {{ name = "streams", effects_dir = {fx} }}
max_restarts = 100
restart_window = 5.0

[actors.streams2]
class = "soak_actors:Streams"
args = {{ name = "streams2", effects_dir = {fx} }}
max_restarts = 100
restart_window = 5.0
"""


# ---------------------------------------------------------------------------- helpers
def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


# ---------------------------------------------------------------------------- daemon
@dataclass
class Incarnation:
    index: int
    pid: int
    spawned: float
    ready: float | None = None
    rss_ready_kb: int | None = None
    rss_last_kb: int | None = None
    end: str = "running"  # running | killed | terminated
    # actor -> [(t_sent, restarts, total_restarts, operator_restarts, state, t_received)]:
    # the daemon took the snapshot somewhere between t_sent and t_received
    samples: dict[str, list[tuple[float, int, int, int, str, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )


class DaemonProcess:
    """The daemon under test: spawn, wait ready, SIGKILL, SIGTERM; all bounded."""

    def __init__(self, config: Path, port: int, log_path: Path, clock: Clock) -> None:
        self.config = config
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.incarnations: list[Incarnation] = []
        self.up = asyncio.Event()

    @property
    def current(self) -> Incarnation:
        return self.incarnations[-1]

    def spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("PULSING_TOKEN", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pulsing_daemon", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.incarnations.append(
            Incarnation(len(self.incarnations), self.proc.pid, self.clock.now())
        )

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"daemon exited with {code}; see {self.log_path}")
            client = Client(self.endpoint, connect_timeout=1.0)
            try:
                await asyncio.wait_for(client.health(), 2.0)
            except (PulsingError, asyncio.TimeoutError, OSError):
                await asyncio.sleep(0.05)
                continue
            finally:
                await client.close()
            inc = self.current
            inc.ready = self.clock.now()
            inc.rss_ready_kb = inc.rss_last_kb = rss_kb(inc.pid)
            self.up.set()
            return
        raise RuntimeError(f"daemon not ready after {timeout:g}s; see {self.log_path}")

    async def _reap(self, timeout: float) -> int | None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.01)
        return None

    async def kill(self) -> None:
        """SIGKILL (nothing flushed, nothing finished)."""
        assert self.proc is not None
        self.up.clear()
        inc = self.current
        inc.rss_last_kb = rss_kb(inc.pid) or inc.rss_last_kb
        inc.end = "killed"
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        if await self._reap(10.0) is None:
            raise RuntimeError("daemon did not die after SIGKILL within 10s")

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL past ``timeout``. Returns the SIGTERM exit code or None."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.up.clear()
        inc = self.current
        inc.rss_last_kb = rss_kb(inc.pid) or inc.rss_last_kb
        inc.end = "terminated"
        self.proc.send_signal(signal.SIGTERM)
        code = await self._reap(timeout)
        if code is None:
            self.proc.kill()
            await self._reap(5.0)
        return code

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


# ---------------------------------------------------------------------------- proxy
class CuttingProxy:
    """A loopback TCP proxy to the daemon that cuts most connections after a random
    number of response bytes (mid-chunk, mid-line, mid-header: wherever it falls)."""

    def __init__(
        self,
        upstream_port: int,
        rng: random.Random,
        cut_probability: float = 0.7,
        min_bytes: int = 150,
        max_bytes: int = 12000,
    ) -> None:
        self.upstream_port = upstream_port
        self.rng = rng
        self.cut_probability = cut_probability
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 2.0
            )
        except (OSError, asyncio.TimeoutError):
            self.refused += 1
            writer.close()
            return
        budget = (
            self.rng.randint(self.min_bytes, self.max_bytes)
            if self.rng.random() < self.cut_probability
            else math.inf
        )
        upstream = asyncio.ensure_future(self._pump(reader, up_writer, math.inf))
        downstream = asyncio.ensure_future(self._pump(up_reader, writer, budget))
        try:
            await asyncio.wait((upstream, downstream), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, budget: float
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    return
                if len(data) >= budget:
                    dst.write(data[: int(budget)])
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(dst.drain(), 1.0)
                    self.cuts += 1
                    return
                budget -= len(data)
                dst.write(data)
                await asyncio.wait_for(dst.drain(), 10.0)
        except (OSError, asyncio.TimeoutError):
            return


# ---------------------------------------------------------------------------- asks
@dataclass
class AskStats:
    sent: int = 0
    answered: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_mode: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unreachable: int = 0
    uncategorised: int = 0
    hung: int = 0
    cancelled_in_flight: int = 0
    miscategorised: int = 0
    wrong_results: int = 0
    unstamped: int = 0
    keyed_sent: int = 0
    keyed_logical: int = 0
    keyed_retries: int = 0
    replayed: int = 0
    outcome_unknown: int = 0
    examples: list[str] = field(default_factory=list)

    def example(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


@dataclass
class KeyedAsk:
    actor: str
    mode: str
    key: str
    answers: list[str] = field(default_factory=list)  # category per attempt
    unknown: bool = False  # some attempt was answered "outcome unknown"


def connection_error(exc: BaseException) -> bool:
    """The client lost the daemon: it could not connect (``sent=False``) or the connection
    dropped after the request went out (``sent=True``; the op may have run)."""
    if not isinstance(exc, PulsingRuntimeError):
        return False
    return exc.extra.get("sent") is not None or any(
        text in exc.message for text in ("not reachable", " lost: ")
    )


def _category(exc: BaseException) -> str | None:
    if isinstance(exc, PulsingError) and exc.category in CATEGORIES:
        return exc.category
    return None


class Soak:
    def __init__(
        self,
        *,
        duration: float,
        kills: int,
        clients: int,
        readers: int,
        seed: int,
        workdir: Path,
        verbose: bool,
    ) -> None:
        self.duration = duration
        self.kills = kills
        self.n_clients = clients
        self.n_readers = readers
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.verbose = verbose
        self.clock = Clock()
        self.stop_at = duration
        self.hard_deadline = duration + 50.0  # the last drain/verify step ends by here
        self.effects = workdir / "effects"
        self.state_dir = workdir / "state"
        self.port = free_port()
        self.config_path = workdir / "soak.toml"
        self.daemon = DaemonProcess(self.config_path, self.port, workdir / "daemon.log", self.clock)
        self.proxy: CuttingProxy | None = None
        self.asks = AskStats()
        self.keyed: list[KeyedAsk] = []
        self.readers: list[dict[str, Any]] = []
        self.stream_keys: dict[str, tuple[str, str, int]] = {}  # key -> (actor, id, n)
        self.kill_log: list[dict[str, Any]] = []
        self.monkey_log: Counter[str] = Counter()
        self.child_pids: set[int] = set()
        self.policies: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"[soak {self.clock.now():7.2f}s] {text}", flush=True)

    def remaining(self) -> float:
        return self.hard_deadline - self.clock.now()

    # ------------------------------------------------------------------ ask clients
    async def ask_client(self, index: int, endpoint: str) -> None:
        rng = random.Random(self.rng.random())
        client = Client(endpoint, connect_timeout=2.0)
        n = 0
        try:
            while self.clock.now() < self.stop_at:
                n += 1
                actor = rng.choice(ASK_ACTORS)
                keyed = rng.random() < 0.4
                mode = rng.choice(KEYED_MODES if keyed else ALL_MODES)
                if actor == "proc" and not keyed and rng.random() < 0.05:
                    mode = "hard"
                timeout = round(rng.uniform(0.2, 1.2), 3)
                x = rng.randint(0, 10**6)
                key = f"k{index}-{n}-{rng.getrandbits(32):08x}" if keyed else None
                op, kwargs = self._call(mode, key, x, timeout)
                if keyed:
                    assert key is not None
                    await self._keyed(client, actor, mode, op, kwargs, key, x, timeout)
                else:
                    await self._one(client, actor, mode, op, kwargs, None, x, timeout)
                await asyncio.sleep(rng.uniform(0.0, 0.02))
        finally:
            await client.close()

    @staticmethod
    def _call(mode: str, key: str | None, x: int, timeout: float) -> tuple[str, dict[str, Any]]:
        if mode == "unsupported":
            return "no_such_op", {"key": key, "x": x}
        if mode == "badargs":
            return "work", {"mode": "ok", "bogus": x}
        if mode == "block":
            return "block", {"seconds": round(timeout + 0.3, 3), "key": key, "x": x}
        delay = round(timeout * 2 + 0.2, 3) if mode in ("slow", "random") else 0.0
        return "work", {"mode": mode, "key": key, "x": x, "delay": delay}

    async def _one(
        self,
        client: Client,
        actor: str,
        mode: str,
        op: str,
        kwargs: dict[str, Any],
        key: str | None,
        x: int,
        timeout: float,
    ) -> tuple[str, PulsingError | None]:
        """One ask (one attempt); returns (category, error). Counts everything."""
        stats = self.asks
        stats.sent += 1
        if key is not None:
            stats.keyed_sent += 1
        call = client.ask(actor, op, [], kwargs, timeout=timeout, idempotency_key=key)
        began = self.clock.now()
        task = asyncio.ensure_future(call)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), timeout + 15.0)
        except asyncio.TimeoutError:
            stats.hung += 1
            stats.example(f"HUNG: {actor}.{op} {kwargs} (no answer within {timeout + 15:g}s)")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return "hung", None
        except asyncio.CancelledError:
            stats.cancelled_in_flight += 1
            task.cancel()
            raise
        except PulsingError as exc:
            category = _category(exc)
            if category is None:
                stats.uncategorised += 1
                stats.example(f"UNCATEGORISED {type(exc).__name__}: {exc}")
                return "uncategorised", None
            self._record(actor, mode, category, exc)
            return category, exc
        except Exception as exc:  # not a pulsing error: a client-library bug
            stats.uncategorised += 1
            stats.example(f"UNCATEGORISED {type(exc).__name__}: {exc!r} ({actor}.{op})")
            return "uncategorised", None
        answered = self.clock.now()

        def detail() -> str:  # only for an ask that should not have been ok
            return (
                f"key={key} timeout={timeout:g}s answered after {answered - began:.3f}s "
                f"at {answered:.2f}s, value {result.value!r}"
            )

        self._record(actor, mode, "ok", None, replayed=result.replayed, detail=detail)
        if result.replayed:
            stats.replayed += 1
        value = result.value
        if (mode == "ok" and value != {"x": x, "key": key}) or (
            mode == "random" and not (isinstance(value, dict) and value.get("x") == x)
        ):
            stats.wrong_results += 1
            stats.example(f"WRONG RESULT {actor}.{op} {kwargs} -> {value!r}")
        return "ok", None

    def _record(
        self,
        actor: str,
        mode: str,
        category: str,
        exc: PulsingError | None,
        replayed: bool = False,
        detail: Callable[[], str] | None = None,
    ) -> None:
        stats = self.asks
        stats.answered += 1
        stats.by_category[category] += 1
        stats.by_mode[mode][category] += 1
        late_success = mode == "block" and category == "ok" and replayed
        if category not in ALLOWED[mode] and not late_success:
            stats.miscategorised += 1
            stats.example(
                f"MISCATEGORISED mode={mode} on {actor}: {category} "
                f"{exc.to_wire() if exc else ''}{detail() if detail else ''}"
            )
        if exc is None:
            return
        if exc.extra.get("replayed"):
            stats.replayed += 1
        if connection_error(exc):
            stats.unreachable += 1
            return
        if isinstance(exc, PulsingSystemError) and "outcome unknown" in exc.message:
            stats.outcome_unknown += 1
        if category == "timeout" and "no answer from the daemon" in exc.message:
            return  # the client's own deadline (the daemon was killed or restarting)
        if exc.actor != actor or exc.restarts is None:
            stats.unstamped += 1
            stats.example(f"UNSTAMPED error from {actor}: {exc.to_wire()}")

    async def _keyed(
        self,
        client: Client,
        actor: str,
        mode: str,
        op: str,
        kwargs: dict[str, Any],
        key: str,
        x: int,
        timeout: float,
    ) -> None:
        record = KeyedAsk(actor, mode, key)
        self.keyed.append(record)
        self.asks.keyed_logical += 1
        attempt = 0
        while True:
            category, error = await self._one(client, actor, mode, op, kwargs, key, x, timeout)
            record.answers.append(category)
            if isinstance(error, PulsingSystemError) and "outcome unknown" in error.message:
                record.unknown = True
            if error is None or not is_retryable(error) or error.extra.get("replayed"):
                return
            if attempt >= 6 or self.clock.now() > self.stop_at + 3.0:
                return
            delay = max(0.05 * 2**attempt, error.retry_after or 0.0)
            if connection_error(error):
                # the daemon is down: wait for it to be back (bounded)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.daemon.up.wait(), 20.0)
            await asyncio.sleep(min(delay, 2.0))
            attempt += 1
            self.asks.keyed_retries += 1

    # ------------------------------------------------------------------ stream readers
    async def stream_reader(self, index: int, endpoint: str) -> None:
        rng = random.Random(self.rng.random())
        client = Client(endpoint, connect_timeout=2.0)
        n_stream = 0
        extra: list[asyncio.Task[None]] = []
        try:
            while self.clock.now() < self.stop_at:
                n_stream += 1
                key = f"st{index}-{n_stream}-{rng.getrandbits(32):08x}"
                actor = STREAM_ACTORS[index % len(STREAM_ACTORS)]
                n = rng.randint(20, 300)
                fail_at = rng.randint(1, n - 1) if rng.random() < 0.1 else -1
                kwargs = {
                    "n": n,
                    "delay": round(rng.uniform(0.0, 0.005), 4),
                    "tag": key,
                    "fail_at": fail_at,
                }
                if rng.random() < 0.3:  # a second reader attaches to the same key
                    extra.append(
                        asyncio.ensure_future(
                            self._read_one(client, actor, kwargs, key, via_ref=True, delay=0.05)
                        )
                    )
                await self._read_one(
                    client, actor, kwargs, key, via_ref=rng.random() < 0.3, delay=0.0
                )
            if extra:
                await asyncio.wait(extra, timeout=max(0.1, self.remaining() - 15))
        finally:
            for task in extra:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*extra, return_exceptions=True)
            await client.close()

    async def _read_one(
        self,
        client: Client,
        actor: str,
        kwargs: dict[str, Any],
        key: str,
        *,
        via_ref: bool,
        delay: float,
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        report: dict[str, Any] = {
            "key": key,
            "actor": actor,
            "n": kwargs["n"],
            "fail_at": kwargs["fail_at"],
            "kwargs": kwargs,
            "stream": None,
            "seqs": [],
            "bad_data": 0,
            "outcome": "unfinished",
            "message": "",
            "reconnects": 0,
            "last_error": "",  # the last error that made the reader start or resume again
            "via_ref": via_ref,
        }
        self.readers.append(report)
        seqs: list[int] = report["seqs"]
        bound = max(1.0, self.remaining() - 12.0)
        started = self.clock.now()
        try:
            await asyncio.wait_for(self._follow(client, actor, kwargs, key, report, via_ref), bound)
        except asyncio.TimeoutError:
            report["outcome"] = "unfinished"
            report["message"] = (
                f"not finished within {bound:.0f}s of {started:.1f}s (next seq {len(seqs)})"
            )
        except asyncio.CancelledError:
            report["outcome"] = "unfinished"
            report["message"] = "cancelled"
            raise

    def _take(self, report: dict[str, Any], seq: int, data: Any) -> None:
        report["seqs"].append(seq)
        if not (
            isinstance(data, dict) and data.get("i") == seq and data.get("tag") == report["key"]
        ):
            report["bad_data"] += 1

    async def _follow(
        self,
        client: Client,
        actor: str,
        kwargs: dict[str, Any],
        key: str,
        report: dict[str, Any],
        via_ref: bool,
    ) -> None:
        stop_trying = self.hard_deadline - 15.0
        if via_ref:
            # ActorRef.stream: start/attach + follow with auto-resume; after a failed
            # start or a give-up, start again with the same key from the next seq.
            while True:
                try:
                    ref = client.actor(actor)
                    async for chunk in ref.stream(
                        "count", key=key, resume=len(report["seqs"]), **kwargs
                    ):
                        self._take(report, chunk.seq, chunk.data)
                    report["outcome"] = "end"
                    return
                except PulsingError as exc:
                    if self._retry_stream(exc, report, stop_trying):
                        await self._wait_up()
                        continue
                    self._ended(report, exc)
                    return
        # pulsing_cli.follow: start (retried with the key) then follow_lines
        while report["stream"] is None:
            try:
                report["stream"], _ = await start_stream(client, actor, "count", [], kwargs, key)
            except PulsingError as exc:
                if self._retry_stream(exc, report, stop_trying):
                    await self._wait_up()
                    continue
                self._ended(report, exc)
                return
        self.stream_keys[key] = (actor, report["stream"], kwargs["n"])
        state = StreamState(report["stream"], 0)

        def reconnected(*_: Any) -> None:
            report["reconnects"] += 1

        while True:
            try:
                async for seq, line in follow_lines(client, state, on_reconnect=reconnected):
                    # the raw record must carry the seq the library reports
                    if json.loads(line).get("seq") != seq:
                        report["bad_data"] += 1
                    self._take(report, seq, chunk_data(line))
                report["outcome"] = "end"
                return
            except PulsingError as exc:
                if self._retry_stream(exc, report, stop_trying):
                    await self._wait_up()
                    continue
                self._ended(report, exc)
                return

    def _retry_stream(self, exc: PulsingError, report: dict[str, Any], until: float) -> bool:
        """A connection problem (cut, daemon down, gave up reconnecting): resume."""
        report["last_error"] = f"at {self.clock.now():.1f}s: {exc.message[:160]}"
        if self.clock.now() > until:
            return False
        if (
            isinstance(exc, PulsingRuntimeError)
            and exc.recoverable
            and (
                connection_error(exc)
                or "gave up" in exc.message
                or "too many stream readers" in exc.message
            )
        ):
            report["reconnects"] += 1
            return True
        return False

    async def _wait_up(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.daemon.up.wait(), 20.0)
        await asyncio.sleep(0.05)

    def _ended(self, report: dict[str, Any], exc: PulsingError) -> None:
        report["outcome"] = exc.category if _category(exc) else "uncategorised"
        report["message"] = exc.message[:300]
        if "expected seq" in exc.message:
            report["outcome"] = "seq_error"

    # ------------------------------------------------------------------ status / chaos
    async def sampler(self) -> None:
        client = Client(self.daemon.endpoint, connect_timeout=1.0)
        try:
            while self.clock.now() < self.stop_at + 2.0:
                await self.sample(client)
                await asyncio.sleep(0.2)
        finally:
            await client.close()

    async def sample(self, client: Client) -> dict[str, Any] | None:
        inc = self.daemon.current
        t_sent = self.clock.now()
        try:
            status = await asyncio.wait_for(client.status(), 3.0)
        except (PulsingError, asyncio.TimeoutError, OSError):
            return None
        if status.get("daemon", {}).get("pid") != inc.pid:
            return None
        t = self.clock.now()
        for actor in status.get("actors", []):
            name = actor["name"]
            self.policies.setdefault(
                name,
                {
                    "policy": actor.get("policy"),
                    "max_restarts": actor.get("max_restarts"),
                    "restart_window": actor.get("restart_window"),
                },
            )
            inc.samples[name].append(
                (
                    t_sent,
                    int(actor.get("restarts") or 0),
                    int(actor.get("total_restarts") or 0),
                    int(actor.get("operator_restarts") or 0),
                    str(actor.get("state")),
                    t,
                )
            )
            if actor.get("pid"):
                self.child_pids.add(int(actor["pid"]))
        inc.rss_last_kb = rss_kb(inc.pid) or inc.rss_last_kb
        return status

    async def monkey(self) -> None:
        """Operator restarts for failed actors; now and then a stop + start."""
        client = Client(self.daemon.endpoint, connect_timeout=1.0)
        rng = random.Random(self.rng.random())
        last_stop = 0.0
        try:
            while self.clock.now() < self.stop_at - 0.5:
                await asyncio.sleep(rng.uniform(0.3, 0.8))
                try:
                    status = await asyncio.wait_for(client.status(), 3.0)
                except (PulsingError, asyncio.TimeoutError, OSError):
                    continue
                for actor in status.get("actors", []):
                    if actor.get("state") in ("failed", "stopped"):
                        await self._control(client, actor["name"], "restart")
                if self.clock.now() - last_stop > 6.0 and rng.random() < 0.3:
                    last_stop = self.clock.now()
                    name = rng.choice(("chaos", "chaos_ff"))
                    await self._control(client, name, "stop")
                    await asyncio.sleep(rng.uniform(0.05, 0.4))
                    await self._control(client, name, "start")
        finally:
            await client.close()

    async def _control(self, client: Client, name: str, action: str) -> None:
        try:
            await asyncio.wait_for(client.control(name, action), 12.0)
            self.monkey_log[action] += 1
        except (PulsingError, asyncio.TimeoutError, OSError) as exc:
            self.monkey_log[f"{action}_error"] += 1
            lost = connection_error(exc)
            if isinstance(exc, PulsingError) and exc.http_status >= 500 and not lost:
                self.errors.append(f"control {action} {name}: {exc.to_wire()}")

    async def killer(self) -> None:
        if self.kills <= 0:
            return
        lo, hi = 0.12 * self.duration, 0.8 * self.duration
        spacing = (hi - lo) / self.kills
        times = sorted(
            lo + spacing * (i + 0.5) + self.rng.uniform(-spacing / 4, spacing / 4)
            for i in range(self.kills)
        )
        for at in times:
            wait = at - self.clock.now()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.clock.now() > self.stop_at - 1.0:
                break
            old = self.daemon.current
            killed_at = self.clock.now()
            await self.daemon.kill()
            await asyncio.sleep(self.rng.uniform(0.0, 0.4))
            self.daemon.spawn()
            try:
                await self.daemon.wait_ready(20.0)
            except RuntimeError as exc:
                self.errors.append(f"restart after kill {len(self.kill_log) + 1}: {exc}")
                raise
            downtime = self.clock.now() - killed_at
            self.kill_log.append(
                {
                    "at": round(killed_at, 2),
                    "pid": old.pid,
                    "rss_kb": old.rss_last_kb,
                    "downtime": round(downtime, 3),
                }
            )
            self.log(
                f"kill {len(self.kill_log)}: pid {old.pid} SIGKILLed, back in "
                f"{downtime:.2f}s as pid {self.daemon.current.pid}"
            )

    # ------------------------------------------------------------------ run
    async def run(self) -> dict[str, Any]:
        self.effects.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_text(self.port, self.state_dir, self.effects))
        self.daemon.spawn()
        try:
            await self.daemon.wait_ready(20.0)
            return await self._run_load()
        finally:
            self.daemon.kill_now()

    async def _run_load(self) -> dict[str, Any]:
        # warm up: every actor answers once (so the 'before' RSS has everything loaded)
        warm = Client(self.daemon.endpoint)
        try:
            for name in ASK_ACTORS:
                with contextlib.suppress(PulsingError, asyncio.TimeoutError):
                    await asyncio.wait_for(warm.ask(name, "ping", timeout=5.0), 8.0)
            await self.sample(warm)
        finally:
            await warm.close()
        mem_before = rss_kb(self.daemon.current.pid)
        self.clock = Clock()  # t = 0: the load starts
        self.daemon.clock = self.clock
        self.proxy = CuttingProxy(self.port, random.Random(self.rng.random()))
        await self.proxy.start()
        direct, proxied = self.daemon.endpoint, f"http://127.0.0.1:{self.proxy.port}"
        self.log(
            f"daemon pid {self.daemon.current.pid} on {direct}, proxy on {proxied}; "
            f"{self.n_clients} clients, {self.n_readers} readers, {self.kills} kills, "
            f"{self.duration:g}s"
        )
        workers = [
            asyncio.ensure_future(self.ask_client(i, proxied if i % 4 == 3 else direct))
            for i in range(self.n_clients)
        ] + [asyncio.ensure_future(self.stream_reader(i, proxied)) for i in range(self.n_readers)]
        helpers = [asyncio.ensure_future(c) for c in (self.sampler(), self.monkey())]
        killer = asyncio.ensure_future(self.killer())
        progress = asyncio.ensure_future(self._progress())
        try:
            # the load phase, then a bounded drain
            await asyncio.wait([killer], timeout=max(0.0, self.stop_at - self.clock.now() + 1))
            if not killer.done():
                self.errors.append("killer still running at the end of the load phase")
                killer.cancel()
            elif killer.exception() is not None:
                self.errors.append(f"killer failed: {killer.exception()!r}")
            if self.clock.now() < self.stop_at:  # the load phase runs to its end
                await asyncio.sleep(self.stop_at - self.clock.now())
            if not self.daemon.up.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.daemon.up.wait(), 20.0)
            drain = max(1.0, min(35.0, self.remaining() - 12.0))
            _, pending = await asyncio.wait(workers, timeout=drain)
            if pending:
                self.errors.append(
                    f"{len(pending)} clients/readers still busy after the "
                    f"{drain:.0f}s drain; cancelled"
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5.0)
            for task in workers:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    self.errors.append(f"worker crashed: {task.exception()!r}")
            await asyncio.wait(helpers, timeout=5.0)
        finally:
            for task in (*helpers, killer, progress):
                task.cancel()
            await asyncio.gather(*helpers, killer, progress, return_exceptions=True)
            await self.proxy.close()
        return await self._verify(mem_before)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            s = self.asks
            self.log(
                f"asks sent {s.sent} answered {s.answered} "
                f"{dict(s.by_category)}; readers {len(self.readers)}; "
                f"rss {rss_kb(self.daemon.current.pid)} kB"
            )

    # ------------------------------------------------------------------ verification
    async def _verify(self, mem_before: int | None) -> dict[str, Any]:
        client = Client(self.daemon.endpoint, connect_timeout=2.0)
        infos: dict[str, dict[str, Any]] = {}
        try:
            final_status = await self.sample(client)
            if final_status is None:
                self.errors.append("no final status from the daemon")
            for r in self.readers:  # ActorRef.stream readers: attach by key for the id
                if r["stream"] is None and r["key"] in self.stream_keys:
                    r["stream"] = self.stream_keys[r["key"]][1]
                if r["stream"] is None and r["outcome"] in ("end", "system", "runtime"):
                    try:
                        r["stream"], attached = await asyncio.wait_for(
                            start_stream(client, r["actor"], "count", [], r["kwargs"], r["key"]),
                            4.0,
                        )
                    except (PulsingError, asyncio.TimeoutError) as exc:
                        self.errors.append(f"stream id of key {r['key']}: {exc}")
                        continue
                    if not attached:
                        self.errors.append(f"key {r['key']} had no stream: a new one started")
            stream_ids = {r["stream"] for r in self.readers if r["stream"]}
            stream_ids |= {sid for _, sid, _ in self.stream_keys.values()}
            for sid in sorted(stream_ids):
                if self.remaining() < 10:
                    break
                try:
                    infos[sid] = json.loads(
                        (
                            await asyncio.wait_for(
                                client.request("GET", f"/v1/streams/{sid}/info", timeout=3.0), 4.0
                            )
                        ).body
                    )
                except (PulsingError, asyncio.TimeoutError, ValueError) as exc:
                    self.errors.append(f"stream info {sid}: {exc}")
        finally:
            await client.close()
        mem_after = rss_kb(self.daemon.current.pid)
        exit_code = await self.daemon.terminate(min(15.0, max(2.0, self.remaining() - 2)))
        survivors = sorted(pid for pid in self.child_pids if pid_alive(pid))
        return self._report(mem_before, mem_after, exit_code, infos, survivors)

    def _effects(self) -> dict[str, Any]:
        executions: dict[tuple[str, str], int] = Counter()
        for path in self.effects.glob("*.log"):
            if path.name.endswith(".streams.log"):
                continue
            actor = path.name[: -len(".log")]
            for line in path.read_text().splitlines():
                if line.strip():
                    executions[(actor, line.split()[0])] += 1
        more_than_once = sorted(
            f"{actor}:{key} ran {count}x" for (actor, key), count in executions.items() if count > 1
        )
        # a result/business answer from an execution must have left exactly one line
        answered_unexecuted = []
        for record in self.keyed:
            produced = {"ok": {"ok"}, "business": {"business"}}.get(record.mode, set())
            if set(record.answers) & produced and executions[(record.actor, record.key)] != 1:
                answered_unexecuted.append(
                    f"{record.actor}:{record.key} mode={record.mode} answers={record.answers} "
                    f"executions={executions[(record.actor, record.key)]}"
                )
        # "Outcome unknown" is only right when the op may have begun: the ones whose
        # op never left a line were free to run (target: at most 5 % of the unknowns).
        unknown = [r for r in self.keyed if r.unknown]
        never_ran = [r for r in unknown if not executions[(r.actor, r.key)]]
        starts: Counter[str] = Counter()
        for path in self.effects.glob("*.streams.log"):
            for line in path.read_text().splitlines():
                if line.strip():
                    starts[line.strip()] += 1
        return {
            "keys": len(self.keyed),
            "keys_executed": sum(1 for r in self.keyed if executions[(r.actor, r.key)]),
            "executions": sum(executions.values()),
            "executed_more_than_once": len(more_than_once),
            "answered_without_one_execution": len(answered_unexecuted),
            "unknown_keys": len(unknown),
            "unknown_never_ran": len(never_ran),
            "unknown_never_ran_examples": [
                f"{r.actor}:{r.key} mode={r.mode} answers={r.answers}" for r in never_ran[:5]
            ],
            "examples": (more_than_once + answered_unexecuted)[:10],
            "stream_producers_started_more_than_once": sum(1 for c in starts.values() if c > 1),
        }

    def _streams(self, infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
        lost = dup = order = bad = seq_errors = unfinished = 0
        completed = errored = chunks = 0
        examples: list[str] = []
        outcomes: Counter[str] = Counter()
        for r in self.readers:
            seqs: list[int] = r["seqs"]
            chunks += len(seqs)
            outcomes[r["outcome"]] += 1
            dup += len(seqs) - len(set(seqs))
            if seqs != sorted(seqs) or (seqs and seqs[0] != 0):
                order += 1
            unique = len(set(seqs))
            if r["outcome"] == "end":
                completed += 1
                expected = r["n"]
                info = infos.get(r["stream"] or "")
                if r["fail_at"] >= 0:
                    examples.append(f"{r['key']}: ended cleanly though the producer crashes")
                    bad += 1
                if info and info.get("next_seq") != expected:
                    examples.append(
                        f"{r['key']}: journal has {info.get('next_seq')} of {expected} chunks"
                    )
                    bad += 1
            elif r["outcome"] == "system":
                errored += 1
                info = infos.get(r["stream"] or "")
                expected = info["next_seq"] if info else unique
                if r["fail_at"] >= 0 and expected > r["fail_at"]:
                    bad += 1
                    examples.append(f"{r['key']}: {expected} chunks past fail_at {r['fail_at']}")
            elif r["outcome"] == "seq_error":
                seq_errors += 1
                expected = unique
                examples.append(f"{r['key']}: {r['message']}")
            elif r["outcome"] == "unfinished":
                unfinished += 1
                expected = unique
                examples.append(
                    f"{r['key']}: unfinished ({r['message']}; stream {r['stream']}, "
                    f"{r['reconnects']} reconnects, last error {r['last_error'] or 'none'})"
                )
            else:
                bad += 1
                expected = unique
                examples.append(f"{r['key']}: ended with {r['outcome']}: {r['message']}")
            if expected > unique:
                lost += expected - unique
                examples.append(f"{r['key']}: saw {unique} of {expected} chunks ({r['outcome']})")
            bad += 1 if r["bad_data"] else 0
        return {
            "streams": len({r["key"] for r in self.readers}),
            "readers": len(self.readers),
            "outcomes": dict(outcomes),
            "completed": completed,
            "ended_with_error": errored,
            "chunks_read": chunks,
            "reconnects": sum(r["reconnects"] for r in self.readers),
            "lost": lost,
            "duplicated": dup,
            "out_of_order": order,
            "seq_errors": seq_errors,
            "bad": bad,
            "unfinished": unfinished,
            "examples": examples[:10],
        }

    def _restarts(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, policy in sorted(self.policies.items()):
            limit = int(policy["max_restarts"] or 0)
            window = policy["restart_window"]
            never = policy["policy"] == "never"
            max_count = total = operator = 0
            violations: list[str] = []
            for inc in self.daemon.incarnations:
                series = inc.samples.get(name, [])
                if not series:
                    continue
                max_count = max(max_count, max(s[1] for s in series))
                total += series[-1][2]
                operator += series[-1][3]
                for t, count, tot, _op, state, _t in series:
                    if count > limit or (never and (count or tot)):
                        violations.append(
                            f"pid {inc.pid} t={t:.1f}: restarts {count}/{limit} "
                            f"total {tot} ({state})"
                        )
                # automatic restarts within any span shorter than the window (or since
                # the last operator restart) never exceed max_restarts; the span runs from
                # sending the first status request to receiving the second answer
                span = (window - 0.05) if window else math.inf
                j = 0
                for i, (t_i, _c, tot_i, op_i, _s, _r) in enumerate(series):
                    j = max(j, i)
                    while (
                        j + 1 < len(series)
                        and series[j + 1][5] - t_i <= span
                        and series[j + 1][3] == op_i
                    ):
                        j += 1
                    if series[j][2] - tot_i > limit:
                        violations.append(
                            f"pid {inc.pid}: {series[j][2] - tot_i} restarts between "
                            f"t={t_i:.1f} and t={series[j][0]:.1f} (max {limit}"
                            + (f" per {window:g}s)" if window else ")")
                        )
                        break
                if not window and series:
                    # without a window the count only goes back to 0 on an operator restart
                    base = [s for s in series if s[3] == series[-1][3]]
                    if base and base[-1][1] > limit:
                        violations.append(f"pid {inc.pid}: {base[-1][1]} > {limit}")
            out[name] = {
                "policy": policy["policy"],
                "max_restarts": limit,
                "restart_window": window,
                "max_restarts_observed": max_count,
                "automatic_restarts_observed": total,
                "operator_restarts": operator,
                "violations": violations[:5],
            }
        return out

    def _daemon_log(self) -> dict[str, Any]:
        try:
            text = self.daemon.log_path.read_text(errors="replace")
        except OSError:
            return {"internal_errors": None, "tracebacks": None}
        internal = [line for line in text.splitlines() if "internal_error" in line]
        return {
            "internal_errors": len(internal),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "examples": internal[:5],
        }

    def _report(
        self,
        mem_before: int | None,
        mem_after: int | None,
        exit_code: int | None,
        infos: dict[str, dict[str, Any]],
        survivors: list[int],
    ) -> dict[str, Any]:
        s = self.asks
        idem = self._effects()
        streams = self._streams(infos)
        restarts = self._restarts()
        logs = self._daemon_log()
        incs = self.daemon.incarnations
        memory = {
            "before_kb": mem_before,
            "after_kb": mem_after,
            "first_incarnation_at_kill_kb": incs[0].rss_last_kb if len(incs) > 1 else None,
            "last_incarnation_ready_kb": incs[-1].rss_ready_kb,
            "max_kb": max((i.rss_last_kb or 0) for i in incs),
            "per_incarnation": [
                {"pid": i.pid, "ready_kb": i.rss_ready_kb, "last_kb": i.rss_last_kb, "end": i.end}
                for i in incs
            ],
        }
        violations: list[str] = []

        def must(cond: bool, text: str) -> None:
            if not cond:
                violations.append(text)

        must(s.sent == s.answered, f"asks sent {s.sent} != answered {s.answered}")
        must(s.hung == 0, f"{s.hung} asks hung")
        must(s.uncategorised == 0, f"{s.uncategorised} asks ended in an uncategorised error")
        must(s.cancelled_in_flight == 0, f"{s.cancelled_in_flight} asks cancelled in flight")
        must(s.miscategorised == 0, f"{s.miscategorised} asks got an impossible category")
        must(s.wrong_results == 0, f"{s.wrong_results} asks got a wrong result")
        must(
            idem["executed_more_than_once"] == 0,
            f"{idem['executed_more_than_once']} keyed asks executed more than once",
        )
        must(
            idem["answered_without_one_execution"] == 0,
            f"{idem['answered_without_one_execution']} keyed asks answered without exactly "
            "one execution",
        )
        must(
            idem["stream_producers_started_more_than_once"] == 0,
            "a stream key started its producer more than once",
        )
        for name in ("lost", "duplicated", "out_of_order", "seq_errors", "bad", "unfinished"):
            must(streams[name] == 0, f"streams: {streams[name]} {name}")
        for name, info in restarts.items():
            must(
                not info["violations"],
                f"restarts of {name} beyond the policy: {info['violations'][:2]}",
            )
        must(len(self.kill_log) == self.kills, f"{len(self.kill_log)} of {self.kills} kills done")
        must(exit_code == 0, f"final SIGTERM exit code {exit_code}")
        must(not survivors, f"process-isolation children alive after the end: {survivors}")
        must(
            logs.get("internal_errors") == 0,
            f"daemon logged {logs.get('internal_errors')} internal errors (HTTP 500 from a bug)",
        )
        must(not self.errors, f"harness errors: {self.errors[:3]}")
        must(s.sent > 0 and streams["readers"] > 0, "no load was generated")
        return {
            "ok": not violations,
            "violations": violations,
            "seed": self.seed,
            "duration": self.duration,
            "elapsed": round(self.clock.now(), 2),
            "clients": self.n_clients,
            "readers": self.n_readers,
            "kills": {"planned": self.kills, "done": len(self.kill_log), "events": self.kill_log},
            "asks": {
                "sent": s.sent,
                "answered": s.answered,
                "by_category": dict(s.by_category),
                "by_mode": {m: dict(c) for m, c in sorted(s.by_mode.items())},
                "unreachable": s.unreachable,
                "hung": s.hung,
                "uncategorised": s.uncategorised,
                "cancelled_in_flight": s.cancelled_in_flight,
                "miscategorised": s.miscategorised,
                "wrong_results": s.wrong_results,
                "unstamped_errors": s.unstamped,
                "keyed_sent": s.keyed_sent,
                "keyed_logical": s.keyed_logical,
                "keyed_retries": s.keyed_retries,
                "replayed": s.replayed,
                "outcome_unknown": s.outcome_unknown,
                "examples": s.examples[:10],
            },
            "idempotency": idem,
            "streams": streams,
            "restarts": restarts,
            "monkey": dict(self.monkey_log),
            "proxy": {
                "connections": self.proxy.connections if self.proxy else 0,
                "cuts": self.proxy.cuts if self.proxy else 0,
                "refused": self.proxy.refused if self.proxy else 0,
            },
            "memory": memory,
            "daemon": {
                "incarnations": len(incs),
                "final_exit_code": exit_code,
                "children_seen": len(self.child_pids),
                "children_alive_after": survivors,
                **logs,
            },
            "harness_errors": self.errors,
            "workdir": str(self.workdir),
        }


# ---------------------------------------------------------------------------- entry points
def run_soak(
    duration: float = 60.0,
    kills: int = 3,
    *,
    clients: int = 16,
    readers: int = 6,
    seed: int | None = None,
    workdir: str | Path | None = None,
    keep: bool = False,
    verbose: bool = True,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run the soak and return its report (``report["ok"]``: every invariant held)."""
    seed = random.randrange(2**31) if seed is None else seed
    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="pulsing-soak-")) if own_dir else Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    soak = Soak(
        duration=duration,
        kills=kills,
        clients=clients,
        readers=readers,
        seed=seed,
        workdir=base,
        verbose=verbose,
    )
    try:
        report = asyncio.run(soak.run())
    finally:
        soak.daemon.kill_now()
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if own_dir and report["ok"] and not keep:
        shutil.rmtree(base, ignore_errors=True)
        report["workdir"] = None
    return report


def summary(report: dict[str, Any]) -> str:
    a, i, s, m = report["asks"], report["idempotency"], report["streams"], report["memory"]
    lines = [
        f"pulsing soak: {report['duration']:g}s, {report['clients']} clients, "
        f"{report['readers']} readers, seed {report['seed']}, took {report['elapsed']}s",
        f"  daemon SIGKILLed and restarted: {report['kills']['done']}/{report['kills']['planned']}"
        f" (downtime {', '.join(str(e['downtime']) for e in report['kills']['events']) or '-'}s)",
        f"  asks sent / answered:            {a['sent']} / {a['answered']}"
        f"   by category {a['by_category']}",
        f"    unreachable {a['unreachable']}, hung {a['hung']}, uncategorised "
        f"{a['uncategorised']}, miscategorised {a['miscategorised']}, wrong results "
        f"{a['wrong_results']}, unstamped errors {a['unstamped_errors']}",
        f"  keyed asks: {a['keyed_logical']} keys, {a['keyed_sent']} attempts, "
        f"{a['keyed_retries']} retries, {a['replayed']} replayed, {a['outcome_unknown']} "
        f"outcome-unknown, {i['executions']} executions",
        f"  keyed asks executed more than once: {i['executed_more_than_once']}"
        f"   (answered without one execution: {i['answered_without_one_execution']})",
        f'  keyed asks answered "outcome unknown": {i["unknown_keys"]}, of which the op never '
        f"ran: {i['unknown_never_ran']}"
        + (
            f" ({100 * i['unknown_never_ran'] / i['unknown_keys']:.1f}%; target <= 5%)"
            if i["unknown_keys"]
            else ""
        ),
        f"  streams: {s['streams']} streams, {s['readers']} readers, {s['chunks_read']} chunks, "
        f"{s['reconnects']} reconnects, outcomes {s['outcomes']}",
        f"  stream chunks lost / duplicated:  {s['lost']} / {s['duplicated']}"
        f"   (out of order {s['out_of_order']}, seq errors {s['seq_errors']}, bad {s['bad']}, "
        f"unfinished {s['unfinished']}, producers started twice "
        f"{i['stream_producers_started_more_than_once']})",
        "  restarts observed vs allowed (max per incarnation / max_restarts [window], "
        "automatic total, operator):",
    ]
    for name, r in report["restarts"].items():
        window = f" per {r['restart_window']:g}s" if r["restart_window"] else ""
        lines.append(
            f"    {name:9s} {r['policy']:10s} {r['max_restarts_observed']:3d} / "
            f"{r['max_restarts']}{window:10s} total {r['automatic_restarts_observed']:4d}, "
            f"operator {r['operator_restarts']:3d}"
            + (f"  VIOLATION {r['violations'][0]}" if r["violations"] else "")
        )
    d = report["daemon"]
    lines += [
        f"  daemon memory (VmRSS) before / after: {m['before_kb']} / {m['after_kb']} kB"
        f"   (max {m['max_kb']} kB over {d['incarnations']} incarnations)",
        f"  daemon log: {d['internal_errors']} internal errors, {d['tracebacks']} tracebacks; "
        f"final SIGTERM exit {d['final_exit_code']}; process children seen "
        f"{d['children_seen']}, alive after {len(d['children_alive_after'])}",
        f"  proxy: {report['proxy']['connections']} connections, {report['proxy']['cuts']} cut;"
        f" monkey: {report['monkey']}",
        f"  RESULT: {'OK' if report['ok'] else 'FAILED'}",
    ]
    lines += [f"    - {v}" for v in report["violations"]]
    for text in (a["examples"] + i["examples"] + s["examples"])[:15]:
        lines.append(f"    e.g. {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--kills", type=int, default=3, help="daemon SIGKILLs during the run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent ask clients")
    parser.add_argument("--readers", type=int, default=6, help="concurrent stream readers")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None, help="write the report here")
    parser.add_argument("--workdir", default=None, help="keep config, state, logs here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    report = run_soak(
        args.duration,
        args.kills,
        clients=args.clients,
        readers=args.readers,
        seed=args.seed,
        workdir=args.workdir,
        keep=args.keep,
        verbose=not args.quiet,
        json_path=args.json_path,
    )
    print(summary(report))
    if report.get("workdir"):
        print(f"  workdir: {report['workdir']}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
