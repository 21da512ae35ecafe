"""Where an actor instance lives.

Supervision, mailboxes, deadlines, streams and idempotency talk to an instance only
through :class:`ActorHost`. ``InlineHost`` keeps the instance in the daemon's process
(async ops on the event loop, sync ops on a thread so they never stall it); a child
process host implements the same few methods.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextvars
import enum
import functools
import inspect
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pulsing_daemon import argcheck, log
from pulsing_daemon.exceptions import PulsingBusinessError, PulsingUnsupportedError, is_failure
from pulsing_daemon.remote import NONBLOCKING_ATTR

# Methods that are lifecycle hooks, never ops.
HOOKS = frozenset({"on_start", "on_stop", "run", "receive"})

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


@dataclass(frozen=True)
class BoundCall:
    """An ask resolved to a method and bound to its arguments, not yet started."""

    method: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    is_async: bool

    def start(self) -> asyncio.Future[Any] | Coroutine[Any, Any, Any]:
        """A coroutine for an async op (to await in the caller's task), else a future
        of the op running on the thread pool."""
        if self.is_async:
            return self.method(*self.args, **self.kwargs)
        return submit_sync(self.method, *self.args, **self.kwargs)


class OpKind(str, enum.Enum):
    ASK = "ask"  # plain or async method
    STREAM = "stream"  # generator or async generator


@dataclass(frozen=True)
class OpInfo:
    name: str
    kind: OpKind
    is_async: bool
    signature: inspect.Signature | None
    plain: PlainParameters | None = None  # for the fast argument check
    on_loop: bool = False  # a sync op marked @nonblocking: run on the event loop
    # Checks argument values against the annotations (argcheck.py); None: nothing to check.
    check: Callable[[list[Any], dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class PlainParameters:
    """A signature without ``*args`` or positional-only parameters, for checking a call
    without ``Signature.bind`` (a few microseconds per ask)."""

    names: tuple[str, ...]  # positional-or-keyword ones first, then keyword-only ones
    positional: int  # how many of ``names`` may be given by position
    required: frozenset[str]
    extra: bool  # takes **kwargs

    @classmethod
    def of(cls, signature: inspect.Signature | None) -> PlainParameters | None:
        if signature is None:
            return None
        kinds: dict[Any, list[inspect.Parameter]] = collections.defaultdict(list)
        for param in signature.parameters.values():
            kinds[param.kind].append(param)
        if kinds[inspect.Parameter.POSITIONAL_ONLY] or kinds[inspect.Parameter.VAR_POSITIONAL]:
            return None
        named = (
            kinds[inspect.Parameter.POSITIONAL_OR_KEYWORD] + kinds[inspect.Parameter.KEYWORD_ONLY]
        )
        return cls(
            names=tuple(p.name for p in named),
            positional=len(kinds[inspect.Parameter.POSITIONAL_OR_KEYWORD]),
            required=frozenset(p.name for p in named if p.default is inspect.Parameter.empty),
            extra=bool(kinds[inspect.Parameter.VAR_KEYWORD]),
        )

    def binds(self, args: list[Any], kwargs: dict[str, Any]) -> bool:
        """True when the call certainly binds; False means "ask Signature.bind" (which
        also words the error)."""
        if len(args) > self.positional:
            return False
        given = self.names[: len(args)]
        names = self.names
        for key in kwargs:
            if key in given or not (self.extra or key in names):
                return False
        return all(name in kwargs or name in given for name in self.required)


@functools.lru_cache(maxsize=4096)
def describe_ops(cls: type) -> dict[str, OpInfo]:
    """The public ops of an actor class, by name (cached per class)."""
    ops: dict[str, OpInfo] = {}
    for name in dir(cls):
        if name.startswith("_") or name in HOOKS:
            continue
        attr = inspect.getattr_static(cls, name, None)
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not inspect.isfunction(attr):
            continue
        if inspect.isasyncgenfunction(attr) or inspect.isgeneratorfunction(attr):
            kind = OpKind.STREAM
        else:
            kind = OpKind.ASK
        is_async = inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr)
        try:
            signature = inspect.signature(getattr(cls, name))
            params = list(signature.parameters.values())
            if params and not isinstance(inspect.getattr_static(cls, name), staticmethod):
                signature = signature.replace(parameters=params[1:])  # drop self
        except (TypeError, ValueError):
            signature = None
        on_loop = kind is OpKind.ASK and getattr(attr, NONBLOCKING_ATTR, False) is True
        ops[name] = OpInfo(
            name, kind, is_async, signature, PlainParameters.of(signature),
            on_loop and not is_async, argcheck.compile_check(attr, signature, name),
        )  # fmt: skip
    return ops


def bind_arguments(info: OpInfo, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Check a call against the op's signature and annotations before it runs: a bad call
    is a business error (``bad_arguments``, ``invalid_argument``)."""
    if info.signature is None:
        return
    if info.plain is None or not info.plain.binds(args, kwargs):
        try:
            info.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PulsingBusinessError(
                "bad_arguments",
                f"bad arguments for {info.name}{info.signature}: {exc}",
                {"op": info.name, "signature": f"{info.name}{info.signature}"},
            ) from None
    if info.check is not None:
        info.check(args, kwargs)


def resolve_op(cls: type, op: str, want: OpKind) -> OpInfo | None:
    """The op to call, or None when the class routes it to ``receive``.

    Raises ``PulsingUnsupportedError`` for private names and unknown ops.
    """
    ops = describe_ops(cls)
    info = ops.get(op) if isinstance(op, str) and not op.startswith("_") else None
    if info is None:
        if (
            op not in HOOKS
            and not str(op).startswith("_")
            and callable(getattr(cls, "receive", None))
        ):
            return None
        raise PulsingUnsupportedError(op, message=_unknown_op_message(op, ops))
    if info.kind is not want:
        if info.kind is OpKind.STREAM:
            message = f"{op} is a streaming op; use `pulsing stream` (POST .../streams)"
        else:
            message = f"{op} is not a streaming op; use `pulsing ask`"
        raise PulsingUnsupportedError(op, message=message)
    return info


def _unknown_op_message(op: Any, ops: dict[str, OpInfo]) -> str:
    names = ", ".join(sorted(ops)) or "none"
    return f"unsupported operation {op!r} (ops: {names})"


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

    The op thread claims a call before running it; the loop's deadline timer expires
    it if it has not started. ``lock`` (one per batch) makes the two exclusive, so a
    call either runs or is answered as expired -- never both.
    """

    __slots__ = ("args", "deadline", "future", "kwargs", "lock", "method", "state")

    def __init__(
        self,
        method: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        future: asyncio.Future[Any],
        lock: threading.Lock,
    ) -> None:
        self.method, self.args, self.kwargs = method, args, kwargs
        self.deadline = deadline  # in time.monotonic() seconds, the event loop's clock
        self.future = future
        self.lock = lock
        self.state = SyncCallState.WAITING

    def claim(self) -> bool:
        """Op thread: start this call unless it expired (or its deadline just passed)."""
        with self.lock:
            if self.state is not SyncCallState.WAITING:
                return False
            if time.monotonic() >= self.deadline:
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

    def settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        _settle(future, value, error)
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
                if following and time.thread_time() - started >= HEAVY_OP:
                    following = False  # the rest of the batch runs anywhere
                    _run_on(home)
                    post.post(on_heavy)  # type: ignore[arg-type]  # before the answer
                post.post(settle, call.future, value, error)
                if error is not None and is_failure(error):
                    count = index + 1
                    return
        finally:
            post.post(settle, done, count, None)

    _EXECUTOR.submit(contextvars.copy_context().run, job)
    return done


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking user code on the op thread pool and wait for it."""
    return await submit_sync(func, *args, **kwargs)


# The deadline (event loop time) of the ask or stream a host's invoke/produce is
# starting; set by the cell around those calls, for hosts that send the remaining
# budget along with the call (a remote instance enforces it on its side too).
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "pulsing_call_deadline", default=None
)


class InstanceLost(Exception):
    """The instance was lost (its process or remote worker died) while an op handed to
    it had not answered: whether the op ran, partly or fully, is unknown.

    Hosts fail the result of such an op with this (or a subclass). A keyed ask then
    gets a non-recoverable "outcome unknown" system error and is never run again with
    its key (see pulsing_daemon.handover); other asks get the usual failure error.
    """


class NotStarted(Exception):
    """A host that runs asks sent ahead (``ActorHost.pipelines``) did not start this one:
    its deadline passed before its turn (``expired``), or an earlier ask failed the
    instance, or it was taken back. The cell answers it as never executed, or puts it
    back in the mailbox for the next instance."""

    def __init__(self, expired: bool) -> None:
        super().__init__("expired before its turn" if expired else "not started")
        self.expired = expired


class ActorHost(abc.ABC):
    """One actor instance, wherever it lives.

    The supervisor calls ``start`` once, then ``invoke``/``produce`` one message at a
    time, and ``stop`` once. ``exited`` resolves when the instance ends on its own
    (``run()`` returned or raised, the process died): ``None`` for a normal exit, the
    exception for a failure.

    At most once for keyed asks rests on one rule a host must keep. The cell calls
    ``invoke`` only after the ask's "handed over" record is durable, so from then on
    the op counts as possibly run. When the instance is lost before the op answered,
    fail its future (or stream) with :class:`InstanceLost`: the caller hears "outcome
    unknown". When the op certainly never reached the instance (it could not be sent),
    raise from ``invoke`` itself, or fail with any other exception: the ask is then
    not stored and its key stays free, so a retry runs it once. Asks still in the
    mailbox when an instance is lost were never handed over: the cell keeps them for
    the next instance.
    """

    exited: asyncio.Future[BaseException | None]
    # True: ``invoke`` may be called again before the previous ask answered; the host
    # runs the asks one at a time in the order of the ``invoke`` calls, starts none after
    # one that failed the instance (its future fails with :class:`NotStarted`), and
    # ``withdraw`` takes back one that has not started. When the instance is lost, only
    # the first unanswered ask may have run (InstanceLost); the ones behind it fail with
    # NotStarted. A remote instance hides its round trip this way.
    pipelines: bool = False

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        """Pipelining hosts: do not start this ask if it has not started; it answers
        ``NotStarted(expired)``."""
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Create the instance and run ``on_start``; raise on failure."""

    @abc.abstractmethod
    def invoke(
        self, op: str, args: list[Any], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any] | Coroutine[Any, Any, Any]:
        """Start an ask: a running future, or a coroutine for the caller to await in its
        own task (an async op in-process: no extra task, and a trivial op completes
        without yielding to the loop). Either holds the result or the op's exception.

        Resolution errors (unknown op, bad arguments) are raised here, synchronously.
        """

    @abc.abstractmethod
    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """Start a streaming op; iterate to get its chunks."""

    @abc.abstractmethod
    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        """The deadline of a running op passed: stop it if this host can.

        Returns True when the op is no longer running, False when it keeps running
        to completion (a sync op on a thread) and the actor stays busy until then.
        """

    @abc.abstractmethod
    async def stop(self, graceful: bool = True) -> None:
        """End the instance (``on_stop`` when graceful); never raises."""

    def info(self) -> dict[str, Any]:
        """Extra facts for status (a pid, ...)."""
        return {}


class InlineHost(ActorHost):
    """The instance lives in the daemon's own process and event loop."""

    def __init__(self, cls: type, kwargs: dict[str, Any], name: str) -> None:
        self.cls = cls
        self.kwargs = kwargs
        self.name = name
        self.instance: Any = None
        self.exited = asyncio.get_running_loop().create_future()
        self._run_task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self.instance = await run_sync(self.cls, **self.kwargs)
        await self._call_hook("on_start")
        run = getattr(self.instance, "run", None)
        if callable(run):
            self._run_task = asyncio.create_task(self._run(run), name=f"pulsing-run-{self.name}")

    async def _run(self, run: Callable[[], Any]) -> None:
        try:
            if inspect.iscoroutinefunction(run):
                await run()
            else:
                await run_sync(run)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a crash of run() is a failure of the instance
            if not self.exited.done():
                self.exited.set_result(exc)
            return
        if not self.exited.done():
            self.exited.set_result(None)

    async def _call_hook(self, name: str) -> None:
        hook = getattr(self.instance, name, None)
        if not callable(hook):
            return
        if inspect.iscoroutinefunction(hook):
            await hook()
        else:
            await run_sync(hook)

    def prepare(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> BoundCall:
        """Resolve and bind an ask once, without running it.

        Raises the resolution errors (unknown op, bad arguments). ``receive`` gets the
        raw message ``{"op", "args"}`` (plus ``"kwargs"`` when both kinds are given).
        """
        info = resolve_op(self.cls, op, OpKind.ASK)
        if info is None:
            method = self.instance.receive
            message: dict[str, Any] = {"op": op, "args": args if args else kwargs}
            if args and kwargs:
                message["kwargs"] = kwargs
            if getattr(method, NONBLOCKING_ATTR, False) is True:
                return BoundCall(_on_loop(method, self.name), [message], {}, True)
            return BoundCall(method, [message], {}, inspect.iscoroutinefunction(method))
        bind_arguments(info, args, kwargs)
        if info.on_loop:
            return BoundCall(_on_loop(getattr(self.instance, op), self.name), args, kwargs, True)
        return BoundCall(getattr(self.instance, op), args, kwargs, info.is_async)

    def invoke(
        self, op: str, args: list[Any], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any] | Coroutine[Any, Any, Any]:
        return self.prepare(op, args, kwargs).start()

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        info = resolve_op(self.cls, op, OpKind.STREAM)
        if info is None:
            raise PulsingUnsupportedError(op, message=f"{op} is not a streaming op")
        bind_arguments(info, args, kwargs)
        generator = getattr(self.instance, op)(*args, **kwargs)
        if info.is_async:
            return generator
        return _iterate_in_thread(generator)

    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        # Async ops run in the actor's task under their deadline (no future to cancel);
        # a sync op on a thread cannot be interrupted: it runs to completion.
        return running.done()

    async def stop(self, graceful: bool = True) -> None:
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
            try:
                await self._run_task
            except BaseException:
                pass
        if graceful and self.instance is not None:
            try:
                await self._call_hook("on_stop")
            except Exception:
                pass
        if not self.exited.done():
            self.exited.set_result(None)


# A @nonblocking op that holds the event loop this long gets a warning in the log,
# at most once per BLOCKED_WARN_EVERY seconds per actor and op.
BLOCKED_WARNING = 0.020
BLOCKED_WARN_EVERY = 60.0
_blocked_warned: dict[tuple[str, str], float] = {}


def _on_loop(method: Callable[..., Any], actor: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """A @nonblocking sync op as a coroutine function: it runs in the actor's task,
    like an async op, and is timed so that one that blocks after all is reported."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            held = time.perf_counter() - started
            if held >= BLOCKED_WARNING:
                _warn_blocked(actor, method.__name__, held)

    return call


def _warn_blocked(actor: str, op: str, held: float) -> None:
    now = time.monotonic()
    last = _blocked_warned.get((actor, op))
    if last is not None and now - last < BLOCKED_WARN_EVERY:
        return
    _blocked_warned[(actor, op)] = now
    log.event(
        "blocked_loop",
        actor=actor,
        level=logging.WARNING,
        op=op,
        ms=round(held * 1000, 1),
        msg=(
            f"{op} is marked @nonblocking but held the event loop for "
            f"{held * 1000:.0f} ms; every actor waited (remove @nonblocking to run it on a thread)"
        ),
    )


async def _iterate_in_thread(generator: Any, window: int = 1024) -> AsyncIterator[Any]:
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
