"""Floor servers: the least code on this stack (aiohttp, asyncio, SQLite, a pipe, Ray)
that still gives a guarantee pulsing gives, with no pulsing code in it.

``python -m benchmarks.floors --port P --state-dir DIR`` serves, in one process:

- ``POST /mailbox``: the bare echo with each call passed through a per-actor mailbox
  (an ``asyncio.Queue`` consumed by one task that awaits the op and sets a future), the
  least that runs an actor's asks one at a time, in order (``ask_throughput``, async op).
- ``POST /keyed``: the bare echo, at most once per ``Idempotency-Key`` across a SIGKILL,
  with the outcome replayed to repeats: a claim committed before the op runs, the
  outcome committed before the answer, both in SQLite with pulsing's pragmas (WAL,
  ``synchronous=NORMAL``) and grouped into one transaction per event-loop turn as
  pulsing's ``journal.GroupCommit`` does (``ask_throughput``, keyed asks).
- ``POST /keyed_mailbox``, ``POST /keyed_thread``: the same with the op run through the
  mailbox of ``/mailbox`` or of ``/thread``: the floors of keyed asks to an actor (one
  ask at a time, in order) of an async op and of a sync op, which by contract runs on
  a thread.
- ``POST /process``: the call forwarded, as it came, to ONE child process over a pipe
  (4-byte length + JSON), calls in flight pipelined in order, the child answering one
  at a time; the child decodes, runs the op, encodes (``process_vs_inline``).
- ``GET /v1/events``: NDJSON followers (the path ``benchmarks.event_followers`` reads):
  every EVENT_EVERY seconds EVENTS_PER_TICK event lines the size of pulsing's are encoded
  once and written to every follower (``event_followers``, with ``POST /mailbox``).
- ``GET /stream?n=N``: the bare NDJSON stream with every chunk committed to SQLite (the
  same pragmas, one transaction per 512 chunks, pulsing's ``FLUSH_CHUNKS``) before it is
  written to the reader (``stream``).

They run on the event loop the daemon runs on (uvloop where it is installed, ``--loop``),
so a floor is on the same stack as the figure it bounds.

With ``--ray-address ADDR`` it serves only ``POST /ray``: each call forwarded, as it
came, to one raw Ray actor (``await actor.call.remote(body)``), which decodes, runs the
op and encodes (``ray``; run inside the benchmark's network namespace).

benchmarks/README.md says why each is the least its guarantee needs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENT_EVERY = 0.25  # seconds between the event source's ticks (suites.EVENT_EVERY)
EVENTS_PER_TICK = 4  # what one crash of the benchmark's actor puts in pulsing's event log
BATCH = 512  # chunks per stream transaction: pulsing's streams.FLUSH_CHUNKS
WAL_SIZE_LIMIT = 8 << 20  # pulsing's journal.WAL_SIZE_LIMIT

# The tables pulsing keeps for these guarantees (journal.SCHEMA, same columns, keys and
# indexes).
SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, open INTEGER NOT NULL DEFAULT 1, terminal TEXT,
    next_seq INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS chunks (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS asks (
    actor TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, outcome TEXT, created REAL NOT NULL, finished REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS asks_by_key ON asks(actor, key);
CREATE INDEX IF NOT EXISTS asks_by_created ON asks(created);
"""


def open_db(path: Path) -> sqlite3.Connection:
    """SQLite as pulsing's journal opens it: WAL, synchronous=NORMAL (a commit survives
    a SIGKILL of the process), autocommit off only inside explicit transactions."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    db.executescript(SCHEMA)
    return db


class GroupCommit:
    """Statements queued during one event-loop turn, committed in one transaction; each
    caller's future resolves once that transaction has committed."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    def run(self, statement: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append((statement, future))
        return future

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            results = [statement() for statement, _ in batch]
        except Exception as exc:
            self.db.execute("ROLLBACK")
            for _, future in batch:
                future.set_exception(exc)
            return
        self.db.execute("COMMIT")
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


class Mailbox:
    """One actor's mailbox: asks queued, run one at a time by one task, in order."""

    def __init__(self, op: Callable[..., Any]) -> None:
        self.op = op
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Any]]] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            args, future = await self.queue.get()
            try:
                future.set_result(await self.op(**args))
            except Exception as exc:
                future.set_exception(exc)

    def ask(self, args: dict[str, Any]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((args, future))
        return future


class ThreadMailbox:
    """One actor's mailbox for a sync op: the calls queued when the consumer comes back
    are run in order in one trip to a thread (one executor job for the lot), then
    answered; one trip at a time, so the actor still runs one call at a time."""

    def __init__(self, op: Callable[..., Any], batch: int = 64) -> None:
        self.op = op
        self.batch = batch
        self.queue: collections.deque[tuple[dict[str, Any], asyncio.Future[Any]]] = (
            collections.deque()
        )
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.run())

    def _run_all(self, calls: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        for args in calls:
            try:
                results.append((True, self.op(**args)))
            except Exception as exc:
                results.append((False, exc))
        return results

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                taken = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
                results = await loop.run_in_executor(None, self._run_all, [a for a, _ in taken])
                for (_, future), (ok, value) in zip(taken, results, strict=True):
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    def ask(self, args: dict[str, Any]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((args, future))
        self.ready.set()
        return future


async def aecho(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


# ---------------------------------------------------------------------- the child
def child_main() -> None:
    """The process floor's child: read a frame, run the op, write a frame, in order."""
    read, write, flush = sys.stdin.buffer.read, sys.stdout.buffer.write, sys.stdout.buffer.flush
    loads, dumps = json.loads, json.dumps
    while True:
        head = read(4)
        if len(head) < 4:
            return
        call = loads(read(int.from_bytes(head, "big")))
        out = dumps({"result": call["args"]}).encode()
        write(len(out).to_bytes(4, "big") + out)
        flush()


class PipeActor:
    """One child process; calls go down its stdin and answers come back in order."""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from benchmarks.floors import child_main; child_main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            head = await stdout.readexactly(4)
            body = await stdout.readexactly(int.from_bytes(head, "big"))
            self.waiting.popleft().set_result(body)

    def call(self, body: bytes) -> asyncio.Future[bytes]:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(body).to_bytes(4, "big") + body)
        return future


# ---------------------------------------------------------------------- the server
def run_floors(host: str, port: int, state_dir: Path) -> None:
    from aiohttp import web

    state_dir.mkdir(parents=True, exist_ok=True)
    db = open_db(state_dir / "floors.db")
    ctx: dict[str, Any] = {}

    async def startup(app: web.Application) -> None:
        ctx["mailbox"] = Mailbox(aecho)
        ctx["thread"] = ThreadMailbox(echo)
        ctx["commits"] = GroupCommit(db)
        ctx["child"] = PipeActor()
        await ctx["child"].start()
        ctx["followers"] = {}  # response -> future set when its follower has gone
        ctx["ticker"] = asyncio.get_running_loop().create_task(tick_events())

    async def tick_events() -> None:
        """The event source: a tick's lines encoded once, written to every follower."""
        number = 0
        while True:
            await asyncio.sleep(EVENT_EVERY)
            lines = []
            for _ in range(EVENTS_PER_TICK):
                number += 1
                event = {"id": number, "at": time.time(), "actor": "crash_q", "kind": "state",
                         "from": "running", "to": "failed"}  # fmt: skip
                lines.append(json.dumps(event, separators=(",", ":")))
            data = ("\n".join(lines) + "\n").encode()
            for response, gone in list(ctx["followers"].items()):
                try:
                    await response.write(data)
                except (ConnectionError, RuntimeError):
                    del ctx["followers"][response]
                    gone.set_result(None)

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        gone = asyncio.get_running_loop().create_future()
        ctx["followers"][response] = gone
        await gone  # a write found the follower gone
        return response

    async def mailbox(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"result": await ctx["mailbox"].ask(body["args"])})

    async def thread(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"result": await ctx["thread"].ask(body["args"])})

    def claim(key: str, fingerprint: str) -> bool:
        cursor = db.execute(
            "INSERT INTO asks (actor, key, fingerprint, done, created) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (actor, key) DO NOTHING",
            ("echo", key, fingerprint, time.time()),
        )
        return cursor.rowcount == 1

    def finish(key: str, outcome: str) -> None:
        db.execute(
            "UPDATE asks SET done = 1, outcome = ?, finished = ? WHERE actor = ? AND key = ?",
            (outcome, time.time(), "echo", key),
        )

    async def keyed(request: web.Request) -> web.Response:
        return await run_keyed(request, None)

    async def keyed_mailbox(request: web.Request) -> web.Response:
        return await run_keyed(request, ctx["mailbox"])

    async def keyed_thread(request: web.Request) -> web.Response:
        return await run_keyed(request, ctx["thread"])

    async def run_keyed(
        request: web.Request, mailbox: Mailbox | ThreadMailbox | None
    ) -> web.Response:
        """The op between its claim and its outcome: on the loop in the handler, or
        through ``mailbox`` (the actor's, for an async op or a sync one)."""
        key = request.headers["Idempotency-Key"]
        raw = await request.text()
        body = json.loads(raw)
        commits: GroupCommit = ctx["commits"]
        if not await commits.run(lambda: claim(key, raw)):  # a repeat: replay or refuse
            row = db.execute(
                "SELECT fingerprint, done, outcome FROM asks WHERE actor = ? AND key = ?",
                ("echo", key),
            ).fetchone()
            if row[0] != raw:
                return web.json_response({"error": "idempotency_conflict"}, status=422)
            if not row[1]:
                return web.json_response({"error": "outcome unknown"}, status=409)
            return web.Response(text=row[2], content_type="application/json")
        # The op, after its claim is durable.
        result = body["args"] if mailbox is None else await mailbox.ask(body["args"])
        text = json.dumps({"result": result})
        await commits.run(lambda: finish(key, text))
        return web.Response(text=text, content_type="application/json")

    async def process(request: web.Request) -> web.Response:
        answer = await ctx["child"].call(await request.read())
        return web.Response(body=answer, content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "1000"))
        stream_id = secrets.token_hex(8)
        db.execute("INSERT INTO streams (id, created) VALUES (?, ?)", (stream_id, time.time()))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        dumps = json.dumps
        pending: list[str] = []
        seq = 0

        async def commit_and_send() -> None:
            nonlocal seq, pending
            batch, pending = pending, []
            size = sum(map(len, batch))
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO chunks (stream, seq, data) VALUES (?, ?, ?)",
                ((stream_id, seq + i, text) for i, text in enumerate(batch)),
            )
            db.execute(
                "UPDATE streams SET next_seq = ?, bytes = bytes + ? WHERE id = ?",
                (seq + len(batch), size, stream_id),
            )
            db.execute("COMMIT")
            lines = [f'{{"seq":{seq + i},"data":{text}}}\n' for i, text in enumerate(batch)]
            seq += len(batch)
            await response.write("".join(lines).encode())  # only after the commit

        for i in range(n):
            pending.append(dumps({"i": i}, separators=(",", ":")))
            if len(pending) >= BATCH:
                await commit_and_send()
        if pending:
            await commit_and_send()
        end = '{"end":true}'
        db.execute(
            "UPDATE streams SET open = 0, terminal = ?, finished = ? WHERE id = ?",
            (end, time.time(), stream_id),
        )
        await response.write(end.encode() + b"\n")
        await response.write_eof()
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.on_startup.append(startup)
    app.router.add_post("/mailbox", mailbox)
    app.router.add_post("/thread", thread)
    app.router.add_post("/keyed", keyed)
    app.router.add_post("/keyed_mailbox", keyed_mailbox)
    app.router.add_post("/keyed_thread", keyed_thread)
    app.router.add_post("/process", process)
    app.router.add_get("/stream", stream)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/health", health)
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


class RawCaller:
    """The Ray floor's actor: decode, run the op, encode (the same work as the child)."""

    def call(self, body: bytes) -> bytes:
        return json.dumps({"result": json.loads(body)["args"]}).encode()


def run_ray_floor(host: str, port: int, address: str) -> None:
    import ray
    from aiohttp import web

    ray.init(address=address, namespace="floor", log_to_driver=False, logging_level="ERROR")
    actor = ray.remote(max_restarts=0, max_task_retries=0)(RawCaller).remote()
    ray.get(actor.call.remote(b'{"args":{}}'))

    async def call(request: web.Request) -> web.Response:
        answer = await actor.call.remote(await request.read())
        return web.Response(body=answer, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/ray", call)
    app.router.add_get("/v1/health", health)
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floors")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, default=Path(os.getcwd()) / "floors-state")
    parser.add_argument("--ray-address", help="serve only POST /ray, to a Ray actor there")
    # The daemon's loop: uvloop where it is installed (pulsing_daemon/eventloop.py).
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    ns = parser.parse_args()
    from benchmarks.bare_server import use_loop

    use_loop(ns.loop)
    if ns.ray_address:
        run_ray_floor(ns.host, ns.port, ns.ray_address)
    else:
        run_floors(ns.host, ns.port, ns.state_dir)


if __name__ == "__main__":
    main()
