"""Streams with resume offsets end to end (CONTRACT §5): the real CLI and plain HTTP
against a real daemon -- ordering, resume, attach by key, connection cuts through a
cutting TCP proxy, Ctrl-C, SSE/NDJSON wire formats, error terminals, durability across
daemon restarts (SIGTERM and SIGKILL), retention and many concurrent readers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import pulsing_command

ACTORS = """
[actors.p]
class = "stream_actors:Producer"
args = {{ starts = "{starts}" }}
min_backoff = 0.05
max_backoff = 0.05

[actors.q]
class = "stream_actors:Producer"
args = {{ starts = "{starts}" }}
min_backoff = 0.05
max_backoff = 0.05
"""


# ---------------------------------------------------------------------- helpers
def make(daemon_factory: Any, tmp_path: Path, daemon: str = "") -> Any:
    # A short grace period: producers still running at teardown do not hold SIGTERM up.
    actors = ACTORS.format(starts=tmp_path / "starts")
    return daemon_factory(actors, "grace_period = 0.5\n" + daemon)


def starts(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "starts").read_text().splitlines()
    except FileNotFoundError:
        return []


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def seqs(stdout: str) -> list[int]:
    out = []
    for rec in records(stdout):
        assert set(rec) == {"seq", "data"}, rec
        out.append(rec["seq"])
    return out


def start(d: Any, actor: str, op: str, key: str | None = None, **args: Any) -> str:
    headers = {"Idempotency-Key": key} if key else None
    status, _, body = d.http(
        "POST", f"/v1/actors/{actor}/streams", {"op": op, "args": args}, headers
    )
    assert status in (200, 201), (status, body)
    return body["stream"]


def info(d: Any, sid: str) -> dict[str, Any]:
    status, _, body = d.http("GET", f"/v1/streams/{sid}/info")
    assert status == 200, body
    return body


def wait_closed(d: Any, sid: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = info(d, sid)
        if not last["open"]:
            return last
        time.sleep(0.02)
    raise AssertionError(f"stream {sid} still open: {last}")


def wait_committed(d: Any, sid: str, n: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = info(d, sid)
        if last["next_seq"] >= n:
            return last
        time.sleep(0.01)
    raise AssertionError(f"stream {sid} never reached {n} chunks: {last}")


def get_raw(
    d: Any, path: str, headers: dict[str, str] | None = None, timeout: float = 15.0
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def ndjson(
    d: Any, sid: str, query: str = "", headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    status, head, body = get_raw(
        d, f"/v1/streams/{sid}{query}", {"Accept": "application/x-ndjson", **(headers or {})}
    )
    assert status == 200, (status, body)
    assert head["content-type"].startswith("application/x-ndjson"), head
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def sse_events(body: str) -> list[dict[str, Any]]:
    """Parse an SSE body into events {"id": str|None, "data": parsed JSON}."""
    events = []
    for block in body.split("\n\n"):
        event: dict[str, Any] = {"id": None, "data": None}
        data_lines = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event["id"] = value
            elif field == "data":
                data_lines.append(value)
        if data_lines:
            event["data"] = json.loads("\n".join(data_lines))
            events.append(event)
    return events


def sse(
    d: Any, sid: str, query: str = "", headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    status, head, body = get_raw(d, f"/v1/streams/{sid}{query}", headers)
    assert status == 200, (status, body)
    assert head["content-type"].startswith("text/event-stream"), head
    return sse_events(body)


# ---------------------------------------------------------------------- ordering
def test_seq_order_plain_output_and_attach_by_id(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    result = d.cli("stream", "p", "count", "n=50", "--json")
    assert result.code == 0, result.stderr
    recs = records(result.stdout)
    assert recs == [{"seq": i, "data": i} for i in range(50)]

    plain = d.cli("stream", "p", "words", "n=3")
    assert plain.code == 0, plain.stderr
    assert plain.stdout.splitlines() == ["word-0", "word-1", "word-2", '{"done":3}']

    sync = d.cli("stream", "p", "sync_count", "n=4", "--json")
    assert sync.code == 0, sync.stderr
    assert seqs(sync.stdout) == [0, 1, 2, 3]

    # The stream id is on stderr; --id attaches to it.
    result = d.cli("stream", "p", "count", "n=5", "--json")
    assert result.code == 0, result.stderr
    assert result.stderr.startswith("stream s"), result.stderr
    sid = result.stderr.split()[1]
    assert info(d, sid)["stream"] == sid
    again = d.cli("stream", "--id", sid, "--json")
    assert again.code == 0, again.stderr
    assert again.stdout == result.stdout
    assert starts(tmp_path).count("count 5 ") == 1
    # --id together with ACTOR/OP is a usage error.
    usage = d.cli("stream", "p", "count", "--id", sid)
    assert usage.code == 2
    nothing = d.cli("stream")
    assert nothing.code == 2


def test_resume_and_no_follow(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    sid = start(d, "p", "count", n=10)
    wait_closed(d, sid)
    resumed = d.cli("stream", "--id", sid, "--resume", "6", "--json")
    assert resumed.code == 0, resumed.stderr
    assert records(resumed.stdout) == [{"seq": i, "data": i} for i in range(6, 10)]
    plain = d.cli("stream", "--id", sid, "--resume", "8")
    assert plain.code == 0, plain.stderr
    assert plain.stdout.splitlines() == ["8", "9"]
    past_end = d.cli("stream", "--id", sid, "--resume", "10", "--json")
    assert past_end.code == 0, past_end.stderr
    assert past_end.stdout == ""

    # An unfinished stream: --no-follow prints what is journaled now and exits 0.
    slow = start(d, "q", "count", n=200, delay=0.05)
    wait_committed(d, slow, 4)
    t0 = time.monotonic()
    now = d.cli("stream", "--id", slow, "--no-follow", "--json", timeout=10)
    assert time.monotonic() - t0 < 5.0
    assert now.code == 0, now.stderr
    got = seqs(now.stdout)
    assert len(got) >= 4
    assert got == list(range(len(got)))
    assert len(got) < 200
    assert info(d, slow)["open"] is True


def test_attach_by_key_runs_producer_once(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    first = d.cli("stream", "p", "count", "n=20", "tag=k", "--key", "job-1", "--json")
    assert first.code == 0, first.stderr
    assert "started" in first.stderr
    second = d.cli("stream", "p", "count", "n=20", "tag=k", "--key", "job-1", "--json")
    assert second.code == 0, second.stderr
    assert "attached" in second.stderr, second.stderr
    assert (
        records(first.stdout)
        == records(second.stdout)
        == [{"seq": i, "data": i} for i in range(20)]
    )
    sid1 = first.stderr.split("stream ", 1)[1].split()[0]
    sid2 = second.stderr.split("stream ", 1)[1].split()[0]
    assert sid1 == sid2
    assert starts(tmp_path) == ["count 20 k"]

    # Same key, different args: a business error (exit 3), HTTP 422; nothing runs.
    conflict = d.cli("stream", "p", "count", "n=21", "tag=k", "--key", "job-1")
    assert conflict.code == 3, (conflict.stdout, conflict.stderr)
    assert "business" in conflict.stderr
    status, _, body = d.http(
        "POST",
        "/v1/actors/p/streams",
        {"op": "count", "args": {"n": 7, "tag": "k"}},
        {"Idempotency-Key": "job-1"},
    )
    assert status == 422, body
    assert body["error"]["category"] == "business"
    # HTTP attach with the same request and key: 200, attached, same id.
    status, _, body = d.http(
        "POST",
        "/v1/actors/p/streams",
        {"op": "count", "args": {"n": 20, "tag": "k"}},
        {"Idempotency-Key": "job-1"},
    )
    assert status == 200, body
    assert body["stream"] == sid1 and body["attached"] is True
    # The key may also travel in the body.
    status, _, body = d.http(
        "POST",
        "/v1/actors/p/streams",
        {"op": "count", "args": {"n": 20, "tag": "k"}, "key": "job-1"},
    )
    assert status == 200 and body["stream"] == sid1, body
    assert starts(tmp_path) == ["count 20 k"]

    # Concurrent starts with one key: one stream, one producer run.
    ids: list[Any] = []
    barrier = threading.Barrier(10)

    def one() -> None:
        barrier.wait(5)
        ids.append(start(d, "p", "count", key="race", n=30, delay=0.01))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(ids) == 10 and len(set(ids)) == 1, ids
    # --key with --resume attaches and prints from the offset.
    tail = d.cli(
        "stream", "p", "count", "n=30", "delay=0.01", "--key", "race", "--resume", "25", "--json"
    )
    assert tail.code == 0, tail.stderr
    assert seqs(tail.stdout) == [25, 26, 27, 28, 29]
    assert starts(tmp_path) == ["count 20 k", "count 30 "]
    # The same key on another actor is another stream.
    other = start(d, "q", "count", key="race", n=30, delay=0.01)
    assert other != ids[0]


def test_unknown_actor_op_and_stream_id(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    ghost = d.cli("stream", "ghost", "count")
    assert ghost.code == 6, (ghost.stdout, ghost.stderr)
    assert "ghost" in ghost.stderr
    status, _, body = d.http("POST", "/v1/actors/ghost/streams", {"op": "count"})
    assert status == 404 and body["error"]["category"] == "runtime", (status, body)
    not_a_stream = d.cli("stream", "p", "ping")
    assert not_a_stream.code == 5, (not_a_stream.stdout, not_a_stream.stderr)
    private = d.cli("stream", "p", "_secret")
    assert private.code == 5, (private.stdout, private.stderr)
    # An unknown stream id: runtime error, exit 6 / HTTP 404.
    result = d.cli("stream", "--id", "s0000000000000000")
    assert result.code == 6, (result.stdout, result.stderr)
    assert "s0000000000000000" in result.stderr
    status, _, body = d.http("GET", "/v1/streams/s0000000000000000")
    assert status == 404, body
    assert body["error"]["category"] == "runtime"
    status, _, body = d.http("GET", "/v1/streams/s0000000000000000/info")
    assert status == 404, body


# ---------------------------------------------------------------------- connection cuts
class CuttingProxy:
    """A TCP proxy 127.0.0.1:port -> target that cuts client connections.

    Each connection accepted while fewer than ``max_cuts`` cuts happened is cut after
    ``cut_every`` bytes flowed back to the client (mid-line, mid-HTTP-chunk). Cuts
    alternate between a FIN (close) and an RST (abort).
    """

    def __init__(self, target_port: int, cut_every: int = 1200, max_cuts: int = 5) -> None:
        self.target_port = target_port
        self.cut_every = cut_every
        self.max_cuts = max_cuts
        self.cuts = 0
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        assert self.ready.wait(5.0), "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        budget = self.cut_every if self.cuts < self.max_cuts else None
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cwriter.close()
            return

        async def upstream() -> None:
            try:
                while data := await creader.read(65536):
                    uwriter.write(data)
                    await uwriter.drain()
            except (OSError, asyncio.CancelledError):
                pass

        up = asyncio.ensure_future(upstream())
        cut = False
        sent = 0
        try:
            while True:
                data = await ureader.read(65536)
                if not data:
                    break
                if budget is not None and sent + len(data) >= budget:
                    cwriter.write(data[: budget - sent])
                    await cwriter.drain()
                    cut = True
                    break
                cwriter.write(data)
                await cwriter.drain()
                sent += len(data)
        except OSError:
            pass
        finally:
            up.cancel()
            if cut:
                self.cuts += 1
                if self.cuts % 2:
                    cwriter.close()
                else:
                    cwriter.transport.abort()
            else:
                cwriter.close()
            uwriter.close()


def test_connection_cuts_resume_without_loss_or_duplicates(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    with CuttingProxy(d.port, cut_every=1200, max_cuts=5) as proxy:
        result = d.cli(
            "stream",
            "p",
            "count",
            "n=300",
            "delay=0.003",
            "--json",
            "-e",
            f"http://127.0.0.1:{proxy.port}",
            timeout=40,
        )
    assert result.code == 0, (result.stdout[-500:], result.stderr)
    assert records(result.stdout) == [{"seq": i, "data": i} for i in range(300)]
    assert proxy.cuts >= 3, proxy.cuts
    assert "reconnecting" in result.stderr, result.stderr
    assert starts(tmp_path) == ["count 300 "]


def test_connection_cut_while_starting_is_resumed(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    # The first connection (the start) is cut after the daemon answered, before any
    # byte of the answer reaches the CLI.
    with CuttingProxy(d.port, cut_every=0, max_cuts=1) as proxy:
        result = d.cli(
            "stream",
            "p",
            "count",
            "n=5",
            "--json",
            "-e",
            f"http://127.0.0.1:{proxy.port}",
            timeout=30,
        )
    assert proxy.cuts == 1
    assert starts(tmp_path) == ["count 5 "]  # the daemon did start it
    assert result.code == 0, (result.stdout, result.stderr)
    assert seqs(result.stdout) == [0, 1, 2, 3, 4]
    assert starts(tmp_path) == ["count 5 "]  # and did not start it twice


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_cli_follows_a_stream_through_a_daemon_restart(daemon_factory, tmp_path, how) -> None:
    d = make(daemon_factory, tmp_path)
    env = {**os.environ, "PULSING_ENDPOINT": d.endpoint, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [*pulsing_command(), "stream", "p", "count", "n=500", "delay=0.02", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(proc.stdout))  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while len(printed) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        if how == "sigkill":
            d.kill()
        else:
            assert d.stop() == 0
        d.start()
        proc.wait(20)
        reader.join(10)
        err = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    # The committed chunks exactly once, in order, then the system error terminal.
    assert proc.returncode == 4, (proc.returncode, err)
    if how == "sigkill":  # after SIGTERM the daemon may still send the terminal itself
        assert "reconnecting" in err, err
    envelope = json.loads(printed[-1])
    assert envelope["error"]["category"] == "system", envelope
    got = seqs("".join(printed[:-1]))
    assert got == list(range(len(got))) and len(got) >= 5
    sid = err.split()[1]
    assert info(d, sid)["next_seq"] == len(got)


# ---------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize(
    ("n", "delay", "after"),
    [(30, 0.03, 5), (30000, 0.0, 200)],
    ids=["slow", "fast"],
)
def test_ctrl_c_prints_exact_resume_command(daemon_factory, tmp_path, n, delay, after) -> None:
    d = make(daemon_factory, tmp_path)
    env = {**os.environ, "PULSING_ENDPOINT": d.endpoint, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [*pulsing_command(), "stream", "p", "count", f"n={n}", f"delay={delay}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(proc.stdout))  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while len(printed) < after and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(printed) >= after, printed
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        reader.join(10)
        err = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, (proc.returncode, err)
    got = seqs("".join(printed))
    assert got == list(range(len(got))) and len(got) >= after
    assert len(got) < n, "interrupted too late to test anything"
    assert "Traceback" not in err
    assert f"--resume {len(got)}" in err, err
    command = err[err.index("pulsing stream") :].split("\n")[0].split()
    assert command[:2] == ["pulsing", "stream"]
    resumed = d.cli(*command[1:], "--json", timeout=30)
    assert resumed.code == 0, resumed.stderr
    assert got + seqs(resumed.stdout) == list(range(n))


# ---------------------------------------------------------------------- HTTP wire formats
def test_sse_and_ndjson_wire_formats(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    sid = start(d, "p", "count", n=6)
    wait_closed(d, sid)

    events = sse(d, sid)
    assert [e["id"] for e in events[:-1]] == [str(i) for i in range(6)]
    assert [e["data"] for e in events[:-1]] == [{"seq": i, "data": i} for i in range(6)]
    assert events[-1] == {"id": None, "data": {"end": True}}
    assert "seq" not in events[-1]["data"]

    resumed = sse(d, sid, headers={"Last-Event-ID": "2"})
    assert [e["data"]["seq"] for e in resumed[:-1]] == [3, 4, 5]
    assert resumed[-1]["data"] == {"end": True}

    from_query = sse(d, sid, "?from=4")
    assert [e["data"]["seq"] for e in from_query[:-1]] == [4, 5]

    lines = ndjson(d, sid)
    assert lines == [{"seq": i, "data": i} for i in range(6)] + [{"end": True}]
    assert ndjson(d, sid, "?from=5") == [{"seq": 5, "data": 5}, {"end": True}]

    # A live stream: SSE follows it until the terminal record.
    live = start(d, "q", "count", n=30, delay=0.01)
    events = sse(d, live)
    assert [int(e["id"]) for e in events[:-1]] == list(range(30))
    assert events[-1]["data"] == {"end": True}


# ---------------------------------------------------------------------- error terminals
def test_error_terminals_and_exit_codes(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    failed = d.cli("stream", "p", "fail_after", "n=2", "--json")
    assert failed.code == 4, (failed.stdout, failed.stderr)
    lines = failed.stdout.splitlines()
    assert [json.loads(x) for x in lines[:2]] == [{"seq": 0, "data": 0}, {"seq": 1, "data": 1}]
    # With --json the error envelope follows the chunks on stdout.
    envelope = json.loads(lines[-1])
    assert envelope["error"]["category"] == "system", envelope

    sid = failed.stderr.split()[1]
    recs = ndjson(d, sid)
    assert recs[:2] == [{"seq": 0, "data": 0}, {"seq": 1, "data": 1}]
    assert set(recs[2]) == {"error"} and recs[2]["error"]["category"] == "system", recs
    assert "producer exploded" in recs[2]["error"]["message"]

    d.wait_state("p", "running")
    business = d.cli("stream", "p", "business_after", "n=2")
    assert business.code == 3, (business.stdout, business.stderr)
    assert business.stdout.splitlines() == ["0", "1"]
    assert "no more items for you" in business.stderr
    sid = business.stderr.split()[1]
    terminal = ndjson(d, sid)[-1]["error"]
    assert terminal["category"] == "business" and terminal["code"] == "out_of_range", terminal

    unsupported = d.cli("stream", "p", "nope")
    assert unsupported.code == 5, (unsupported.stdout, unsupported.stderr)


# ---------------------------------------------------------------------- durability
def test_finished_stream_survives_sigterm_restart(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    first = d.cli("stream", "p", "count", "n=25", "--key", "durable", "--json")
    assert first.code == 0, first.stderr
    sid = first.stderr.split()[1]
    assert d.stop() == 0
    d.start()
    again = d.cli("stream", "--id", sid, "--json")
    assert again.code == 0, again.stderr
    assert records(again.stdout) == [{"seq": i, "data": i} for i in range(25)]
    # The key still names the same stream: attach, no second run.
    attached = d.cli("stream", "p", "count", "n=25", "--key", "durable", "--json")
    assert attached.code == 0, attached.stderr
    assert "attached" in attached.stderr and sid in attached.stderr
    assert records(attached.stdout) == records(first.stdout)
    assert starts(tmp_path) == ["count 25 "]


def test_sigkill_mid_stream_keeps_committed_chunks_then_system_error(
    daemon_factory, tmp_path
) -> None:
    d = make(daemon_factory, tmp_path)
    sid = start(d, "p", "count", key="k9", n=500, delay=0.02)
    wait_committed(d, sid, 10)
    d.kill()
    d.start()
    after = wait_closed(d, sid)
    committed = after["next_seq"]
    assert 10 <= committed < 500, after
    result = d.cli("stream", "--id", sid, "--json")
    assert result.code == 4, (result.stdout[-300:], result.stderr)
    lines = result.stdout.splitlines()
    assert [json.loads(x) for x in lines[:-1]] == [{"seq": i, "data": i} for i in range(committed)]
    assert json.loads(lines[-1])["error"]["category"] == "system"
    assert "system error" in d.cli("stream", "--id", sid).stderr
    terminal = ndjson(d, sid)[-1]
    assert terminal["error"]["category"] == "system" and "seq" not in terminal, terminal
    # The key still names that stream after SIGKILL: attaching does not run it again.
    status, _, body = d.http(
        "POST",
        "/v1/actors/p/streams",
        {"op": "count", "args": {"n": 500, "delay": 0.02}},
        {"Idempotency-Key": "k9"},
    )
    assert status == 200 and body["stream"] == sid and body["attached"] is True, body
    assert starts(tmp_path) == ["count 500 "]  # never re-run after the restart


def test_chunks_a_reader_saw_survive_sigkill(daemon_factory, tmp_path) -> None:
    """Journaled before sent: whatever a reader got before SIGKILL is there after."""
    d = make(daemon_factory, tmp_path)
    sid = start(d, "p", "count", n=1000, delay=0.005)
    seen: list[dict[str, Any]] = []
    reading = threading.Event()

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=15)
        try:
            conn.request("GET", f"/v1/streams/{sid}", headers={"Accept": "application/x-ndjson"})
            response = conn.getresponse()
            while line := response.readline():
                if line.strip():
                    seen.append(json.loads(line))
                    reading.set()
        except (OSError, http.client.HTTPException, ValueError):
            pass  # the daemon died under us (possibly mid-line)
        finally:
            conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(10)
    time.sleep(0.3)
    d.kill()
    thread.join(10)
    assert seen and "seq" in seen[-1], seen[-3:]
    d.start()
    after = ndjson(d, sid)
    assert after[: len(seen)] == seen
    assert after[:-1] == [{"seq": i, "data": i} for i in range(len(after) - 1)]
    assert after[-1]["error"]["category"] == "system", after[-1]


# ---------------------------------------------------------------------- errors
def test_offset_older_than_retention_names_earliest(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path, "stream_retention_chunks = 5\n")
    sid = start(d, "p", "count", n=20)
    wait_closed(d, sid)
    status, _, body = d.http("GET", f"/v1/streams/{sid}?from=0")
    assert status == 410, body
    assert body["error"]["category"] == "runtime"
    assert body["error"]["earliest"] == 15, body
    assert "15" in body["error"]["message"]

    old = d.cli("stream", "--id", sid, "--resume", "0")
    assert old.code == 6, (old.stdout, old.stderr)
    assert "earliest" in old.stderr and "15" in old.stderr, old.stderr
    old_json = d.cli("stream", "--id", sid, "--resume", "3", "--json")
    assert old_json.code == 6
    assert json.loads(old_json.stdout)["error"]["earliest"] == 15

    ok = d.cli("stream", "--id", sid, "--resume", "15", "--json")
    assert ok.code == 0, ok.stderr
    assert seqs(ok.stdout) == [15, 16, 17, 18, 19]


# ---------------------------------------------------------------------- many readers
def test_twenty_concurrent_readers_each_get_everything(daemon_factory, tmp_path) -> None:
    d = make(daemon_factory, tmp_path)
    n = 150
    sid = start(d, "p", "count", n=n, delay=0.005)
    results: dict[int, Any] = {}

    def reader(index: int) -> None:
        try:
            results[index] = ndjson(d, sid)
        except Exception as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 20
    expected = [{"seq": i, "data": i} for i in range(n)] + [{"end": True}]
    for index, got in results.items():
        assert got == expected, (index, got if isinstance(got, Exception) else len(got))
