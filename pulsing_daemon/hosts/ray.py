"""``isolation = "ray"``: the instance is a Ray actor on a cluster; the daemon supervises it.

Same interface as the other hosts (``hosts.base.ActorHost``), so supervision, deadlines,
streams, idempotency, logs and events do not know Ray exists. The worker side is
``hosts.ray_worker.PulsingRayWorker``; plain data crosses between the two (results as JSON
text, exceptions described as a process child describes them), so user errors arrive
with their category, code, details and ``recoverable``, and failures with the
worker's traceback.

The daemon is the only supervisor: Ray actors are created with ``max_restarts=0`` and
``max_task_retries=0``. An instance ends when

- its process dies, with a call in flight (that call fails with :class:`RayLost`, an
  ``InstanceLost``: a keyed ask's outcome is unknown) or idle (the ``watch`` call kept
  open for the instance's life fails) -- cause ``process``;
- its node is lost (the node is dead in the GCS, or its raylet refuses connections) --
  cause ``node_lost``;
- the daemon kills it at an op's deadline (``kill_on_timeout``) -- cause ``timeout``;
- ``run()`` returns or raises on the worker -- reported by ``watch``.

Each end is reported once, through ``exited`` or the failing call. Asks are refused
(unknown op, bad arguments) before anything is sent, from the class imported here.

Deadlines: the remaining budget travels with each call and the worker never starts a
call whose budget is spent (Ray's own cancel does not stop a queued sync call). At the
deadline an async op is cancelled on the worker; a sync op runs to its end (the actor
stays busy, as inline) unless ``kill_on_timeout`` kills the Ray actor.

The connection to Ray (``hosts.ray_runtime.RayRuntime``) is made when the first Ray
actor starts: Ray is never imported otherwise. With ``address = "local"`` the daemon
starts a private instance through ``hosts.ray_local`` and stops it at shutdown.

Registered as ``isolation = "ray"`` (hosts/registry.py), with its keys: the per-actor
``ray`` table and ``[daemon.ray]``. This module imports Ray only when a Ray actor starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pulsing_daemon import log
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
)
from pulsing_daemon.hosts.base import (
    ActorHost,
    Exit,
    HostFailure,
    HostKeys,
    InstanceLost,
    LateAnswers,
    NotStarted,
    call_deadline,
    ended_within,
)
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.hosts.process import ChildError, Unserializable, _exception
from pulsing_daemon.hosts.ray_runtime import (
    RAY_INSTALL_HINT,
    RAY_SPECS,
    _ray_options,
    _reserves_nothing,
    runtime,
)
from pulsing_daemon.hosts.registry import register
from pulsing_daemon.hosts.threads import loop_post
from pulsing_daemon.keyspec import (
    KeySpec,
)
from pulsing_daemon.storage import capture
from pulsing_daemon.wire import encode_utf8

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig, DaemonConfig

START_TIMEOUT = 60.0  # creating the Ray actor and running the constructor
STOP_GRACE = 5.0
CANCEL_GRACE = 1.0
STREAM_BACKPRESSURE = 4  # chunk batches produced ahead of the daemon's journal

# Asks sent together travel in one Ray call (a Ray call costs ~100 us of the daemon's
# CPU and as much of the worker's, whatever it carries: 3x the asks/s at 4 asks per
# call, 8x at 16, measured on Ray 2.60). A batch is answered all at once and, if the
# instance dies during it, all its asks may have run; so only *quick* asks share one:
# asks of an op whose last QUICK_STREAK runs each took under QUICK_RUN and ended (a
# batch then takes about BATCH * QUICK_RUN = 16 ms at most, microseconds for most
# ops). An ask of any other op (never run yet on this instance, slow lately, or one
# that crashed its instance) is a call of its own: no ask waits for it to be answered,
# and when it crashes the instance, the asks behind it were not started and go to
# the next one.
BATCH = 32
QUICK_RUN = 0.0005
QUICK_STREAK = 3


class RayDied(HostFailure):
    """The Ray actor of an instance ended while it was supposed to run; ``where`` says
    why ("process", "node_lost", "timeout", "start")."""

    type_name = "RayActorDied"

    def __init__(self, message: str, *, cause: str = "process") -> None:
        super().__init__(message)
        self.where = cause


class RayLost(RayDied, InstanceLost):
    """The Ray actor died while a call sent to it had not answered: its outcome is unknown."""


# --------------------------------------------------------------------------- the host


def _ray_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.RaySystemError)


def _unwrap(exc: BaseException) -> BaseException:
    """A Ray wrapper turned back into what it wraps (a RayTaskError's cause), or a
    system error naming it."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
        return ChildError(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    return exc


@register
class RayHost(ActorHost):
    """The instance is a Ray actor (``PulsingRayWorker``) on the cluster of [daemon.ray]."""

    isolation = "ray"
    summary = "a Ray actor on the cluster of [daemon.ray]; needs the [ray] extra"
    keys = HostKeys(
        actor=(
            KeySpec("ray", "table", {}, _ray_options,
                    "ray isolation: the Ray actor's resources and placement, a table of "
                    "the keys below (ray.num_cpus, ...)"),
        ),
        exclusive=("ray",),
        daemon=RAY_SPECS,
    )  # fmt: skip

    @classmethod
    def for_actor(cls, config: ActorConfig, daemon: DaemonConfig) -> RayHost:
        return cls(config, daemon)

    @classmethod
    def unavailable(cls) -> str | None:
        """Ray is looked up, not imported (slow to import, and only used when started)."""
        import importlib.util

        try:
            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"needs Ray, which is not installed: {RAY_INSTALL_HINT}"

    pipelines = True  # asks are sent ahead; the worker runs them in order (ray_worker)

    def __init__(self, config: ActorConfig, daemon: DaemonConfig) -> None:
        assert config.cls is not None
        self.config = config
        self.cls = config.cls
        self.name = config.name
        self.runtime = runtime(daemon)
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[Exit] = loop.create_future()
        self.handle: Any = None
        self.node: str | None = None
        self.actor_id: str | None = None
        self.pid: int | None = None
        self._next_id = 0
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self.late_answers = LateAnswers()  # see ActorHost.ended_late
        self._answers: dict[int, concurrent.futures.Future[Any]] = {}  # Ray's, by call id
        self._sync_calls: set[int] = set()
        # Batches invoked, not yet sent: (call id, op, request) each.
        self._outbox: list[list[tuple[int, str, bytes]]] = []
        self._quick: dict[str, int] = {}  # op -> its latest runs in a row under QUICK_RUN
        self._open = False  # the last batch of the outbox takes more asks (all quick)
        self._streams: dict[int, Any] = {}
        self._death: asyncio.Future[RayDied] | None = None
        self._kill_cause: str | None = None
        self._stopping = False
        self._watcher: asyncio.Task[Any] | None = None
        self._settling: set[asyncio.Future[Any]] = set()
        self._log = capture.current()

    # ------------------------------------------------------------------ lifecycle
    def _options(self) -> dict[str, Any]:
        """Ray's options for this actor's worker (restarts and retries always off)."""
        options: dict[str, Any] = {
            "max_restarts": 0,
            "max_task_retries": 0,
            # ``call`` runs on one thread, in the order sent (the worker's concurrency
            # groups serve the other methods meanwhile): the asks' order is Ray's.
            "max_concurrency": 1,
            "allow_out_of_order_execution": False,
        }
        ray_options = self.config.host_keys["ray"]
        for key in ("num_cpus", "num_gpus", "memory"):
            if ray_options.get(key) is not None:
                options[key] = ray_options[key]
        if ray_options.get("resources"):
            options["resources"] = dict(ray_options["resources"])
        if ray_options.get("runtime_env"):
            options["runtime_env"] = dict(ray_options["runtime_env"])
        return options

    def _create(self, options: dict[str, Any]) -> Any:
        name = f"pulsing.{self.name}.{uuid.uuid4().hex[:8]}"
        sys_path = [p for p in sys.path if p]
        return self.runtime.worker_class.options(name=name, **options).remote(self.name, sys_path)

    async def start(self) -> None:
        await self.runtime.connect()
        options = self._options()
        spare = self.runtime.take_spare(self.name, options)
        try:
            answer = await self._start_on(spare if spare is not None else self._create(options))
        except RayDied:
            if spare is None:
                raise
            answer = await self._start_on(self._create(options))  # the spare was lost
        self.node, self.actor_id, self.pid = (
            answer.get("node"), answer.get("actor_id"), answer.get("pid"),
        )  # fmt: skip
        if "error" in answer:
            raise _exception(answer["error"])
        self._watcher = asyncio.create_task(self._watch(), name=f"pulsing-ray-watch-{self.name}")
        if self.runtime.has_failed(self.name) and _reserves_nothing(options):
            self.runtime.make_spare(self.name, options, self._create)

    async def _start_on(self, handle: Any) -> dict[str, Any]:
        self.handle = handle
        started = handle.start.remote(self.config.class_path, dict(self.config.args))
        try:
            return await asyncio.wait_for(_await(started), START_TIMEOUT)  # type: ignore[no-any-return]
        except asyncio.TimeoutError:
            raise RayDied(
                f"the Ray actor did not start within {START_TIMEOUT:g}s "
                f"(not enough free resources for {self.config.host_keys['ray'] or 'it'}?)",
                cause="start",
            ) from None
        except _ray_errors() as exc:
            raise RayDied(f"the Ray actor died while starting: {_first_line(exc)}") from None

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": {"kind": "ray", "node": self.node, "actor_id": self.actor_id},
        }

    async def _watch(self) -> None:
        """Keep the watch call open for the instance's life: its output lines, how run()
        ended, or -- when the call fails -- the death of the instance."""
        import ray

        generator = self.handle.watch.options(num_returns="streaming").remote()
        try:
            async for ref in generator:
                item = await _await(ref)
                for stream, text in item.get("lines", ()):
                    self._output(stream, text)
                if "exited" in item:
                    payload = item["exited"]
                    if not self.exited.done():
                        cause = None if payload is None else _exception(payload)
                        self.exited.set_result(Exit("run", cause))
                    return
        except asyncio.CancelledError:
            ray.cancel(generator, force=False)
            raise
        except BaseException as exc:
            await self._lost(exc)

    def _output(self, stream: str, text: str) -> None:
        if self._log is not None:
            self._log.write(stream, text)
            log.event("output", actor=self.name, stream=stream, level=logging.DEBUG, msg=text)
        else:
            log.event("output", actor=self.name, stream=stream, level=logging.INFO, msg=text)

    async def _lost(self, exc: BaseException) -> RayDied:
        """The Ray actor is gone (seen by any call): find out why, once, and fail every
        call in flight with the same error."""
        if self._death is None:
            self._death = asyncio.get_running_loop().create_future()
            cause = self._kill_cause
            if cause is None:
                lost = await asyncio.to_thread(self.runtime.node_lost, self.node)
                cause = "node_lost" if lost else "process"
            text = {
                "node_lost": f"the node of the Ray actor was lost (node {self.node})",
                "timeout": "killed at an op's deadline (kill_on_timeout)",
                "stop": "stopped",
            }.get(cause, f"the Ray actor's process died (pid {self.pid})")
            died = RayDied(f"{text}: {_first_line(exc)}", cause=cause)
            self._death.set_result(died)
            self._kill_quietly()  # an unavailable actor might come back: make sure it is gone
            # Asks run in order: only the asks of the first call not answered (one ask,
            # or one batch: they share Ray's future) may have started; those sent after
            # it, or never sent, did not.
            lost_call = None
            for call_id, future in list(self._calls.items()):
                answer = self._answers.get(call_id)
                if future.done() or (
                    answer is not None and answer.done() and answer.exception() is None
                ):
                    continue  # answered; the answer is on its way to the loop
                if lost_call is None:
                    lost_call = answer
                if answer is not None and answer is lost_call:
                    future.set_exception(RayLost(str(died), cause=cause))
                else:
                    future.set_exception(NotStarted(expired=False))
            if not self.exited.done():
                self.exited.set_result(Exit(cause, None if self._stopping else died))
            if not self._stopping and cause != "timeout":
                log.event(
                    "ray_actor_died", actor=self.name, category="system",
                    level=logging.WARNING, cause=cause, node=self.node, msg=str(died),
                )  # fmt: skip
        return await self._death

    def _kill_quietly(self) -> None:
        if self.handle is None:
            return
        import ray

        try:
            ray.kill(self.handle, no_restart=True)
        except Exception:
            pass

    # ------------------------------------------------------------------ ops
    def _next(self) -> int:
        self._next_id += 1
        return self._next_id

    def _budget(self) -> float:
        deadline = call_deadline.get()
        if deadline is None:
            return 3600.0
        return deadline - asyncio.get_running_loop().time()

    def invoke(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        info = resolve_op(self.cls, op, OpKind.ASK)  # refused here, before Ray sees it
        if info is not None:
            bind_arguments(info, args, kwargs)
        if self._death is not None or self.handle is None:
            raise RayDied("the Ray actor is gone")
        call_id = self._next()
        request = {"id": call_id, "op": op, "args": args, "kwargs": kwargs}
        request["budget"] = self._budget()
        try:
            body = encode_utf8(request).encode()
        except ValueError as exc:  # NaN or infinity in the arguments
            raise PulsingBusinessError("bad_arguments", f"arguments of {op}: {exc}") from None
        if info is None or not info.is_async:
            self._sync_calls.add(call_id)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls[call_id] = future
        # Held until send_now (the cell is about to wait) or the end of this loop pass.
        outbox = self._outbox
        if not outbox:
            loop.call_soon(self.send_now)
        quick = self._quick.get(op, 0) >= QUICK_STREAK
        if quick and self._open and outbox and len(outbox[-1]) < BATCH:
            outbox[-1].append((call_id, op, body))
        else:
            outbox.append([(call_id, op, body)])
        self._open = quick
        return future

    def send_now(self) -> None:
        """Send the asks invoked so far: each batch as one Ray call."""
        batches, self._outbox = self._outbox, []
        self._open = False
        if not batches:
            return
        if self._death is not None or self.handle is None or self._stopping:
            self._unsent(batches, None)
            return
        post = loop_post(asyncio.get_running_loop())  # answers together wake the loop once
        for n, batch in enumerate(batches):
            if len(batch) == 1:
                body = batch[0][2]
            else:
                body = b"[" + b",".join(part for _, _, part in batch) + b"]"
            try:
                ref = self.handle.call.remote(body)
            except Exception as exc:  # the first fails the instance, the rest go back
                self._unsent(batches[n:], exc)
                return
            sent = [(call_id, op) for call_id, op, _ in batch]
            # The answers are handed to the loop straight from Ray's callback.
            answer = ref.future()
            for call_id, _ in sent:
                self._answers[call_id] = answer
            answer.add_done_callback(lambda done, sent=sent: post.post(self._answered, sent, done))

    def _unsent(
        self, batches: list[list[tuple[int, str, bytes]]], exc: BaseException | None
    ) -> None:
        for batch in batches:
            for call_id, _, _ in batch:
                future = self._calls.pop(call_id, None)
                self._forget(call_id)
                if future is not None and not future.done():
                    future.set_exception(exc or NotStarted(expired=False))
                exc = None

    def _forget(self, call_id: int) -> None:
        self._sync_calls.discard(call_id)
        self._answers.pop(call_id, None)

    def _answered(self, sent: list[tuple[int, str]], done: concurrent.futures.Future[Any]) -> None:
        exc = done.exception()
        if exc is not None and isinstance(exc, _ray_errors()):
            lost = asyncio.ensure_future(self._lost(exc))  # fails these calls too
            self._settling.add(lost)
            lost.add_done_callback(self._settling.discard)
            return
        answers: list[dict[str, Any]] = []
        if exc is None:
            answers = json.loads(done.result())
            if len(sent) == 1:  # an ask alone is answered alone, not in a list
                answers = [answers]  # type: ignore[list-item]
        for n, (call_id, op) in enumerate(sent):
            self._forget(call_id)
            future = self._calls.pop(call_id, None)
            answer = answers[n] if answers else {}
            if "t" in answer:  # counted even when answered late
                self._quick[op] = self._quick.get(op, 0) + 1 if answer["t"] < QUICK_RUN else 0
            if future is None or future.done():
                continue
            if exc is not None:
                future.set_exception(_unwrap(exc))
                continue
            if "value" in answer:
                future.set_result(answer["value"])
            elif "unserializable" in answer:
                future.set_result(Unserializable(answer["unserializable"]))
            elif "error" in answer:
                future.set_exception(_exception(answer["error"]))
            elif "expired" in answer:
                future.set_exception(NotStarted(expired=True))
            elif "not_started" in answer:
                future.set_exception(NotStarted(expired=False))
            else:  # cancelled at its deadline
                future.cancel()
            if "late" in answer:
                self.late_answers.mark(future)

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        info = resolve_op(self.cls, op, OpKind.STREAM)
        if info is not None:
            bind_arguments(info, args, kwargs)
        if self._death is not None or self.handle is None:
            raise RayDied("the Ray actor is gone")
        call_id = self._next()
        generator = self.handle.stream.options(
            num_returns="streaming", _generator_backpressure_num_objects=STREAM_BACKPRESSURE
        ).remote(call_id, op, args, kwargs)
        return self._chunks(call_id, generator)

    async def _chunks(self, call_id: int, generator: Any) -> AsyncIterator[Any]:
        import ray

        finished = False
        try:
            async for ref in generator:
                try:
                    item = await _await(ref)
                except _ray_errors() as exc:
                    raise await self._lost(exc) from None
                for text in item.get("chunks", ()):
                    yield json.loads(text)
                if "error" in item:
                    finished = True
                    raise _exception(item["error"])
                if item.get("end"):
                    finished = True
                    return
        except _ray_errors() as exc:
            raise await self._lost(exc) from None
        finally:
            if not finished and self._death is None and self.handle is not None:
                # Abandoned (a stop, the daemon shutting down): the producer stops too.
                try:
                    self.handle.cancel.remote(call_id)
                    ray.cancel(generator, force=False)
                except Exception:
                    pass

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        if running.done() or self._death is not None or self.handle is None:
            return
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is None:
            return
        if call_id not in self._answers:  # still in the outbox: it will never be sent
            batches = ([item for item in batch if item[0] != call_id] for batch in self._outbox)
            self._outbox = [batch for batch in batches if batch]
            del self._calls[call_id]
            self._forget(call_id)
            running.set_exception(NotStarted(expired=expired))
            return
        withdrawn = self.handle.cancel.remote(call_id, "expired" if expired else "not_started")
        # Taken back (it will never start): answered now, not when Ray's queue reaches
        # it behind the ask running; its own answer, later, finds the future done.
        post = loop_post(asyncio.get_running_loop())
        withdrawn.future().add_done_callback(
            lambda done: post.post(self._withdrawn, done, running, expired)
        )

    @staticmethod
    def _withdrawn(
        done: concurrent.futures.Future[Any], running: asyncio.Future[Any], expired: bool
    ) -> None:
        if running.done() or done.cancelled() or done.exception() is not None:
            return
        if done.result() is True:
            running.set_exception(NotStarted(expired=expired))

    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        if self.config.host_keys["kill_on_timeout"]:
            self._kill_cause = "timeout"
            self._kill_quietly()
            await asyncio.wait((self.exited,), timeout=STOP_GRACE)
            if running.done() and not running.cancelled():
                running.exception()  # RayLost; the caller already has its timeout
            return True
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is None:
            return running.done()
        if call_id in self._sync_calls:
            return False  # a sync op runs to its end: the actor stays busy until then
        try:
            self.handle.cancel.remote(call_id)
        except Exception:
            return True
        return await ended_within(running, CANCEL_GRACE)

    async def stop(self, graceful: bool = True) -> None:
        if graceful:  # an operator's stop, a reload, the daemon's shutdown: no spare
            self.runtime.drop_spare(self.name)
        else:  # after a failure (or a crashed start): keep a spare from now on
            self.runtime.note_failure(self.name)
        self._stopping = True
        if self._kill_cause is None:
            self._kill_cause = "stop"
        if self.handle is not None and self._death is None:
            if graceful:
                try:
                    await asyncio.wait_for(_await(self.handle.stop.remote()), STOP_GRACE)
                except BaseException:
                    pass
            self._kill_quietly()
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except BaseException:
                pass
        if not self.exited.done():
            self.exited.set_result(Exit("process"))
        unsent, self._outbox = self._outbox, []
        self._unsent(unsent, None)  # never sent: not started
        for future in self._calls.values():
            if not future.done():
                future.set_exception(RayLost("the Ray actor was stopped", cause="stop"))


async def _await(ref: Any) -> Any:
    """The value of an ObjectRef, awaited on this loop."""
    return await asyncio.wrap_future(ref.future())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
