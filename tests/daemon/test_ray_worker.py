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

import asyncio
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


def untimed(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without ``t``, the seconds its op took (checked on its own)."""
    if "t" in answer:
        assert isinstance(answer.pop("t"), float)
    return answer


def answer(future: Future[bytes]) -> dict[str, Any]:
    return untimed(json.loads(future.result(timeout=10)))


def answer_now(w: PulsingRayWorker, body: bytes) -> dict[str, Any]:
    return untimed(json.loads(w.call(body)))


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


def batch(*requests: bytes) -> bytes:
    return b"[" + b",".join(requests) + b"]"


def test_a_batch_runs_its_asks_in_order_and_answers_each(worker: PulsingRayWorker) -> None:
    answers = json.loads(worker.call(batch(*(request(n, "note", n) for n in (1, 2, 3)))))
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert all(isinstance(a.pop("t"), float) for a in answers)
    assert [a["value"] for a in answers] == [threading.current_thread().name] * 3
    assert worker.core.host.instance.ran == [1, 2, 3]


def test_in_a_batch_a_withdrawn_ask_and_a_spent_budget_never_run(
    worker: PulsingRayWorker,
) -> None:
    assert worker.cancel(2, "not_started") is True
    body = batch(request(1, "note", 1), request(2, "note", 2),
                 request(3, "note", 3, budget=-1.0), request(4, "note", 4))  # fmt: skip
    answers = [untimed(a) for a in json.loads(worker.call(body))]
    assert answers[1:3] == [{"not_started": True, "id": 2}, {"expired": True, "id": 3}]
    assert worker.core.host.instance.ran == [1, 4]


def test_in_a_batch_nothing_starts_after_a_failure(worker: PulsingRayWorker) -> None:
    body = batch(request(1, "note", 1), request(2, "boom", 2), request(3, "note", 3))
    answers = [untimed(a) for a in json.loads(worker.call(body))]
    assert answers[1]["error"]["type"] == "RuntimeError"
    assert answers[2] == {"not_started": True, "id": 3}
    assert worker.core.host.instance.ran == [1, 2]


# --------------------------------------------------------------------------- batches
# The daemon's side (``hosts.ray.RayHost``) against this worker, with Ray's ordered
# queue of the default group played by one thread: which asks share a call.


class _Ref:
    def __init__(self, future: Future[bytes]) -> None:
        self._future = future

    def future(self) -> Future[bytes]:
        return self._future


class _Handle:
    """``handle.call.remote(body)``: ``PulsingRayWorker.call`` on one thread, in order."""

    def __init__(self, w: PulsingRayWorker, pool: ThreadPoolExecutor) -> None:
        self.sent: list[list[int]] = []
        self.call = self
        self._worker = w
        self._pool = pool

    def remote(self, body: bytes) -> _Ref:
        message = json.loads(body)
        ids = [m["id"] for m in message] if isinstance(message, list) else [message["id"]]
        self.sent.append(ids)
        return _Ref(self._pool.submit(self._worker.call, body))


def ray_host(tmp_path: Path, w: PulsingRayWorker, pool: ThreadPoolExecutor) -> Any:
    from pulsing_daemon.config import load_config
    from pulsing_daemon.hosts.ray import RayHost

    path = tmp_path / "pulsing.toml"
    path.write_text('[actors.rec]\nclass = "ray_worker_actor:Recorder"\nisolation = "ray"\n')
    config = load_config(path)
    host = RayHost(config.actors["rec"], config.daemon)
    host.handle = _Handle(w, pool)
    return host


def test_quick_asks_share_a_call_and_other_asks_go_alone(
    worker: PulsingRayWorker, tmp_path: Path
) -> None:
    from pulsing_daemon.hosts.ray import QUICK_STREAK

    async def main() -> tuple[list[list[int]], list[Any]]:
        with ThreadPoolExecutor(1) as pool:
            host = ray_host(tmp_path, worker, pool)
            for n in range(QUICK_STREAK):  # one at a time: note is not known quick yet
                assert (await host.invoke("note", [], {"n": n})).startswith("ThreadPool")
            # hold is not quick: alone, and the notes after it start a new batch
            worker.core.host.instance.gate.set()
            ops = ["note", "note", "hold", "note", "note", "note"]
            futures = [host.invoke(op, [], {"n": 10 + i}) for i, op in enumerate(ops)]
            host.send_now()
            values = await asyncio.gather(*futures)
            return host.handle.sent, values

    sent, values = asyncio.run(main())
    warm = [[n] for n in range(1, QUICK_STREAK + 1)]
    a = QUICK_STREAK + 1
    assert sent == [*warm, [a, a + 1], [a + 2], [a + 3, a + 4, a + 5]]
    assert values[2] == 12  # hold returns its n
    assert worker.core.host.instance.ran == [0, 1, 2, 10, 11, 12, 13, 14, 15]


def test_when_the_instance_dies_only_the_batch_in_progress_may_have_run(
    worker: PulsingRayWorker, tmp_path: Path
) -> None:
    """A batch answers at once: when the instance dies during it, each of its asks may
    have run (RayLost); the calls after it, and asks not sent yet, did not."""
    ray_exceptions = pytest.importorskip("ray.exceptions")
    from pulsing_daemon.hosts.base import NotStarted
    from pulsing_daemon.hosts.ray import QUICK_STREAK, RayLost

    gate = worker.core.host.instance.gate

    async def main() -> list[BaseException | None]:
        with ThreadPoolExecutor(1) as pool:
            host = ray_host(tmp_path, worker, pool)
            gate.set()
            for n in range(QUICK_STREAK):  # both ops known quick
                await host.invoke("note", [], {"n": n})
                await host.invoke("hold", [], {"n": n})
            gate.clear()
            in_progress = [host.invoke(op, [], {"n": 10 + i})
                           for i, op in enumerate(["note", "hold", "note"])]  # fmt: skip
            host.send_now()
            behind = host.invoke("note", [], {"n": 20})
            host.send_now()  # a call of its own: the outbox was emptied
            unsent = host.invoke("note", [], {"n": 30})
            assert host.handle.sent[-2:] == [[7, 8, 9], [10]]
            host._kill_cause = "stop"  # no look-up of the node: the test has no Ray
            await host._lost(ray_exceptions.RayActorError())
            outcomes = [f.exception() for f in [*in_progress, behind, unsent]]
            gate.set()  # the worker's late answers find every future answered
            return outcomes

    outcomes = asyncio.run(main())
    assert [type(e) for e in outcomes[:3]] == [RayLost] * 3
    assert all(isinstance(e, NotStarted) and not e.expired for e in outcomes[3:])


def test_an_ask_withdrawn_before_it_was_sent_is_never_sent(
    worker: PulsingRayWorker, tmp_path: Path
) -> None:
    from pulsing_daemon.hosts.base import NotStarted

    async def main() -> tuple[BaseException | None, list[list[int]]]:
        with ThreadPoolExecutor(1) as pool:
            host = ray_host(tmp_path, worker, pool)
            kept = host.invoke("note", [], {"n": 1})
            taken = host.invoke("note", [], {"n": 2})
            host.withdraw(taken, True)
            host.send_now()
            await kept
            return taken.exception(), host.handle.sent

    error, sent = asyncio.run(main())
    assert isinstance(error, NotStarted) and error.expired
    assert sent == [[1]] and worker.core.host.instance.ran == [1]


def test_a_slow_run_answered_after_its_caller_gave_up_still_counts(
    worker: PulsingRayWorker, tmp_path: Path
) -> None:
    from pulsing_daemon.hosts.ray import QUICK_STREAK

    gate = worker.core.host.instance.gate

    async def main() -> list[list[int]]:
        with ThreadPoolExecutor(1) as pool:
            host = ray_host(tmp_path, worker, pool)
            gate.set()
            for n in range(QUICK_STREAK):
                await host.invoke("hold", [], {"n": n})
            gate.clear()
            slow = host.invoke("hold", [], {"n": 10})
            host.send_now()
            slow.cancel()  # the caller gave up (its deadline, say)
            threading.Timer(0.05, gate.set).start()
            await asyncio.wrap_future(pool.submit(lambda: None))  # the slow one ran
            await asyncio.sleep(0.05)  # and its answer reached the loop
            pair = [host.invoke("hold", [], {"n": 20 + i}) for i in range(2)]
            host.send_now()
            await asyncio.gather(*pair)
            return host.handle.sent[-2:]  # type: ignore[no-any-return]

    assert asyncio.run(main()) == [[5], [6]]  # hold is slow lately: each alone


def test_an_ask_that_ended_past_its_budget_says_so(worker: PulsingRayWorker) -> None:
    """``late``: the op ended past its budget (counted from the ask's arrival); the
    daemon answers its caller's deadline then, however soon the answer comes."""
    with ThreadPoolExecutor(1, thread_name_prefix="ray-call") as pool:
        held = pool.submit(worker.call, request(1, "hold", 1, budget=0.05))
        wait_reached(worker, 1)
        threading.Event().wait(0.1)
        worker.core.host.instance.gate.set()
        assert answer(held) == {"value": 1, "late": True}
    assert answer_now(worker, request(2, "note", 2)) == {"value": "MainThread"}
