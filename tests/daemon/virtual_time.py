"""An event loop on a virtual clock, for tests: timers fire with no real sleep.

``loop.time()`` starts at 0 and moves only when nothing can happen without it: no
callback and no I/O is ready and no job on the daemon's op thread pool is running.
Then it jumps to the next timer. Everything on the loop's clock -- ``call_at``,
``wait_for``, ``sleep``, :class:`Deadline` -- follows.

While ``run_virtual`` runs, the op thread pool (``pulsing_daemon.hosts.threads``)
counts its jobs on the loop that started them: while one runs, the loop waits for it
in real time and the clock stands still, so a sync op, a constructor or a batch is
never overtaken by a deadline that would not have passed in real time. A test op
that must "take a while" waits on a :class:`Gate` instead of sleeping: while it waits
there its thread does not count, so time may move (to the deadline a test is about),
until the test opens the gate from the loop. Threads outside the op pool are not
counted: a timer pending while one works makes time jump past it.

Every run is bounded in real time: past ``real_timeout`` a watchdog thread opens every
gate and cancels the test, which then fails.

    run_virtual(main())
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import selectors
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from pulsing_daemon.hosts import threads

REAL_TIMEOUT = 20.0  # real seconds a whole run_virtual may take
GATE_TIMEOUT = 10.0  # real seconds an op waits at a gate nobody opens, then fails
JOB_POLL = 0.005  # real seconds between looks while an op thread works (it wakes the loop anyway)

_job_loop = threading.local()  # .loop: the VirtualTimeLoop whose job this thread runs


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Jobs first, then I/O: a job that ends in between has woken the loop by then
        # (see _CountingExecutor), so "no job, nothing ready" is never a job's last step.
        working = self._loop.jobs_running
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if working:  # an op thread works: wait for it, the clock stands still
            return self._real.select(JOB_POLL)
        if timeout is None:  # no timer pending: wait for real I/O or a thread
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        self._jobs_lock = threading.Lock()
        self.jobs_running = 0  # op-thread jobs started from this loop and not ended
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def count_jobs(self, change: int) -> None:
        """Any thread: ``change`` more (or fewer) op-thread jobs are running."""
        with self._jobs_lock:
            self.jobs_running += change


class _CountingExecutor(concurrent.futures.Executor):
    """The op thread pool, counting each job on the virtual loop that submitted it.

    A job counts until its outcome is on its future, whose callbacks (asyncio's
    ``run_in_executor`` wake-up among them) have run by then: the loop is woken before
    the job stops counting, so it can never see "no job, nothing ready" in between.
    """

    def __init__(self, real: concurrent.futures.Executor) -> None:
        self._real = real

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not from a loop: nothing to count it on
            loop = None
        if not isinstance(loop, VirtualTimeLoop):
            return self._real.submit(fn, *args, **kwargs)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def job() -> None:
            _job_loop.loop = loop
            try:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            finally:
                _job_loop.loop = None
                loop.count_jobs(-1)

        loop.count_jobs(1)
        try:
            self._real.submit(job)
        except BaseException:
            loop.count_jobs(-1)
            raise
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The real pool is the daemon's and outlives a test."""


class Gate:
    """Where a test's sync op waits (on its op thread) until the test opens it.

    While a thread waits here its job does not count, so virtual time may move;
    ``open`` (called on the loop) counts it again before it wakes, so time cannot
    jump between the opening and the op going on.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._waiting: list[VirtualTimeLoop] = []  # the loops of the threads parked here

    @property
    def waiting(self) -> int:
        """Op threads waiting at this gate now."""
        return len(self._waiting)

    def wait(self) -> None:
        """Op thread: wait until the gate is opened (failing after GATE_TIMEOUT)."""
        loop = getattr(_job_loop, "loop", None)
        if loop is None:
            raise RuntimeError(f"gate {self.name}: only an op-pool job may wait at a gate")
        with self._lock:
            if self._opened.is_set():
                return
            self._waiting.append(loop)
            loop.count_jobs(-1)
        if self._opened.wait(GATE_TIMEOUT):
            return
        with self._lock:
            if self._opened.is_set():  # opened just now: open() counted this thread
                return
            self._waiting.remove(loop)
            loop.count_jobs(1)
        raise TimeoutError(f"gate {self.name} was never opened")

    def open(self) -> None:
        """Let every op waiting here (and any arriving later) go on."""
        with self._lock:
            for loop in self._waiting:
                loop.count_jobs(1)
            self._waiting.clear()
            self._opened.set()


_gates: dict[str, Gate] = {}
_gates_lock = threading.Lock()


def gate(name: str) -> Gate:
    """The gate called ``name`` (made on first use; every gate opens when its run ends)."""
    with _gates_lock:
        found = _gates.get(name)
        if found is None:
            found = _gates[name] = Gate(name)
        return found


def _open_all_gates() -> None:
    with _gates_lock:
        gates = list(_gates.values())
        _gates.clear()
    for each in gates:
        each.open()


@contextlib.contextmanager
def _counted_op_threads() -> Iterator[None]:
    real = threads._EXECUTOR
    threads._EXECUTOR = _CountingExecutor(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        threads._EXECUTOR = real


def run_virtual(main: Coroutine[Any, Any, Any], *, real_timeout: float = REAL_TIMEOUT) -> Any:
    """``asyncio.run`` on a :class:`VirtualTimeLoop`, failing past ``real_timeout``
    real seconds."""
    hung = threading.Event()

    async def guarded() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def fire() -> None:
            hung.set()
            _open_all_gates()
            loop.call_soon_threadsafe(task.cancel)

        watchdog = threading.Timer(real_timeout, fire)
        watchdog.daemon = True
        watchdog.start()
        try:
            return await main
        finally:
            watchdog.cancel()

    result = None
    try:
        with _counted_op_threads(), asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            result = runner.run(guarded())
    except asyncio.CancelledError:
        if not hung.is_set():
            raise
    finally:
        _open_all_gates()
    if hung.is_set():  # however the run ended once the watchdog stepped in
        raise AssertionError(f"still running after {real_timeout} real seconds")
    return result
