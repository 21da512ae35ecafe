"""The cell with a host that runs asks sent ahead in order (``ActorHost.pipelines``), as
the Ray host does, driven by a fake in-process one: mailbox order, one op at a time,
deadlines of asks sent ahead, asks behind a failure served once by the next instance.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from pathlib import Path
from typing import Any

from test_cell import BOUND, actor_config, answer, failure, ran, send, wait_for_state

from pulsing_daemon.cell import ActorCell
from pulsing_daemon.config import ActorConfig
from pulsing_daemon.exceptions import PulsingTimeoutError, is_failure
from pulsing_daemon.hosts.base import ActorHost, Exit, LateAnswers, NotStarted, call_deadline
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.states import ActorState


class PipeHost(ActorHost):
    """Runs invoked asks one at a time, in order, on a task of its own."""

    pipelines = True
    most_ahead = 0

    def __init__(self, config: ActorConfig) -> None:
        assert config.cls is not None
        self.cls = config.cls
        self.args = dict(config.args)
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self.queue: collections.deque[tuple[asyncio.Future[Any], str, list, dict, float]] = (
            collections.deque()
        )
        self.ready = asyncio.Event()
        self.failed = False
        self.running: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        self.instance = self.cls(**self.args)
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.ready.clear()
                await self.ready.wait()
            future, op, args, kwargs, deadline = self.queue.popleft()
            if future.done():
                continue
            if self.failed:
                future.set_exception(NotStarted(expired=False))
                continue
            if loop.time() >= deadline:
                future.set_exception(NotStarted(expired=True))
                continue
            self.running = future
            try:
                result = getattr(self.instance, op)(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self.failed = self.failed or is_failure(exc)
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                self.running = None

    def invoke(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        info = resolve_op(self.cls, op, OpKind.ASK)
        assert info is not None
        bind_arguments(info, args, kwargs)
        future = asyncio.get_running_loop().create_future()
        self.queue.append((future, op, args, kwargs, call_deadline.get() or float("inf")))
        PipeHost.most_ahead = max(PipeHost.most_ahead, len(self.queue))
        self.ready.set()
        return future

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        if running is not self.running and not running.done():
            running.set_exception(NotStarted(expired))

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        return running.done()

    async def stop(self, graceful: bool = True) -> None:
        self.task.cancel()
        for future, *_ in self.queue:
            if not future.done():
                future.set_exception(NotStarted(expired=False))
        if not self.exited.done():
            self.exited.set_result(Exit("process"))


def run_pipe_cell(config: ActorConfig, scenario: Any) -> Any:
    async def main() -> Any:
        cell = ActorCell(config, PipeHost, default_timeout=5.0)
        cell.start()
        try:
            await asyncio.wait_for(cell.wait_started(2.0), BOUND)
            return await asyncio.wait_for(scenario(cell), 8.0)
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    return asyncio.run(main())


def test_asks_are_sent_ahead_and_answered_in_order(tmp_path: Path) -> None:
    PipeHost.most_ahead = 0

    async def scenario(cell: ActorCell) -> None:
        first = send(cell, "slow", 0.05)
        rest = [send(cell, "mark", f"p{i}") for i in range(10)]
        assert await answer(first) == 0.05
        assert [await answer(e) for e in rest] == [f"p{i}" for i in range(10)]
        assert cell.in_flight == 0 and cell.queued == 0

    run_pipe_cell(actor_config(tmp_path), scenario)
    assert PipeHost.most_ahead > 1  # the marks were sent while slow ran
    assert ran()[-10:] == [f"p{i}" for i in range(10)]


def test_an_ask_sent_ahead_that_expires_before_its_turn_never_runs(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        first = send(cell, "slow", 0.4, token="long")
        late = send(cell, "mark", "never", timeout=0.1)
        error = await failure(late)
        assert isinstance(error, PulsingTimeoutError)
        assert "never executed" in error.message
        assert await answer(first) == 0.4

    run_pipe_cell(actor_config(tmp_path), scenario)
    assert "never" not in ran()


def test_asks_behind_a_failure_go_to_the_next_instance_once(tmp_path: Path) -> None:
    async def scenario(cell: ActorCell) -> None:
        crash = send(cell, "crash")
        rest = [send(cell, "mark", f"after{i}") for i in range(5)]
        assert (await failure(crash)).category == "system"
        assert [await answer(e) for e in rest] == [f"after{i}" for i in range(5)]
        await wait_for_state(cell, ActorState.RUNNING)
        assert cell.tracker.count == 1

    run_pipe_cell(actor_config(tmp_path), scenario)
    assert [t for t in ran() if t.startswith("after")][-5:] == [f"after{i}" for i in range(5)]


class LatePipeHost(PipeHost):
    """An instance that says the ``mark`` asks whose token starts with "late" ended past
    their deadline (as a child process or a Ray worker says it in its answer)."""

    def __init__(self, config: ActorConfig) -> None:
        super().__init__(config)
        self.late_answers = LateAnswers()

    def invoke(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        future = super().invoke(op, args, kwargs)
        if op == "mark" and str(args[0] if args else kwargs.get("token")).startswith("late"):
            future.add_done_callback(self.late_answers.mark)
        return future


def test_an_ask_whose_op_ended_late_is_answered_with_its_deadline(tmp_path: Path) -> None:
    """The instance says the op ended past its deadline, though its answer came first in
    the loop's turn: the caller gets the deadline (the op executed), the real outcome
    goes to ``on_late``; alone or sent ahead, and the asks around it are answered as
    usual."""
    late_outcomes: list[tuple[Any, Any]] = []

    async def scenario(cell: ActorCell) -> None:
        alone = send(cell, "mark", "late-alone")
        alone.on_late = lambda value, error: late_outcomes.append((value, error))
        error = await failure(alone)
        assert isinstance(error, PulsingTimeoutError) and alone.executed
        first = send(cell, "slow", 0.05)
        ahead = send(cell, "mark", "late-ahead")
        after = send(cell, "mark", "on-time")
        assert await answer(first) == 0.05
        assert isinstance(await failure(ahead), PulsingTimeoutError) and ahead.executed
        assert await answer(after) == "on-time"

    async def run() -> None:
        cell = ActorCell(actor_config(tmp_path), LatePipeHost, default_timeout=5.0)
        cell.start()
        try:
            await asyncio.wait_for(cell.wait_started(2.0), BOUND)
            await asyncio.wait_for(scenario(cell), 8.0)
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    asyncio.run(run())
    assert late_outcomes == [("late-alone", None)]
    assert ran()[-3:] == ["late-alone", "late-ahead", "on-time"]


def test_late_answers_are_told_once_and_held_weakly() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        late = LateAnswers()
        marked, other = loop.create_future(), loop.create_future()
        late.mark(marked)
        assert not late.take(other)
        assert late.take(marked) and not late.take(marked)
        late.mark(other)
        del other
        assert not late._futures  # forgotten with its future

    asyncio.run(main())


def test_an_ask_taken_back_at_a_stop_whose_op_ended_late_records_its_outcome(
    tmp_path: Path,
) -> None:
    """An ask sent ahead that ran, and whose op the instance says ended past its
    deadline, found in the window when the actor stops: its caller gets the deadline and
    ``on_late`` the real outcome, as in the run (a keyed ask's record is settled)."""
    late_outcomes: list[tuple[Any, Any]] = []

    async def run() -> None:
        cell = ActorCell(actor_config(tmp_path), LatePipeHost, default_timeout=5.0)
        cell.start()
        try:
            await asyncio.wait_for(cell.wait_started(2.0), BOUND)
            first = send(cell, "slow", 0.1)
            ahead = send(cell, "mark", "late-at-stop")
            ahead.on_late = lambda value, error: late_outcomes.append((value, error))

            async def sent_ahead() -> None:
                while cell.in_flight < 2:
                    await asyncio.sleep(0.001)

            await asyncio.wait_for(sent_ahead(), BOUND)
            stopping = asyncio.create_task(cell.stop())
            assert await answer(first) == 0.1
            assert isinstance(await failure(ahead), PulsingTimeoutError) and ahead.executed
            await asyncio.wait_for(stopping, BOUND)
        finally:
            await asyncio.wait_for(cell.stop(), BOUND)

    asyncio.run(run())
    assert late_outcomes == [("late-at-stop", None)]
