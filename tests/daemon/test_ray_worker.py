"""The Ray worker's ask handling without Ray: ``PulsingRayWorker`` is a plain class whose
methods Ray runs on its actor threads, so the tests call them from threads of their own.

Ray hands ``call`` the asks one at a time, in the order sent (one thread, in order:
``remote_class`` puts the other methods in groups of their own). One withdrawn
(``cancel``) before its turn never runs and answers how it was withdrawn; one that came
to its turn cannot be withdrawn; after a failure nothing more starts; a spent budget is
never started; a sync op runs on the ask's thread (not the instance's loop), an async
op on the loop.
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

from pulsing_daemon.hosts.ray_worker import PulsingRayWorker, remote_class

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


def request(call_id: int, op: str, n: int, budget: float = 30.0) -> bytes:
    return json.dumps(
        {"id": call_id, "op": op, "args": [], "kwargs": {"n": n}, "budget": budget}
    ).encode()


def answer(future: Future[bytes]) -> dict[str, Any]:
    return json.loads(future.result(timeout=10))  # type: ignore[no-any-return]


def answer_now(w: PulsingRayWorker, body: bytes) -> dict[str, Any]:
    return json.loads(w.call(body))  # type: ignore[no-any-return]


def test_call_alone_in_the_default_group() -> None:
    ray = pytest.importorskip("ray")
    actor_class = remote_class(ray)
    assert getattr(PulsingRayWorker.call, "__ray_concurrency_group__", None) is None
    for method in ("cancel", "watch", "stream", "start", "stop", "ping"):
        group = getattr(PulsingRayWorker, method).__ray_concurrency_group__
        assert group in PulsingRayWorker.GROUPS
    assert actor_class is not None


def test_a_sync_op_runs_on_the_asks_thread(worker: PulsingRayWorker) -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="ray-call") as pool:
        names = [answer(pool.submit(worker.call, request(n, "note", n))) for n in (1, 2, 3)]
    assert [n["value"].startswith("ray-call") for n in names] == [True] * 3
    assert worker.core.host.instance.ran == [1, 2, 3]


def test_an_async_op_runs_on_the_instance_loop(worker: PulsingRayWorker) -> None:
    assert answer_now(worker, request(1, "anote", 7)) == {"value": "pulsing-ray-loop"}


def wait_reached(w: PulsingRayWorker, call_id: int) -> None:
    for _ in range(1000):
        with w.lock:
            if w.reached == call_id:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"call {call_id} never came to its turn")


def test_withdrawn_before_its_turn_never_runs(worker: PulsingRayWorker) -> None:
    recorder = worker.core.host.instance
    with ThreadPoolExecutor(1) as pool:  # Ray's one thread of the default group
        first = pool.submit(worker.call, request(1, "hold", 1))
        second = pool.submit(worker.call, request(2, "note", 2))
        third = pool.submit(worker.call, request(3, "note", 3))
        wait_reached(worker, 1)
        assert worker.cancel(1, "expired") is False  # came to its turn: runs to its end
        assert worker.cancel(2, "expired") is True
        assert not first.done()
        recorder.gate.set()
        assert answer(first) == {"value": 1}
        assert answer(second) == {"expired": True}
        assert answer(third)["value"]
        assert worker.cancel(3, "not_started") is False  # answered already
    assert recorder.ran == [1, 3]
    assert answer_now(worker, request(4, "note", 4))["value"]  # the asks go on
    assert worker.withdrawn == {}


def test_withdrawn_ids_that_never_come_are_forgotten(worker: PulsingRayWorker) -> None:
    assert worker.cancel(5, "not_started") is True  # a stream's id, say: no ask comes
    assert answer_now(worker, request(6, "note", 6))["value"]
    assert worker.withdrawn == {}


def test_after_a_failure_nothing_more_starts(worker: PulsingRayWorker) -> None:
    failed = answer_now(worker, request(1, "boom", 1))
    assert failed["error"]["type"] == "RuntimeError"
    assert answer_now(worker, request(2, "note", 2)) == {"not_started": True}
    assert worker.core.host.instance.ran == [1]


def test_a_spent_budget_is_never_started(worker: PulsingRayWorker) -> None:
    assert answer_now(worker, request(1, "note", 1, budget=-1.0)) == {"expired": True}
    assert worker.core.host.instance.ran == []
