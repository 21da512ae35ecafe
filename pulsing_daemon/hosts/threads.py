"""The op thread pool and what crosses between it and the event loop.

Sync ops, constructors and hooks run on one shared thread pool. A busy actor's sync
asks run in batches (:func:`run_sync_batch`, each member a :class:`SyncCall` that the
loop's deadline watch and the op thread race for under one lock); results come back
through :class:`LoopPost`, which wakes the loop once for many. A sync generator runs in
one thread-pool job (:func:`iterate_in_thread`). Op threads follow the event loop's CPU
(Linux): see ``loop_cpu``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import enum
import functools
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from pulsing_daemon.exceptions import is_failure

# Sync ops and constructors run here. Threads are created only when needed; the cap
# bounds how many actors can be blocked in sync code at the same time.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="pulsing-op")

# Op threads follow the event loop's CPU (Linux). The loop and the thread running a
# batch of sync ops take turns holding the GIL; on different CPUs each turn is a
# cross-CPU wake-up, and a thread preempted while holding the GIL stalls the loop.
# On the loop's CPU the turns are cheap switches (the figures: benchmarks/README.md).
# The loop itself is not pinned: it may move, and each batch of two or more asks goes
# where the loop is then (sched_getcpu, ~0.2 us). An op that burns more than
# HEAVY_OP of CPU (numpy, compression: work that may run beside the loop without
# the GIL) stops its actor's ops from following for HEAVY_FOR.
# Most sync ops handed to the op thread in one trip (the daemon's batches and the
# process child's).
SYNC_BATCH = 64

HOME_REFRESH = 1.0  # seconds between looks at the CPUs the daemon may use
HEAVY_OP = 0.002
HEAVY_FOR = 60.0
_follow: dict[str, Any] = {"getcpu": None, "home": None, "at": -math.inf}
_thread_cpus = threading.local()  # .cpus: the CPU set this op thread was last given


def _sched_getcpu() -> Callable[[], int] | None:
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    getcpu.restype = ctypes.c_int
    getcpu.argtypes = []
    return getcpu  # type: ignore[no-any-return]


def loop_cpu(now: float) -> tuple[int | None, frozenset[int] | None]:
    """Loop thread: (the CPU it runs on, the CPUs the daemon may use); Nones where
    that cannot be known."""
    if now - _follow["at"] >= HOME_REFRESH:
        if _follow["at"] == -math.inf:
            _follow["getcpu"] = _sched_getcpu()
        _follow["at"] = now
        _follow["home"] = frozenset(os.sched_getaffinity(0)) if _follow["getcpu"] else None
    getcpu = _follow["getcpu"]
    if getcpu is None:
        return None, None
    cpu = getcpu()
    return (cpu if cpu >= 0 else None), _follow["home"]


def _run_on(cpus: frozenset[int] | None) -> None:
    """Op thread: run on ``cpus`` from now on (no syscall when it already does)."""
    if cpus is not None and getattr(_thread_cpus, "cpus", None) != cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            return
        _thread_cpus.cpus = cpus


def _unfollow(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap thread-pool work that is not a batch: it runs on all the daemon's CPUs."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if getattr(_thread_cpus, "cpus", None) is not None:
            _run_on(_follow["home"])
        return func(*args, **kwargs)

    return run


def submit_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """Start blocking user code on the op thread pool (a plain future, not a Task)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return loop.run_in_executor(
        _EXECUTOR, functools.partial(ctx.run, _unfollow(func), *args, **kwargs)
    )


class SyncCallState(enum.Enum):
    WAITING = "waiting"  # in a batch, not started
    STARTED = "started"  # claimed by the op thread
    EXPIRED = "expired"  # its deadline passed before it started: it never runs
    HELD = "held"  # taken back before it started (a stop request): it goes back to the mailbox


class SyncCall:
    """One sync op in a batch, shared by the event loop and the op thread.

    The op thread claims a call before running it; the loop's deadline watch expires
    it if it has not started. ``lock`` (one per batch) makes the two exclusive, so a
    call either runs or is answered as expired -- never both.
    """

    __slots__ = (
        "args", "clock", "deadline", "ended_late", "future", "kwargs", "lock", "method", "state",
    )  # fmt: skip

    def __init__(
        self,
        method: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        future: asyncio.Future[Any],
        lock: threading.Lock,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.method, self.args, self.kwargs = method, args, kwargs
        # On the event loop's clock (its ``time``, which an op thread may read too).
        self.deadline = deadline
        self.clock = clock
        self.future = future
        self.lock = lock
        self.state = SyncCallState.WAITING
        # Set by the op thread as the op ends: it ended past its deadline. The loop may
        # see the result before it sees the deadline (a stalled loop runs both in one
        # turn); the answer is then still the timeout (batching.SyncBatch).
        self.ended_late = False

    def claim(self) -> bool:
        """Op thread: start this call unless it expired (or its deadline just passed)."""
        with self.lock:
            if self.state is not SyncCallState.WAITING:
                return False
            if self.clock() >= self.deadline:
                self.state = SyncCallState.EXPIRED
                return False
            self.state = SyncCallState.STARTED
            return True

    def expire(self) -> bool:
        """Event loop: the deadline passed; True when the call had not started."""
        with self.lock:
            if self.state is SyncCallState.WAITING:
                self.state = SyncCallState.EXPIRED
                return True
            return self.state is SyncCallState.EXPIRED

    def hold(self) -> bool:
        """Event loop: take the call back unless it started; True when it is not running."""
        with self.lock:
            if self.state is SyncCallState.WAITING:
                self.state = SyncCallState.HELD
            return self.state is not SyncCallState.STARTED


class LoopPost:
    """Calls from threads to run on one event loop, in as few wake-ups as possible.

    ``loop.call_soon_threadsafe`` writes to the loop's self-pipe on every call: a
    syscall that also hands the GIL over, per result. Here a thread appends to a
    queue and wakes the loop only when no drain is pending, so a thread finishing
    many trivial ops back to back wakes the loop once for all of them. Calls run on
    the loop in the order they were posted.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._pending = False  # a drain is scheduled and has not started

    def post(self, func: Callable[..., Any], *args: Any) -> None:
        """Any thread: run ``func(*args)`` on the loop soon."""
        self._calls.append((func, args))
        if not self._pending:
            self._pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _drain(self) -> None:
        # Cleared first: a call posted from here on schedules a drain of its own.
        self._pending = False
        calls = self._calls
        while calls:
            func, args = calls.popleft()
            try:
                func(*args)
            except Exception as exc:  # one bad call must not strand the ones behind it
                self._loop.call_exception_handler(
                    {"message": f"error in a call posted to the loop: {func!r}", "exception": exc}
                )


_POSTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPost] = weakref.WeakKeyDictionary()


def loop_post(loop: asyncio.AbstractEventLoop) -> LoopPost:
    """The :class:`LoopPost` of ``loop`` (one per loop, shared by all actors)."""
    post = _POSTS.get(loop)
    if post is None:
        post = _POSTS[loop] = LoopPost(loop)
    return post


def run_sync_batch(
    calls: list[SyncCall],
    on_progress: Callable[[], None] | None = None,
    on_heavy: Callable[[], None] | None = None,
) -> asyncio.Future[int]:
    """Run sync ops back to back in one trip to the op thread pool.

    One hop per batch instead of per op: under load a busy actor drains its mailbox
    without waiting for the event loop between ops. Each result goes back through
    :class:`LoopPost` as soon as its op ends (results that are ready before the loop
    next looks cross in one wake-up). Stops after the first failure (an exception
    that is not a pulsing error answering the caller); the returned future gets how
    many calls it went through, so the ones after a failure can go back to the
    mailbox unstarted. ``on_progress`` runs on the loop after each result and at
    the end. The batch runs on the loop's CPU when ``on_heavy`` is given, and
    ``on_heavy`` runs on the loop when an op turned out to be heavy (see HEAVY_OP).
    """
    loop = asyncio.get_running_loop()
    post = loop_post(loop)
    done: asyncio.Future[int] = loop.create_future()
    cpu, home = loop_cpu(loop.time())
    # A lone ask finds the loop about to go idle: on the loop's CPU its thread would
    # wait for the loop to get off it, while another CPU is free. Two or more mean
    # the actor is busy; so is the loop, and sharing its CPU pays.
    following = cpu is not None and on_heavy is not None and len(calls) > 1
    follow = frozenset((cpu,)) if following else None

    def report(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        _resolve(future, value, error)
        if on_progress is not None:
            on_progress()

    def job() -> None:
        count = len(calls)
        following = follow is not None
        _run_on(follow if following else home)
        try:
            for index, call in enumerate(calls):
                if not call.claim():
                    continue
                started = time.thread_time()
                error: BaseException | None = None
                value = None
                try:
                    value = call.method(*call.args, **call.kwargs)
                except BaseException as exc:
                    error = exc
                call.ended_late = call.clock() >= call.deadline
                if following and time.thread_time() - started >= HEAVY_OP:
                    following = False  # the rest of the batch runs anywhere
                    _run_on(home)
                    post.post(on_heavy)  # type: ignore[arg-type]  # before the answer
                post.post(report, call.future, value, error)
                if error is not None and is_failure(error):
                    count = index + 1
                    return
        finally:
            post.post(report, done, count, None)

    _EXECUTOR.submit(contextvars.copy_context().run, job)
    return done


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking user code on the op thread pool and wait for it."""
    return await submit_sync(func, *args, **kwargs)


async def iterate_in_thread(generator: Any, window: int = 1024) -> AsyncIterator[Any]:
    """Drive a sync generator on the op thread pool, handing each chunk to the loop.

    The generator runs in one executor job and its chunks cross over as they come
    (no round trip per chunk); at most ``window`` chunks wait on the loop side, so a
    fast producer cannot outrun the journal without bound.
    """
    loop = asyncio.get_running_loop()
    post = loop_post(loop)
    chunks: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    room = threading.Semaphore(window)
    stopped = threading.Event()

    @_unfollow
    def pump() -> None:
        try:
            for chunk in generator:
                room.acquire()
                if stopped.is_set():
                    return
                post.post(chunks.put_nowait, ("chunk", chunk))
            post.post(chunks.put_nowait, ("end", None))
        except BaseException as exc:
            post.post(chunks.put_nowait, ("error", exc))
        finally:
            generator.close()

    loop.run_in_executor(_EXECUTOR, contextvars.copy_context().run, pump)
    try:
        async for chunk in queued_chunks(chunks, room.release):
            yield chunk
    finally:
        stopped.set()
        room.release()  # a pump waiting for room wakes up and stops


async def queued_chunks(
    queue: asyncio.Queue[tuple[str, Any]], taken: Callable[[], Any] | None = None
) -> AsyncIterator[Any]:
    """A stream's chunks from a queue of ``("chunk", data)`` items that ends with
    ``("end", None)`` or ``("error", exception)`` (raised here). ``taken`` runs as each
    chunk leaves the queue."""
    while True:
        kind, value = await queue.get()
        if kind == "chunk":
            if taken is not None:
                taken()
            yield value
        elif kind == "error":
            raise value
        else:
            return
