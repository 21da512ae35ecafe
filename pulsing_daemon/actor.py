"""One supervised actor: its mailbox, its state machine, and the loop that serves it.

The cell outlives instances. A lifecycle task starts an instance through a host
(``pulsing_daemon.host``), serves the mailbox one message at a time, and when the
instance ends asks the restart tracker what to do. The mailbox survives restarts:
asks queued behind a failure wait for the next instance, each bound by its own
deadline. Every envelope is answered exactly once, by ``_answer``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from pulsing_daemon import log, wire
from pulsing_daemon.config import ActorConfig
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
    is_failure,
)
from pulsing_daemon.handover import Handover, hand_over, lost_error
from pulsing_daemon.host import (
    HEAVY_FOR,
    ActorHost,
    NotStarted,
    SyncCall,
    SyncCallState,
    call_deadline,
    run_sync_batch,
)
from pulsing_daemon.policy import ExitKind, RestartTracker
from pulsing_daemon.states import ACCEPTING, ActorState, check_transition
from pulsing_daemon.storage import logs

_encode_result = wire.encode

OUTCOMES = ("ok", "business", "system", "timeout", "unsupported", "runtime")


class EnvelopeState(enum.Enum):
    QUEUED = "queued"
    BATCHED = "batched"  # taken into a batch of sync ops, not started yet
    RUNNING = "running"
    DONE = "done"


# What ``_start`` returns when the op did not start.
_NOT_STARTED: Any = object()

# Most sync ops handed to the op thread in one trip (see host.run_sync_batch).
SYNC_BATCH = 64
# Most asks sent ahead to a host that runs them in order (a remote one: host.pipelines),
# and how long asks sent ahead may take to confirm they were taken back unstarted.
PIPELINE = 32
TAKE_BACK_WAIT = 5.0


class StreamSink(Protocol):
    """Where a streaming op's chunks go (the journal)."""

    async def append(self, chunk: Any) -> None: ...


@dataclass(eq=False, slots=True)
class Envelope:
    """One message in a mailbox and the future its sender waits on."""

    op: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float
    deadline: float  # event-loop time
    future: asyncio.Future[Any]
    sink: StreamSink | None = None  # set for streaming ops
    # Called with (value, error) when the op really finished after its caller was
    # already answered (a sync op past its deadline); idempotency records it.
    on_late: Callable[[Any, PulsingError | None], None] | None = None
    state: EnvelopeState = EnvelopeState.QUEUED
    timer: asyncio.TimerHandle | None = None
    result_json: str | None = None  # the successful result, encoded once
    call: SyncCall | None = None  # while in a batch of sync ops
    executed: bool = False  # the op was started
    handover: Handover | None = None  # a keyed ask: its durable "handed over" record
    handed: float = 0.0  # loop time that record was written (0: not; see handover.py)
    interrupted: bool = False  # past its deadline, the op was stopped (not left running)


@dataclass
class _Ended:
    """How an instance's serving ended."""

    stopped: bool = False  # a stop was requested
    kind: ExitKind | None = None
    cause: BaseException | None = None
    where: str = "op"  # op | start | run | process
    envelope: Envelope | None = None  # the message that hit the failure, still unanswered


HostFactory = Callable[[ActorConfig], ActorHost]


class ActorCell:
    """A named actor: config, mailbox, state, counters; survives its instances."""

    # One cell per actor, 10,000s of them: the attributes set in __init__ live in slots
    # (an instance dict of this many keys is not key-shared: ~1.6 KB each). "__dict__"
    # keeps any other attribute working, at the old price.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_batch",
        "_batch_waiter",
        "_changed",
        "_drain_on_stop",
        "_heavy_until",
        "_holding",
        "_idle",
        "_stop_reason",
        "_stop_requested",
        "_task",
        "_wakeup",
        "accepting",
        "backoff_until",
        "clock",
        "config",
        "counts",
        "default_timeout",
        "emit",
        "host",
        "host_factory",
        "in_flight",
        "last_error",
        "last_failure",
        "mailbox",
        "metrics",
        "name",
        "operator_restarts",
        "queued",
        "running_since",
        "start_gate",
        "state",
        "total_restarts",
        "tracker",
    )

    def __init__(
        self,
        config: ActorConfig,
        host_factory: HostFactory,
        default_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = config.name
        self.config = config
        self.host_factory = host_factory
        self.default_timeout = config.timeout or default_timeout
        self.clock = clock
        self.state = ActorState.STOPPED
        self.tracker = RestartTracker(
            config.restart_policy,
            config.max_restarts,
            config.min_backoff,
            config.max_backoff,
            restart_window=config.restart_window,
            reset_after=config.reset_after,
            clock=clock,
        )
        self.mailbox: deque[Envelope] = deque()
        self.queued = 0  # live (not expired) envelopes in the mailbox
        self.in_flight = 0
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.total_restarts = 0
        self.operator_restarts = 0
        self.last_error: dict[str, Any] | None = None
        self.last_failure: dict[str, Any] | None = None
        self.running_since: float | None = None
        self.backoff_until: float | None = None
        self.host: ActorHost | None = None
        self.accepting = True  # False while the daemon shuts down
        self.retired: str | None = None  # why, once a reload removed the actor
        self._wakeup = asyncio.Event()
        self._stop_requested = False
        self._stop_reason = "stopped by operator"
        self._drain_on_stop = True
        self._holding = False  # an operator restart in progress: keep the mailbox
        self._task: asyncio.Task[None] | None = None
        # Made only when someone waits (an asyncio.Event with its waiter deque is
        # ~0.8 KB; most cells never have a waiter): _wait_idle's, set when the
        # mailbox empties; settle's, set and dropped on every transition.
        self._idle: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self.metrics: Any = None  # pulsing_daemon.metrics.Metrics, when attached
        # EventLog.emit(kind, actor, **fields), set by the supervisor (events.py).
        self.emit: Callable[..., None] = _no_event
        # Where this actor's output goes (storage/logs.py), set by the supervisor.
        self.log_sink: logs.ActorLog | None = None
        self._batch: list[Envelope] = []  # the sync batch being run, if any
        self._batch_waiter: asyncio.Future[None] | None = None  # see _await_batched
        self._heavy_until = 0.0  # loop time until which sync ops do not follow the loop
        # Shared by the supervisor's cells: bounds how many instances start at once,
        # so a daemon starting thousands of actors still answers requests meanwhile.
        self.start_gate: asyncio.Semaphore | None = None

    # ----------------------------------------------------------------- state machine
    def _set_state(self, new: ActorState, **fields: Any) -> None:
        check_transition(self.state, new)
        old, self.state = self.state, new
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        level = logging.WARNING if new in (ActorState.BACKOFF, ActorState.FAILED) else logging.INFO
        log.event(
            "state",
            actor=self.name,
            level=level,
            **{"from": old.value, "to": new.value},
            **fields,
        )
        self.emit("state", self.name, **{"from": old.value, "to": new.value}, **fields)

    def stamp(self, error: PulsingError) -> PulsingError:
        """Put this actor's name, state and restart count on an error."""
        return error.with_actor(
            self.name, self.state.value, self.tracker.count, self.config.max_restarts
        )

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        """Start the lifecycle (from stopped or failed)."""
        if self._task is not None and not self._task.done():
            return
        self._stop_requested = False
        self.accepting = True
        self.backoff_until = None
        self._set_state(ActorState.STARTING)
        self._task = asyncio.create_task(self._lifecycle(), name=f"pulsing-actor-{self.name}")

    async def settle(self, timeout: float) -> None:
        """Wait (bounded) until a just started instance is past ``starting``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._task is not None and not self._task.done():
            if self.state not in (ActorState.STOPPED, ActorState.STARTING):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(asyncio.shield(self._changed.wait()), remaining)
            except asyncio.TimeoutError:
                return

    async def stop(self, *, reason: str = "stopped by operator", drain: bool = True) -> None:
        """Stop after the current message; queued asks get a runtime error (unless held)."""
        task = self._task
        if task is None or task.done():
            if self.state is ActorState.FAILED:
                self._set_state(ActorState.STOPPED, reason=reason)
            if drain:
                self._drain(reason)
            return
        self._stop_requested = True
        # Batched members not started never will be. Last first, so the op thread
        # (which goes in order) can never skip a held member and start a later one.
        for envelope in reversed(self._batch[1:]):
            if envelope.call is not None:
                envelope.call.hold()
        self._stop_reason = reason
        self._drain_on_stop = drain
        self._wakeup.set()
        await asyncio.shield(task)

    async def restart(self) -> None:
        """Operator restart: count and backoff start over; queued asks are kept."""
        self._holding = True
        try:
            await self.stop(reason="restart by operator", drain=False)
        finally:
            self._holding = False
        self.tracker.reset()
        self.operator_restarts += 1
        if self.metrics is not None:
            self.metrics.restarted(self.name, "operator")
        log.event("restart", actor=self.name, cause="operator")
        self.start()

    def reconfigure(self, config: ActorConfig, default_timeout: float) -> None:
        """Reload: take new settings live. The instance, the mailbox and the restart
        count stay; a changed host key takes effect at the next instance."""
        self.config = config
        self.default_timeout = config.timeout or default_timeout
        self.tracker.reconfigure(
            config.restart_policy,
            config.max_restarts,
            config.min_backoff,
            config.max_backoff,
            restart_window=config.restart_window,
            reset_after=config.reset_after,
        )

    async def retire(self, reason: str) -> None:
        """Reload removed the actor: the current message finishes, queued asks and any
        ask still arriving get ``reason`` (a runtime error), then the instance stops."""
        self.retired = reason
        self.accepting = False
        await self.stop(reason=reason)

    async def shutdown(self, grace: float) -> None:
        """Daemon shutdown: take no new asks, let accepted ones finish within ``grace``."""
        self.accepting = False
        if self.queued or self.in_flight:
            try:
                await asyncio.wait_for(self._wait_idle(), grace)
            except asyncio.TimeoutError:
                pass
        task = self._task
        stopping = asyncio.ensure_future(self.stop(reason="daemon shutting down"))
        try:
            await asyncio.wait_for(asyncio.shield(stopping), max(0.1, grace / 4))
        except asyncio.TimeoutError:
            # An op outlived the grace period: cancel the lifecycle (answers the ask).
            if task is not None:
                task.cancel()
            await asyncio.gather(stopping, return_exceptions=True)

    async def _wait_idle(self) -> None:
        while self.queued or self.in_flight:
            if self._idle is None or self._idle.is_set():
                self._idle = asyncio.Event()
            await self._idle.wait()

    # ----------------------------------------------------------------- mailbox
    def submit(self, envelope: Envelope) -> None:
        """Queue a message, or raise the error that answers it at once."""
        if not self.accepting:
            if self.retired is not None:
                raise self.stamp(PulsingRuntimeError(self.retired, status=404))
            raise self.stamp(
                PulsingRuntimeError("daemon is shutting down", recoverable=True, status=503)
            )
        if self.state not in ACCEPTING and not self._holding:
            raise self.stamp(self._not_serving_error())
        if self.config.during_restart == "fail_fast" and self.state in (
            ActorState.BACKOFF,
            ActorState.STARTING,
        ):
            retry_after = round(max(0.05, self.backoff_remaining() or 0.0), 3)
            raise self.stamp(
                PulsingSystemError(
                    f"actor {self.name} is restarting (during_restart = fail_fast)",
                    recoverable=True,
                    retry_after=retry_after,
                    status=503,
                )
            )
        if self.queued >= self.config.mailbox_size:
            raise self.stamp(
                PulsingRuntimeError(
                    f"mailbox of {self.name} is full ({self.config.mailbox_size} messages)",
                    recoverable=True,
                    status=503,
                    retry_after=1.0,
                )
            )
        loop = asyncio.get_running_loop()
        if envelope.deadline <= loop.time():
            raise self.stamp(self._expired_error(envelope))
        if envelope.sink is None:  # streams are not bound by an ask deadline
            envelope.timer = loop.call_at(envelope.deadline, self._expire, envelope)
        self.mailbox.append(envelope)
        self.queued += 1
        self._wakeup.set()

    def _not_serving_error(self) -> PulsingRuntimeError:
        if self.state is ActorState.FAILED:
            why = (self.last_failure or {}).get("message", "")
            hint = f"run `pulsing restart {self.name}`"
            message = f"actor {self.name} is failed" + (f" ({why})" if why else "")
        else:
            hint = f"run `pulsing start {self.name}`"
            message = f"actor {self.name} is stopped"
        return PulsingRuntimeError(message, recoverable=False, status=409, hint=hint)

    def _expired_error(self, envelope: Envelope) -> PulsingTimeoutError:
        return PulsingTimeoutError(
            envelope.op,
            round(envelope.timeout * 1000, 3),
            message=(
                f"{envelope.op} timed out after {envelope.timeout:g}s while queued "
                f"in the mailbox of {self.name}; it was never executed"
            ),
            executed=False,
        )

    def _expire(self, envelope: Envelope) -> None:
        """Deadline timer of a queued message: answer it; it will never run."""
        if envelope.state is EnvelopeState.QUEUED or (
            envelope.state is EnvelopeState.BATCHED
            and envelope.call is not None
            and envelope.call.expire()
        ):
            self.queued -= 1
            self._answer(envelope, error=self._expired_error(envelope))
            self._check_idle()

    def _pop(self) -> Envelope | None:
        while self.mailbox:
            envelope = self.mailbox.popleft()
            if envelope.state is EnvelopeState.QUEUED:
                self.queued -= 1
                if envelope.timer is not None:
                    envelope.timer.cancel()
                return envelope
        return None

    def _drain(self, reason: str) -> None:
        """Answer every queued message: the actor will not serve them."""
        while (envelope := self._pop()) is not None:
            if self.state in (ActorState.STOPPED, ActorState.FAILED) and not self.accepting:
                error: PulsingError = PulsingRuntimeError(
                    f"{reason}; {envelope.op} was not executed",
                    recoverable=self.retired is None,
                    status=503 if self.retired is None else 404,
                )
            elif self.state in (ActorState.STOPPED, ActorState.FAILED):
                error = self._not_serving_error()
                error.message += f"; {envelope.op} was not executed"
            else:
                error = PulsingRuntimeError(f"{reason}; {envelope.op} was not executed", status=503)
            self._answer(envelope, error=error, remember=False)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle is not None and not self.queued and not self.in_flight:
            self._idle.set()

    def _answer(
        self,
        envelope: Envelope,
        value: Any = None,
        error: PulsingError | None = None,
        *,
        remember: bool = True,
    ) -> None:
        """Resolve an envelope once; count the outcome; remember the last error.

        ``remember=False`` for refusals (a drained mailbox): they must not hide the
        failure that caused them from ``last_error``.
        """
        if envelope.state is EnvelopeState.DONE and envelope.future.done():
            return
        envelope.state = EnvelopeState.DONE
        if envelope.timer is not None:
            envelope.timer.cancel()
        if envelope.future.done():
            return
        if error is None and envelope.sink is None:
            # Encode here, once: a result JSON cannot carry is the op's system error
            # (counted and remembered like any other), and HTTP sends the text as is.
            try:
                envelope.result_json = _encode_result(value)
            except (TypeError, ValueError) as exc:
                error = PulsingSystemError(
                    f"the result of {envelope.op} is not JSON-serializable: {exc}",
                    recoverable=False,
                )
        outcome = "ok" if error is None else error.category
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.metrics is not None:
            op = envelope.op if outcome != "unsupported" else "_unsupported"
            elapsed = asyncio.get_running_loop().time() - (envelope.deadline - envelope.timeout)
            self.metrics.observe(self.name, op, outcome, elapsed)
        if error is None:
            envelope.future.set_result(value)
            return
        self.stamp(error)
        if remember:
            self._remember(envelope, error)
        envelope.future.set_exception(error)
        envelope.future.exception()  # retrieved: a caller that left must not warn

    def _remember(self, envelope: Envelope, error: PulsingError) -> None:
        self.last_error = {
            "category": error.category,
            "type": error.type,
            "message": error.message,
            "op": envelope.op,
            "at": _utc_now(),
        }
        log.event(
            "error",
            actor=self.name,
            category=error.category,
            level=logging.INFO if error.category == "business" else logging.WARNING,
            op=envelope.op,
            type=error.type,
            msg=error.message,
        )

    # ----------------------------------------------------------------- lifecycle
    async def _lifecycle(self) -> None:
        logs.enter(self.log_sink)  # what the instance writes, from here on, is its own
        try:
            while True:
                ended = await self._run_instance()
                if ended.stopped:
                    self._set_state(ActorState.STOPPED, reason=self._stop_reason)
                    if self._drain_on_stop:
                        self._drain(self._stop_reason)
                    return
                if not await self._after_exit(ended):
                    return
                self.backoff_until = None
                self._set_state(ActorState.STARTING)
        except asyncio.CancelledError:
            # Cancelled at daemon shutdown past the grace period.
            if self.host is not None:
                await self.host.stop(graceful=False)
                self.host = None
            if self.state is not ActorState.STOPPED:
                self.state = ActorState.STOPPED
            self.accepting = False
            self._drain("daemon shutting down")
            raise

    async def _run_instance(self) -> _Ended:
        host = self.host_factory(self.config)
        try:
            if self.start_gate is None:
                await host.start()
            else:
                async with self.start_gate:
                    await host.start()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await host.stop(graceful=False)
            return _Ended(kind=ExitKind.FAILURE, cause=exc, where="start")
        self.host = host
        self.running_since = self.clock()
        self.tracker.mark_running()
        self._set_state(ActorState.RUNNING, **{k: v for k, v in host.info().items()})
        try:
            ended = await self._serve(host)
        finally:
            self.running_since = None
        await host.stop(graceful=ended.stopped)
        self.host = None
        return ended

    async def _after_exit(self, ended: _Ended) -> bool:
        """Apply the restart policy to an ended instance. True = start again."""
        kind = ended.kind or ExitKind.FAILURE
        decision = self.tracker.on_exit(kind)
        if kind is ExitKind.FAILURE:
            self._record_failure(ended)
        if decision.restart:
            self.total_restarts += 1
            if self.metrics is not None:
                cause = ended.where if kind is ExitKind.FAILURE else "exit"
                self.metrics.restarted(self.name, cause)
            self.backoff_until = self.clock() + decision.delay
            self.emit(
                "restart", self.name, restarts=self.tracker.count,
                max_restarts=self.config.max_restarts, delay=round(decision.delay, 3),
                cause=ended.where if kind is ExitKind.FAILURE else "exit",
            )  # fmt: skip
            self._set_state(
                ActorState.BACKOFF,
                delay=f"{decision.delay:.3f}",
                restarts=f"{self.tracker.count}/{self.config.max_restarts}",
                cause=ended.where if kind is ExitKind.FAILURE else "exit",
            )
            self._answer_failed(ended, restart=True)
            if not await self._sleep_backoff(decision.delay):
                self._set_state(ActorState.STOPPED, reason=self._stop_reason)
                if self._drain_on_stop:
                    self._drain(self._stop_reason)
                return False
            return True
        gave_up = kind is ExitKind.FAILURE or decision.exhausted
        final = ActorState.FAILED if gave_up else ActorState.STOPPED
        self._set_state(final, reason=decision.reason)
        if gave_up:
            self.emit("failed", self.name, reason=decision.reason, restarts=self.tracker.count)
        self._answer_failed(ended, restart=False)
        self._drain(decision.reason)
        return False

    async def _sleep_backoff(self, delay: float) -> bool:
        """Wait out the backoff; False when a stop was requested meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self._stop_requested:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return True
        return False

    def _record_failure(self, ended: _Ended) -> None:
        cause = ended.cause
        self.last_failure = {
            "category": "system",
            "type": _type_name(cause) if cause is not None else "Exit",
            "message": str(cause) if cause is not None else "run() exited",
            "where": ended.where,
            "at": _utc_now(),
            "traceback": logs.describe_failure(cause),
        }
        if ended.envelope is None:  # no ask carries it: the failure is the last error
            self.last_error = {k: v for k, v in self.last_failure.items() if k != "traceback"}
        log.event(
            "failure",
            actor=self.name,
            category="system",
            level=logging.WARNING,
            where=ended.where,
            type=self.last_failure["type"],
            msg=self.last_failure["message"],
        )
        self.emit("failure", self.name, **self.last_failure)

    def _answer_failed(self, ended: _Ended, restart: bool) -> None:
        """Answer the ask that hit the failure, once the next state is known."""
        if ended.envelope is not None:
            self._answer(ended.envelope, error=self._failure_error(ended, restart))

    def _failure_error(self, ended: _Ended, restart: bool) -> PulsingSystemError:
        cause = ended.cause
        lost = lost_error(ended.envelope, cause)  # a keyed ask's instance died under it
        if lost is not None:
            return lost
        if isinstance(cause, PulsingSystemError):
            message = cause.message
        else:
            message = (
                f"{ended.envelope.op if ended.envelope else 'actor'} crashed: {_describe(cause)}"
            )
        error = PulsingSystemError(message, recoverable=restart)
        if cause is not None and not isinstance(cause, PulsingError):
            error.type = _type_name(cause)
        return error

    # ----------------------------------------------------------------- serving
    async def _serve(self, host: ActorHost) -> _Ended:
        host.exited.add_done_callback(lambda _: self._wakeup.set())
        while True:
            if self._stop_requested:
                return _Ended(stopped=True)
            if host.exited.done():
                cause = host.exited.result()
                kind = ExitKind.EXIT if cause is None else ExitKind.FAILURE
                return _Ended(kind=kind, cause=cause, where=getattr(host, "exit_where", "run"))
            envelope = self._pop()
            if envelope is None:
                self._check_idle()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if envelope.sink is not None:
                ended = await self._produce(host, envelope)
            elif host.pipelines:  # remote: asks are sent ahead, run in order there
                ended = await self._execute_pipelined(host, envelope)
            elif hasattr(host, "prepare"):  # in-process: sync asks run in batches
                ended = await self._execute_batch(host, envelope)
            else:
                ended = await self._execute(host, envelope)
            if ended is not None:
                return ended

    def _start(self, envelope: Envelope, start: Callable[[], Any]) -> tuple[Any, _Ended | None]:
        """Call a host's ``invoke``/``produce``/``prepare`` for an envelope.

        A bad call (unknown op, bad arguments) answers the caller; an op that cannot
        even start (a broken instance, its process gone) is a failure of the instance.
        Returns (what ``start`` returned, None) or (_NOT_STARTED, the end if any).
        """
        token = call_deadline.set(envelope.deadline)
        try:
            return start(), None
        except (PulsingBusinessError, PulsingUnsupportedError) as exc:
            self._answer(envelope, error=exc)
            return _NOT_STARTED, None
        except Exception as exc:
            return _NOT_STARTED, _Ended(
                kind=ExitKind.FAILURE, cause=exc, envelope=envelope, where=_where(exc)
            )
        finally:
            call_deadline.reset(token)

    async def _execute(
        self,
        host: ActorHost,
        envelope: Envelope,
        start: Callable[[], Any] | None = None,
    ) -> _Ended | None:
        """Run one ask: ``start`` (default: ``host.invoke``) gives a coroutine to await
        here or a future of the op running elsewhere."""
        loop = asyncio.get_running_loop()
        remaining = envelope.deadline - loop.time()
        if remaining <= 0:
            self._answer(envelope, error=self._expired_error(envelope))
            return None
        envelope.state = EnvelopeState.RUNNING
        if envelope.handover is not None and not await hand_over(self, envelope):
            return None
        remaining = envelope.deadline - loop.time()
        running, ended = self._start(
            envelope, start or (lambda: host.invoke(envelope.op, envelope.args, envelope.kwargs))
        )
        if running is _NOT_STARTED:
            return ended
        envelope.executed = True
        self.in_flight += 1
        if asyncio.iscoroutine(running):
            try:
                return await self._execute_here(envelope, running, remaining)
            finally:
                self.in_flight -= 1
        try:
            done, _ = await asyncio.wait((running,), timeout=remaining)
            if not done:
                return await self._past_deadline(host, envelope, running)
            value, error, failure = _classify(running)
            if failure is not None:
                return _Ended(
                    kind=ExitKind.FAILURE, cause=failure, envelope=envelope, where=_where(failure)
                )
            self._answer(envelope, value, error)
            return None
        except asyncio.CancelledError:
            if not running.done():
                await host.interrupt(running)
            self._answer(envelope, error=_shut_down_while_running(envelope))
            raise
        finally:
            self.in_flight -= 1

    async def _execute_pipelined(self, host: ActorHost, first: Envelope) -> _Ended | None:
        """Run an ask on a host that runs asks sent ahead in order (``host.pipelines``),
        sending up to PIPELINE asks queued right behind it meanwhile, so the round trip
        to a remote instance is paid once for all of them. What a single ask promises
        holds for each: mailbox order, one op at a time (the host runs them in order),
        its own deadline (taken back unstarted when it passes before its turn), and
        after a failure the asks behind it go back to the mailbox for the next instance.
        A keyed ask or a stream is never sent ahead: it waits for the window to empty.
        """
        loop = asyncio.get_running_loop()
        if first.deadline <= loop.time():
            self._answer(first, error=self._expired_error(first))
            return None
        first.state = EnvelopeState.RUNNING
        if first.handover is not None and not await hand_over(self, first):
            return None
        running, ended = self._start(first, lambda: host.invoke(first.op, first.args, first.kwargs))
        if running is _NOT_STARTED:
            return ended
        window: collections.deque[tuple[Envelope, asyncio.Future[Any]]] = collections.deque()
        window.append((first, running))
        timers: list[asyncio.TimerHandle] = []
        self.in_flight += 1
        try:
            while window:
                if not self._stop_requested:
                    self._send_ahead(host, window, timers)
                envelope, running = window[0]
                if not running.done():
                    remaining = envelope.deadline - loop.time()
                    await asyncio.wait((running,), timeout=max(0.0, remaining))
                if not running.done():  # the op outlived its deadline
                    envelope.executed = True
                    ended = await self._past_deadline(host, envelope, running)
                    window.popleft()
                    self.in_flight -= 1
                    if ended is not None:
                        await self._take_back(host, window)
                        return ended
                    continue
                window.popleft()
                self.in_flight -= 1
                exc = None if running.cancelled() else running.exception()
                if isinstance(exc, NotStarted):
                    if envelope.state is not EnvelopeState.DONE:
                        if exc.expired:
                            self._answer(envelope, error=self._expired_error(envelope))
                        else:  # a failure before it was seen first; it goes back
                            window.appendleft((envelope, running))
                            self.in_flight += 1
                            await self._take_back(host, window)
                            return None
                    continue
                envelope.executed = True
                value, error, failure = _classify(running)
                if failure is not None:
                    await self._take_back(host, window)
                    return _Ended(
                        kind=ExitKind.FAILURE, cause=failure, envelope=envelope,
                        where=_where(failure),
                    )  # fmt: skip
                self._answer(envelope, value, error)
                if self._stop_requested and window:
                    await self._take_back(host, window)  # stop after the current message
                    return None
            return None
        except asyncio.CancelledError:  # daemon shutdown past the grace period
            for envelope, running in window:
                host.withdraw(running, expired=False)
                if not envelope.future.done():
                    self._answer(envelope, error=_shut_down_while_running(envelope))
            raise
        finally:
            for timer in timers:
                timer.cancel()
            self.in_flight -= len(window)

    def _send_ahead(
        self,
        host: ActorHost,
        window: collections.deque[tuple[Envelope, asyncio.Future[Any]]],
        timers: list[asyncio.TimerHandle],
    ) -> None:
        """Send the plain asks right behind the window to the host, in mailbox order."""
        loop = asyncio.get_running_loop()
        while len(window) < PIPELINE and self.mailbox:
            nxt = self.mailbox[0]
            if nxt.state is not EnvelopeState.QUEUED:
                self.mailbox.popleft()
                continue
            if nxt.sink is not None or nxt.handover is not None:
                return  # a stream or a keyed ask runs alone, after the window
            if nxt.deadline <= loop.time():
                return  # its mailbox timer answers it
            token = call_deadline.set(nxt.deadline)
            try:
                running = host.invoke(nxt.op, nxt.args, nxt.kwargs)
            except (PulsingBusinessError, PulsingUnsupportedError) as exc:
                self._pop()
                self._answer(nxt, error=exc)
                continue
            except Exception:
                return  # it fails the instance when it is reached, as the first ask
            finally:
                call_deadline.reset(token)
            self._pop()  # nxt: out of the mailbox, its timer off
            nxt.state = EnvelopeState.RUNNING
            assert isinstance(running, asyncio.Future)
            running.add_done_callback(functools.partial(self._settled_ahead, nxt))
            timers.append(loop.call_at(nxt.deadline, host.withdraw, running, True))
            window.append((nxt, running))
            self.in_flight += 1

    def _settled_ahead(self, envelope: Envelope, running: asyncio.Future[Any]) -> None:
        """An ask sent ahead expired before its turn: answer it now, not when the ops
        before it are done."""
        if running.cancelled() or envelope.state is EnvelopeState.DONE:
            return
        exc = running.exception()
        if isinstance(exc, NotStarted) and exc.expired:
            self._answer(envelope, error=self._expired_error(envelope))

    async def _take_back(
        self, host: ActorHost, window: collections.deque[tuple[Envelope, asyncio.Future[Any]]]
    ) -> None:
        """Asks sent ahead that have not started go back to the mailbox front, in order.

        The host answers each (NotStarted) once taken back; one that did run after all
        is answered as usual."""
        for _, running in window:
            host.withdraw(running, expired=False)
        if window:
            await asyncio.wait([running for _, running in window], timeout=TAKE_BACK_WAIT)
        back = []
        loop = asyncio.get_running_loop()
        while window:
            envelope, running = window.popleft()
            self.in_flight -= 1
            if envelope.state is EnvelopeState.DONE:
                continue
            exc = None if not running.done() or running.cancelled() else running.exception()
            if isinstance(exc, NotStarted) and not exc.expired:
                envelope.state = EnvelopeState.QUEUED
                envelope.timer = loop.call_at(envelope.deadline, self._expire, envelope)
                back.append(envelope)
            elif isinstance(exc, NotStarted):
                self._answer(envelope, error=self._expired_error(envelope))
            elif not running.done():  # no word from the host: it may have run
                envelope.executed = True
                self._answer(
                    envelope,
                    error=PulsingSystemError(
                        f"{envelope.op} was sent to the instance, which did not answer",
                        recoverable=False,
                    ),
                )
            else:
                envelope.executed = True
                value, error, failure = _classify(running)
                if failure is not None:
                    error = lost_error(envelope, failure) or PulsingSystemError(
                        f"{envelope.op} crashed: {_describe(failure)}"
                    )
                self._answer(envelope, value, error)
        self.mailbox.extendleft(reversed(back))
        self.queued += len(back)
        if back:
            self._wakeup.set()

    async def _execute_batch(self, host: Any, first: Envelope) -> _Ended | None:
        """Run a sync ask -- and the sync asks queued right behind it -- in one trip to
        the op thread. Mailbox order, one op at a time and every deadline hold as for a
        single ask: members wait in order, each answered as its op ends or its deadline
        passes; members still queued keep their mailbox deadline timers.
        """
        loop = asyncio.get_running_loop()
        prepared, ended = self._start(
            first, lambda: host.prepare(first.op, first.args, first.kwargs)
        )
        if prepared is _NOT_STARTED:
            return ended
        if prepared.is_async:  # resolved and bound once: start it from here
            return await self._execute(host, first, prepared.start)
        if first.deadline <= loop.time():
            self._answer(first, error=self._expired_error(first))
            return None
        first.state = EnvelopeState.RUNNING
        if first.handover is not None and not await hand_over(self, first):
            return None
        lock = threading.Lock()
        members = [(first, prepared)]
        while len(members) < SYNC_BATCH and self.mailbox:
            nxt = self.mailbox[0]
            if nxt.state is not EnvelopeState.QUEUED:
                self.mailbox.popleft()
                continue
            if nxt.sink is not None or (nxt.handover is not None and not nxt.handed):
                break  # a keyed ask not handed over yet starts the next batch
            try:
                call = host.prepare(nxt.op, nxt.args, nxt.kwargs)
            except Exception:
                break  # answered when it is reached, in order
            if call.is_async:
                break
            self.mailbox.popleft()
            nxt.state = EnvelopeState.BATCHED  # still queued: counted, timer armed
            members.append((nxt, call))
        for envelope, bound in members:
            envelope.call = SyncCall(
                bound.method,
                bound.args,
                bound.kwargs,
                envelope.deadline,
                loop.create_future(),
                lock,
            )
        first.state = EnvelopeState.RUNNING
        envelopes = [envelope for envelope, _ in members]
        heavy = loop.time() < self._heavy_until  # see host.HEAVY_OP
        job = run_sync_batch(
            [envelope.call for envelope in envelopes],  # type: ignore[misc]
            self._batch_progress,
            None if heavy else self._ran_heavy_op,
        )
        self.in_flight += 1
        self._batch = envelopes
        try:
            for index, envelope in enumerate(envelopes):
                if index and self._stop_requested:
                    # Stop after the current message, as unbatched: members not started
                    # go back (and are drained); ones already started are still answered.
                    self._requeue(envelopes[index:])
                if envelope.state is EnvelopeState.QUEUED:
                    continue
                call = envelope.call
                assert call is not None
                ended = await self._await_batched(envelope, job, index == 0)
                if ended is not None:
                    await asyncio.wait((job,))
                    self._requeue(envelopes[index + 1 :])
                    return ended
                if call.state is SyncCallState.HELD:  # taken back by a stop request
                    self._requeue(envelopes[index:])
                    continue
                if call.state is SyncCallState.WAITING:  # the op thread never got to it
                    if index == 0:
                        self._answer(
                            envelope,
                            error=PulsingRuntimeError(
                                f"{envelope.op} could not be started on the op thread",
                                recoverable=True,
                                status=503,
                            ),
                        )
                        index += 1
                    self._requeue(envelopes[index:])
                    return None
            return None
        except asyncio.CancelledError:  # daemon shutdown past the grace period
            for envelope in envelopes:
                call = envelope.call
                if call is not None and not call.hold():  # it started: outcome unknown
                    self._mark_started(envelope, envelope is first)
                    self._answer(envelope, error=_shut_down_while_running(envelope))
                elif envelope.state is EnvelopeState.RUNNING:  # popped, never started
                    self._answer(
                        envelope,
                        error=PulsingRuntimeError(
                            f"daemon shutting down; {envelope.op} was not executed",
                            recoverable=True,
                            status=503,
                        ),
                    )
            self._requeue(envelopes)
            raise
        finally:
            self._batch = []
            self.in_flight -= 1
            for envelope in envelopes:
                envelope.call = None

    async def _await_batched(
        self, envelope: Envelope, job: asyncio.Future[int], is_first: bool
    ) -> _Ended | None:
        """Wait for one member of a batch: its answer, its failure, or its deadline."""
        call = envelope.call
        assert call is not None
        loop = asyncio.get_running_loop()
        while not call.future.done():  # under load it often is, on arrival here
            if call.state is SyncCallState.HELD:
                return None  # a stop request took it back; the caller requeues it
            if call.state is SyncCallState.EXPIRED:
                if not is_first and envelope.state is EnvelopeState.BATCHED:
                    self._expire(envelope)  # answered as never executed
                elif not envelope.future.done():
                    self._answer(envelope, error=self._expired_error(envelope))
                return None
            if job.done() and call.state is SyncCallState.WAITING:
                return None  # the batch stopped before it: requeued by the caller
            # Woken by the batch's progress (a result, its end) or this ask's deadline:
            # one future awaited directly, so an answer takes one loop iteration.
            waiter = self._batch_waiter = loop.create_future()
            timer = loop.call_at(envelope.deadline, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._batch_waiter = None
            if call.future.done() or job.done() or loop.time() < envelope.deadline:
                continue  # answered, the job ended (expired or never reached), or not yet
            if call.state is SyncCallState.STARTED:
                self._mark_started(envelope, is_first)
                return await self._past_deadline_sync(envelope, call.future)
            if call.expire() and envelope.state is EnvelopeState.BATCHED:
                self._expire(envelope)
                return None
        self._mark_started(envelope, is_first)
        value, error, failure = _classify(call.future)
        if failure is not None:
            return _Ended(
                kind=ExitKind.FAILURE, cause=failure, envelope=envelope, where=_where(failure)
            )
        self._answer(envelope, value, error)
        return None

    def _ran_heavy_op(self) -> None:
        """A sync op burnt CPU: this actor's batches run on any CPU for a while."""
        self._heavy_until = asyncio.get_running_loop().time() + HEAVY_FOR

    def _batch_progress(self) -> None:
        """A batched op ended (or the batch did): wake the member being waited for."""
        waiter = self._batch_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _mark_started(self, envelope: Envelope, is_first: bool) -> None:
        """A batched op has run: it leaves the mailbox count and its timer is off."""
        if not is_first and envelope.state is EnvelopeState.BATCHED:
            self.queued -= 1
            if envelope.timer is not None:
                envelope.timer.cancel()
        envelope.state = EnvelopeState.RUNNING
        envelope.executed = True

    async def _past_deadline_sync(
        self, envelope: Envelope, running: asyncio.Future[Any]
    ) -> _Ended | None:
        """A sync op outlived its deadline: answer now, wait for the thread, record late."""
        self._answer(envelope, error=self._deadline_error(envelope))
        return await self._finish_late(envelope, running)

    async def _finish_late(self, envelope: Envelope, running: asyncio.Future[Any]) -> _Ended | None:
        """Wait for an op whose caller already has its timeout; its real outcome goes to
        ``on_late`` (idempotency records it), and a crash is still a failure."""
        await asyncio.wait((running,))  # the actor is busy until the op ends
        value, error, failure = _classify(running)
        if envelope.on_late is not None:
            if failure is not None:
                error = lost_error(envelope, failure) or PulsingSystemError(
                    f"{envelope.op} crashed after its deadline"
                )
            envelope.on_late(value, error)
        if failure is not None:
            return _Ended(kind=ExitKind.FAILURE, cause=failure, where=_where(failure))
        return None

    def _requeue(self, envelopes: list[Envelope]) -> None:
        """Batch members that never started go back to the mailbox front, in order.

        Their calls are expired first, so the op thread can never start them later.
        """
        back = []
        for envelope in reversed(envelopes):  # last first: see stop()
            if envelope.state is not EnvelopeState.BATCHED:
                continue
            if envelope.call is not None and not envelope.call.hold():
                continue  # it started after all; its outcome is on its way
            envelope.state = EnvelopeState.QUEUED
            envelope.call = None
            back.append(envelope)
        back.reverse()
        self.mailbox.extendleft(reversed(back))
        if back:
            self._wakeup.set()

    async def _execute_here(
        self, envelope: Envelope, call: Coroutine[Any, Any, Any], remaining: float
    ) -> _Ended | None:
        """Await an in-process async op in this task, under the ask's deadline.

        No task per op and no hop through the loop: a trivial op finishes within this
        step, so a busy actor drains its mailbox in few loop iterations.
        """
        deadline = _deadline_scope(remaining)
        try:
            async with deadline:
                value = await call
        except asyncio.CancelledError:
            self._answer(envelope, error=_shut_down_while_running(envelope))
            raise
        except BaseException as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                envelope.interrupted = True  # cancelled at its deadline
                self._answer(envelope, error=self._deadline_error(envelope))
                return None
            _, error, failure = _classify_exception(exc)
            if failure is not None:
                return _Ended(
                    kind=ExitKind.FAILURE, cause=failure, envelope=envelope, where=_where(failure)
                )
            self._answer(envelope, error=error)
            return None
        self._answer(envelope, value)
        return None

    async def _past_deadline(
        self, host: ActorHost, envelope: Envelope, running: asyncio.Future[Any]
    ) -> _Ended | None:
        """The op outlived its deadline: stop it if the host can, answer the caller."""
        envelope.interrupted = await host.interrupt(running)
        self._answer(envelope, error=self._deadline_error(envelope))
        if envelope.interrupted:
            return None
        return await self._finish_late(envelope, running)

    def _deadline_error(self, envelope: Envelope) -> PulsingTimeoutError:
        return PulsingTimeoutError(
            envelope.op,
            round(envelope.timeout * 1000, 3),
            message=f"{envelope.op} did not finish within its {envelope.timeout:g}s deadline",
            executed=True,
        )

    async def _produce(self, host: ActorHost, envelope: Envelope) -> _Ended | None:
        """Run a streaming op to completion, appending each chunk to its sink."""
        assert envelope.sink is not None
        envelope.state = EnvelopeState.RUNNING
        chunks, ended = self._start(
            envelope, lambda: host.produce(envelope.op, envelope.args, envelope.kwargs)
        )
        if chunks is _NOT_STARTED:
            return ended
        envelope.executed = True
        self.in_flight += 1
        try:
            async for chunk in chunks:
                await envelope.sink.append(chunk)
                if self._stop_requested:
                    await _aclose(chunks)
                    self._answer(
                        envelope,
                        error=PulsingRuntimeError(
                            f"actor {self.name} was stopped while streaming {envelope.op}",
                            status=503,
                        ),
                    )
                    return None
        except asyncio.CancelledError:
            self._answer(envelope, error=_shut_down_while_running(envelope))
            raise
        except BaseException as exc:
            value, error, failure = _classify_exception(exc)
            if failure is not None:
                return _Ended(
                    kind=ExitKind.FAILURE, cause=failure, envelope=envelope, where=_where(failure)
                )
            self._answer(envelope, value, error)
            return None
        finally:
            self.in_flight -= 1
        self._answer(envelope, None)
        return None

    # ----------------------------------------------------------------- status
    def backoff_remaining(self) -> float | None:
        if self.state is not ActorState.BACKOFF or self.backoff_until is None:
            return None
        return max(0.0, self.backoff_until - self.clock())

    def status(self) -> dict[str, Any]:
        remaining = self.backoff_remaining()
        uptime = None if self.running_since is None else self.clock() - self.running_since
        status: dict[str, Any] = {
            "name": self.name,
            "state": self.state.value,
            "policy": self.config.restart_policy.value,
            "restarts": self.tracker.count,
            "max_restarts": self.config.max_restarts,
            "restart_window": self.config.restart_window,
            "total_restarts": self.total_restarts,
            "operator_restarts": self.operator_restarts,
            "backoff_remaining": None if remaining is None else round(remaining, 3),
            "mailbox": self.queued,
            "mailbox_size": self.config.mailbox_size,
            "in_flight": self.in_flight,
            "counts": {k: self.counts[k] for k in OUTCOMES},
            "last_error": self.last_error,
            "last_failure": self.last_failure,
            "uptime": None if uptime is None else round(uptime, 3),
            "isolation": self.config.isolation,
            "class": self.config.class_path,
        }
        if self.host is not None:
            status.update(self.host.info())
        return status


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _classify(done: asyncio.Future[Any]) -> tuple[Any, PulsingError | None, BaseException | None]:
    """(value, error for the caller, failure of the instance) of a finished op."""
    if done.cancelled():
        return None, PulsingRuntimeError("op was cancelled", status=503), None
    exc = done.exception()
    if exc is None:
        return done.result(), None, None
    return _classify_exception(exc)


def _classify_exception(
    exc: BaseException,
) -> tuple[Any, PulsingError | None, BaseException | None]:
    """(None, error for the caller, failure of the instance): see ``is_failure``."""
    if isinstance(exc, NotStarted):  # a pipelining host never started it: not a failure
        if exc.expired:
            return None, PulsingTimeoutError("ask", 0, message=str(exc), executed=False), None
        return None, PulsingRuntimeError(f"op {exc}", recoverable=True, status=503), None
    if is_failure(exc):
        return None, None, exc
    assert isinstance(exc, PulsingError)
    return None, exc, None


async def _aclose(chunks: Any) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "run() exited"
    text = str(exc)
    if isinstance(exc, PulsingError):
        return text
    return f"{_type_name(exc)}: {text}" if text else _type_name(exc)


def _shut_down_while_running(envelope: Envelope) -> PulsingRuntimeError:
    return PulsingRuntimeError(f"daemon shut down while {envelope.op} was running", status=503)


def _deadline_scope(seconds: float) -> Any:
    """``asyncio.timeout`` (Python >= 3.11), or a shim with the same two methods."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is not None:
        return timeout(seconds)
    return _TimeoutShim(seconds)


class _TimeoutShim:
    """Python 3.10: cancel the current task at the deadline, report it as TimeoutError."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None

    def expired(self) -> bool:
        return self._expired

    def _fire(self, task: asyncio.Task[Any]) -> None:
        self._expired = True
        task.cancel()

    async def __aenter__(self) -> _TimeoutShim:
        task = asyncio.current_task()
        assert task is not None
        self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire, task)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return False


def _type_name(exc: BaseException) -> str:
    """The exception's type name (a child process's exception keeps its original name)."""
    return getattr(exc, "type_name", None) or type(exc).__name__


def _where(failure: BaseException) -> str:
    """Where a failure during an op happened: the op itself, or its process died."""
    return getattr(failure, "cause", None) or "op"


def _no_event(kind: str, actor: str | None = None, **fields: Any) -> None:
    """The emit of a cell no supervisor has given an event log."""


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def new_envelope(
    op: str,
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float,
    sink: StreamSink | None = None,
) -> Envelope:
    loop = asyncio.get_running_loop()
    return Envelope(
        op=op,
        args=args,
        kwargs=kwargs,
        timeout=timeout,
        deadline=loop.time() + timeout,
        future=loop.create_future(),
        sink=sink,
    )


__all__ = ["ActorCell", "Envelope", "StreamSink", "new_envelope"]
