"""``isolation = "inline"``: the instance lives in the daemon's process and event loop.

Async ops run in the actor's task on the loop; sync ops run on the op thread pool
(hosts/threads.py), in batches the cell drives (``runs_sync_batches``); a sync op
marked ``@nonblocking`` runs on the loop and is timed. A child process of
``isolation = "process"`` hosts its instance with this same class.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pulsing_daemon import log
from pulsing_daemon.exceptions import PulsingUnsupportedError
from pulsing_daemon.hosts.base import ActorHost, Exit
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.hosts.registry import register
from pulsing_daemon.hosts.threads import (
    SyncCall,
    iterate_in_thread,
    run_sync,
    run_sync_batch,
    submit_sync,
)
from pulsing_daemon.remote import NONBLOCKING_ATTR

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig, DaemonConfig

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


@register
class InlineHost(ActorHost):
    """The instance lives in the daemon's own process and event loop."""

    isolation = "inline"
    summary = "in the daemon"
    runs_sync_batches = True

    def __init__(self, cls: type, kwargs: dict[str, Any], name: str) -> None:
        self.cls = cls
        self.kwargs = kwargs
        self.name = name
        self.instance: Any = None
        self.exited: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._run_task: asyncio.Task[Any] | None = None

    @classmethod
    def for_actor(cls, config: ActorConfig, daemon: DaemonConfig | None = None) -> InlineHost:
        assert config.cls is not None
        return cls(config.cls, dict(config.args), config.name)

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
                self.exited.set_result(Exit("run", exc))
            return
        if not self.exited.done():
            self.exited.set_result(Exit("run"))

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

    def run_batch(self, calls: list[SyncCall], *hooks: Any) -> asyncio.Future[int]:
        return run_sync_batch(calls, *hooks)  # on the op thread pool, following the loop

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        info = resolve_op(self.cls, op, OpKind.STREAM)
        if info is None:
            raise PulsingUnsupportedError(op, message=f"{op} is not a streaming op")
        bind_arguments(info, args, kwargs)
        generator = getattr(self.instance, op)(*args, **kwargs)
        if info.is_async:
            return generator
        return iterate_in_thread(generator)

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
            self.exited.set_result(Exit("run"))


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
