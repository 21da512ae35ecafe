"""The Ray worker's ask handling without Ray: ``PulsingRayWorker`` is a plain class whose
methods Ray runs on its actor threads, so the tests call them from threads of their own.

Asks sent ahead run strictly in ``seq`` order, one at a time; one withdrawn before its
turn never runs and answers how it was withdrawn; after a failure nothing more starts;
a sync op runs on the ask's thread (not the instance's loop), an async op on the loop.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pulsing_daemon.hosts.ray_worker import PulsingRayWorker

ACTOR = """
import asyncio
import threading

class Recorder:
    def __init__(self):
        self.ran = []
        self.gate = threading.Event()

    def note(self, n):
        self.ran.append(n)
        return threading.current_thread().name

    def hold(self, n):
        self.gate.wait(10)
        self.ran.append(n)
        return n

    def boom(self, n):
        self.ran.append(n)
        raise RuntimeError("boom")

    async def anote(self, n):
        await asyncio.sleep(0)
        self.ran.append(n)
        return threading.current_thread().name
"""


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[PulsingRayWorker]:
    (tmp_path / "ray_worker_actor.py").write_text(textwrap.dedent(ACTOR))
    saved = sys.stdout, sys.stderr, list(logging.getLogger().handlers), logging.getLogger().level
    w = PulsingRayWorker("rec", [str(tmp_path)])
    try:
        assert w.start("ray_worker_actor:Recorder", {}).get("ok") is True
        yield w
    finally:
        w.stop()
        w.loop.call_soon_threadsafe(w.loop.stop)
        sys.stdout, sys.stderr = saved[0], saved[1]
        logging.getLogger().handlers[:] = saved[2]
        logging.getLogger().setLevel(saved[3])
        sys.modules.pop("ray_worker_actor", None)


def request(call_id: int, seq: int, op: str, n: int, budget: float = 30.0) -> bytes:
    return json.dumps(
        {"id": call_id, "seq": seq, "op": op, "args": [], "kwargs": {"n": n}, "budget": budget}
    ).encode()


def answer(future: Future[bytes]) -> dict[str, Any]:
    return json.loads(future.result(timeout=10))  # type: ignore[no-any-return]


def wait_waiting(w: PulsingRayWorker, call_id: int) -> None:
    for _ in range(1000):
        with w.lock:
            if call_id in w.waiting:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"call {call_id} never waited for its turn")


def test_asks_run_in_seq_order_whatever_the_arrival(worker: PulsingRayWorker) -> None:
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for seq in (4, 3, 2):  # arrive before the first, out of order
            futures.append(pool.submit(worker.call, request(seq, seq, "note", seq)))
            wait_waiting(worker, seq)
        futures.append(pool.submit(worker.call, request(1, 1, "note", 1)))
        names = [answer(f)["value"] for f in futures]
    assert worker.core.host.instance.ran == [1, 2, 3, 4]
    assert "pulsing-ray-loop" not in names  # a sync op runs on the ask's thread


def test_an_async_op_runs_on_the_instance_loop(worker: PulsingRayWorker) -> None:
    assert answer_now(worker, request(1, 1, "anote", 7)) == {"value": "pulsing-ray-loop"}


def answer_now(w: PulsingRayWorker, body: bytes) -> dict[str, Any]:
    return json.loads(w.call(body))  # type: ignore[no-any-return]


def test_withdrawn_before_its_turn_never_runs(worker: PulsingRayWorker) -> None:
    recorder = worker.core.host.instance
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(worker.call, request(1, 1, "hold", 1))
        second = pool.submit(worker.call, request(2, 2, "note", 2))
        third = pool.submit(worker.call, request(3, 3, "note", 3))
        wait_waiting(worker, 2)
        wait_waiting(worker, 3)
        assert worker.cancel(2, "expired") is True
        assert answer(second) == {"expired": True}  # at once, the first still running
        assert not first.done()
        recorder.gate.set()
        assert answer(first) == {"value": 1}
        assert answer(third)["value"]
    assert recorder.ran == [1, 3]
    assert answer_now(worker, request(4, 4, "note", 4))["value"]  # the turns go on


def test_after_a_failure_nothing_more_starts(worker: PulsingRayWorker) -> None:
    with ThreadPoolExecutor(8) as pool:
        behind = pool.submit(worker.call, request(2, 2, "note", 2))
        wait_waiting(worker, 2)
        failed = answer_now(worker, request(1, 1, "boom", 1))
        assert failed["error"]["type"] == "RuntimeError"
        assert answer(behind) == {"not_started": True}
    assert worker.core.host.instance.ran == [1]


def test_a_spent_budget_is_never_started(worker: PulsingRayWorker) -> None:
    assert answer_now(worker, request(1, 1, "note", 1, budget=-1.0)) == {"expired": True}
    assert worker.core.host.instance.ran == []
