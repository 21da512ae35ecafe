"""One supervised actor: its mailbox, its state machine, and the loop that serves it.

The cell outlives instances. A lifecycle task starts an instance through a host
(``pulsing_daemon/hosts/``), serves the mailbox one message at a time, and when the
instance ends asks the restart tracker what to do. The mailbox survives restarts:
asks queued behind a failure wait for the next instance, each bound by its own
deadline. Every envelope is answered exactly once, by ``answer``.

How a message runs on the host is in running.py (an ask, a stream) and batching.py
(sync asks in batches, for hosts that ``runs_sync_batches``); the cell picks the path
from what the host declares and applies the restart policy to what comes back. What
an ask that does not run is answered with is in cell_errors.py; what the operator
sees of the cell (its status, last error, last failure) in cell_status.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from pulsing_daemon import cell_errors, cell_status, log, wire
from pulsing_daemon.batching import hold_waiting, run_batch
from pulsing_daemon.cell_status import OUTCOMES
from pulsing_daemon.config import ActorConfig
from pulsing_daemon.deadline import Clock, Deadline, DeadlineWatch, loop_clock
from pulsing_daemon.envelope import Ended, Envelope, EnvelopeState
from pulsing_daemon.exceptions import (
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
)
from pulsing_daemon.hosts.base import ActorHost
from pulsing_daemon.pipelining import execute_pipelined
from pulsing_daemon.policy import ExitKind, RestartTracker
from pulsing_daemon.running import execute, produce
from pulsing_daemon.states import ACCEPTING, ActorState, check_transition
from pulsing_daemon.storage import capture, logs
from pulsing_daemon.wakeup import NO_MAIL, Wakeup

HostFactory = Callable[[ActorConfig], ActorHost]


class ActorCell:
    """A named actor: config, mailbox, state, counters; survives its instances."""

    # One cell per actor, 10,000s of them: the attributes set in __init__ live in slots
    # (an instance dict of this many keys is not key-shared: ~1.6 KB each). "__dict__"
    # keeps any other attribute working (in a per-instance dict).
    __slots__ = (
        "__dict__", "__weakref__", "_changed", "_drain_on_stop", "_holding", "_idle",
        "_stop_reason", "_task", "_wakeup", "accepting", "backoff_until", "batch", "clock",
        "config", "counts", "deadlines", "default_timeout", "emit", "heavy_until", "host",
        "host_factory", "in_flight", "last_error", "last_failure", "mailbox", "metrics", "name",
        "operator_restarts", "queued", "running_since", "start_gate", "state", "stop_requested",
        "total_restarts", "tracker",
    )  # fmt: skip

    def __init__(
        self,
        config: ActorConfig,
        host_factory: HostFactory,
        default_timeout: float,
        clock: Clock | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.host_factory = host_factory
        self.default_timeout = config.timeout or default_timeout
        # Backoff, uptime and the restart window on the loop's clock, like every deadline
        # (a test's virtual-time loop moves them all).
        self.clock = clock if clock is not None else loop_clock()
        self.state = ActorState.STOPPED
        self.tracker = RestartTracker(**config.restart_rules(), clock=self.clock)
        self.mailbox: deque[Envelope] = NO_MAIL  # a deque of its own from the first message
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
        self._wakeup = Wakeup()
        self.stop_requested = False
        self._stop_reason = "stopped by operator"
        self._drain_on_stop = True
        self._holding = False  # an operator restart in progress: keep the mailbox
        self._task: asyncio.Task[None] | None = None
        # Made only when someone waits (an asyncio.Event with its waiter deque is
        # ~0.8 KB; most cells never have a waiter): _wait_idle's, set when the
        # mailbox empties; wait_started's, set and dropped on every transition.
        self._idle: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self.metrics: Any = None  # pulsing_daemon.metrics.Metrics, when attached
        # EventLog.emit(kind, actor, **fields), set by the supervisor (events.py).
        self.emit: Callable[..., None] = _no_event
        # Where this actor's output goes (storage/logs.py), set by the supervisor.
        self.log_sink: logs.ActorLog | None = None
        self.batch: list[Envelope] = []  # the sync batch being run, if any (batching.py)
        self.deadlines: DeadlineWatch | None = None  # its messages' deadlines (watch_deadline)
        self.heavy_until = 0.0  # loop time until which sync ops do not follow the loop
        # Shared by the supervisor's cells: bounds how many instances start at once,
        # so a daemon starting thousands of actors still answers requests meanwhile.
        self.start_gate: asyncio.Semaphore | None = None

    # ----------------------------------------------------------------- state machine
    def _enter(self, new: ActorState) -> ActorState:
        """Move to ``new`` if the state table allows it; returns the state left."""
        check_transition(self.state, new)
        old, self.state = self.state, new
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return old

    def _set_state(self, new: ActorState, **fields: Any) -> None:
        """A state change, logged and sent to the event log."""
        old = self._enter(new)
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
        self.stop_requested = False
        self.accepting = True
        self.backoff_until = None
        self._set_state(ActorState.STARTING)
        self._task = asyncio.create_task(self._lifecycle(), name=f"pulsing-actor-{self.name}")

    def starting(self) -> bool:
        """A just started instance is not past ``starting`` yet."""
        live = self._task is not None and not self._task.done()
        return live and self.state in (ActorState.STOPPED, ActorState.STARTING)

    async def wait_started(self, timeout: float) -> None:
        """Wait (bounded) until a just started instance is past ``starting``."""
        deadline = Deadline.after(timeout)
        while self.starting() and not deadline.expired():
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(asyncio.shield(self._changed.wait()), deadline.remaining())
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
        self.stop_requested = True
        hold_waiting(self.batch)  # batched asks not started never will be
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
        self.tracker.reconfigure(**config.restart_rules())

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
            raise self.stamp(cell_errors.shutting_down())
        if self.state not in ACCEPTING and not self._holding:
            raise self.stamp(cell_errors.not_serving(self.name, self.state, self.last_failure))
        if self.config.during_restart == "fail_fast" and self.state in (
            ActorState.BACKOFF,
            ActorState.STARTING,
        ):
            retry_after = round(max(0.05, cell_status.backoff_remaining(self) or 0.0), 3)
            raise self.stamp(cell_errors.restarting(self.name, retry_after))
        if self.queued >= self.config.mailbox_size:
            raise self.stamp(cell_errors.mailbox_full(self.name, self.config.mailbox_size))
        loop = asyncio.get_running_loop()
        if envelope.deadline <= loop.time():
            raise self.stamp(self.expired_error(envelope))
        if envelope.sink is None:  # streams are not bound by an ask deadline
            self.watch_deadline(envelope)
        mailbox = self.mailbox
        if mailbox is NO_MAIL:
            mailbox = self.mailbox = deque()
        mailbox.append(envelope)
        self.queued += 1
        self._wakeup.set()

    def watch_deadline(self, envelope: Envelope) -> None:
        """Have ``expire`` called at ``envelope``'s deadline unless it leaves the watch first."""
        watch = self.deadlines
        if watch is None:  # made with the first message (most actors of a big config idle)
            watch = self.deadlines = DeadlineWatch(self.expire)
        watch.add(envelope)

    def expired_error(self, envelope: Envelope) -> PulsingTimeoutError:
        """The answer to an ask whose deadline passed in this mailbox."""
        return cell_errors.expired_in_mailbox(self.name, envelope)

    def expire(self, envelope: Envelope) -> None:
        """A message's deadline has come (the deadline watch): a queued one is answered
        and will never run; an op awaited in place (``running.execute_here``) is
        cancelled there."""
        if envelope.state is EnvelopeState.QUEUED or (
            envelope.state is EnvelopeState.BATCHED
            and envelope.call is not None
            and envelope.call.expire()
        ):
            self.queued -= 1
            self.answer(envelope, error=self.expired_error(envelope))
            self._check_idle()
        elif envelope.runner is not None and not envelope.interrupted:
            envelope.interrupted = True
            envelope.runner.cancel()

    def pop(self, keep_deadline: bool = False) -> Envelope | None:
        """The next queued message, out of the mailbox count and the deadline watch
        (``keep_deadline``: left watched for whoever runs it, who must drop it or use it)."""
        while self.mailbox:
            envelope = self.mailbox.popleft()
            if envelope.state is EnvelopeState.QUEUED:
                self.queued -= 1
                if envelope.watch is not None and not keep_deadline:
                    envelope.watch.drop(envelope)
                return envelope
        return None

    def _drain(self, reason: str) -> None:
        """Answer every queued message: the actor will not serve them."""
        while (envelope := self.pop()) is not None:
            error = cell_errors.not_executed(self, reason, envelope.op)
            self.answer(envelope, error=error, remember=False)
        self._check_idle()

    def wake(self) -> None:
        """Have the serving task look at the mailbox (something was put back in it)."""
        self._wakeup.set()

    def _check_idle(self) -> None:
        if self._idle is not None and not self.queued and not self.in_flight:
            self._idle.set()

    def answer(
        self,
        envelope: Envelope,
        value: Any = None,
        error: PulsingError | None = None,
        *,
        remember: bool = True,
    ) -> None:
        """Resolve an envelope once; count the outcome; remember the last error.

        ``remember=False`` for refusals (a drained mailbox): they must not hide the
        failure that caused them from ``last_error``. A keyed ask's handover may take
        the answer (``Handover.settle``): its future is resolved once the outcome's
        record has committed, so the caller hears it when it is stored.
        """
        if envelope.state is EnvelopeState.DONE and (envelope.future.done() or envelope.recording):
            return
        envelope.state = EnvelopeState.DONE
        if envelope.watch is not None:
            envelope.watch.drop(envelope)
        if envelope.future.done():
            return
        if error is None and envelope.sink is None:
            # Encode here, once: a result JSON cannot carry is the op's system error
            # (counted and remembered like any other), and HTTP sends the text as is.
            try:
                envelope.result_json = wire.encode_result(value, envelope.op)
            except PulsingSystemError as exc:
                error = exc
        outcome = "ok" if error is None else error.category
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.metrics is not None:
            op = envelope.op if outcome != "unsupported" else "_unsupported"
            self.metrics.observe(self.name, op, outcome, perf_counter() - envelope.born)
        if error is None:
            if envelope.handover is None or not envelope.handover.settle(envelope, value, None):
                envelope.future.set_result(value)
            return
        self.stamp(error)
        if remember:
            cell_status.remember_error(self, envelope, error)
        if envelope.handover is not None and envelope.handover.settle(envelope, None, error):
            return  # resolved once the outcome is stored
        envelope.future.set_exception(error)
        envelope.future.exception()  # retrieved: a caller that left must not warn

    # ----------------------------------------------------------------- lifecycle
    async def _lifecycle(self) -> None:
        capture.enter(self.log_sink)  # what the instance writes, from here on, is its own
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
                self._enter(ActorState.STOPPED)  # no event: the daemon is going away
            self.accepting = False
            self._drain("daemon shutting down")
            raise

    async def _run_instance(self) -> Ended:
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
            return Ended(kind=ExitKind.FAILURE, cause=exc, where="start")
        self.host = host
        self.running_since = self.clock()
        self.tracker.mark_running()
        self._set_state(ActorState.RUNNING, **host.info())
        try:
            ended = await self._serve(host)
        finally:
            self.running_since = None
        await host.stop(graceful=ended.stopped)
        self.host = None
        return ended

    async def _after_exit(self, ended: Ended) -> bool:
        """Apply the restart policy to an ended instance. True = start again."""
        kind = ended.kind or ExitKind.FAILURE
        decision = self.tracker.on_exit(kind)
        if kind is ExitKind.FAILURE:
            cell_status.record_failure(self, ended)
        if decision.restart:
            self.total_restarts += 1
            cause = ended.where if kind is ExitKind.FAILURE else "exit"
            if self.metrics is not None:
                self.metrics.restarted(self.name, cause)
            self.backoff_until = self.clock() + decision.delay
            self.emit(
                "restart", self.name, restarts=self.tracker.count,
                max_restarts=self.config.max_restarts, delay=round(decision.delay, 3), cause=cause,
            )  # fmt: skip
            self._set_state(
                ActorState.BACKOFF,
                delay=f"{decision.delay:.3f}",
                restarts=f"{self.tracker.count}/{self.config.max_restarts}",
                cause=cause,
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
        deadline = Deadline.after(delay)
        while not self.stop_requested:
            if deadline.expired():
                return True
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), deadline.remaining())
            except asyncio.TimeoutError:
                return True
        return False

    def _answer_failed(self, ended: Ended, restart: bool) -> None:
        """Answer the ask that hit the failure, once the next state is known."""
        if ended.envelope is not None:
            self.answer(ended.envelope, error=cell_errors.failure_error(ended, restart))

    # ----------------------------------------------------------------- serving
    async def _serve(self, host: ActorHost) -> Ended:
        host.exited.add_done_callback(lambda _: self._wakeup.set())
        while True:
            if self.stop_requested:
                return Ended(stopped=True)
            if host.exited.done():
                end = host.exited.result()
                kind = ExitKind.FAILURE if end.failed else ExitKind.EXIT
                return Ended(kind=kind, cause=end.cause, where=end.where)
            envelope = self.pop(keep_deadline=host.runs_sync_batches)
            if envelope is None:
                self._check_idle()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if envelope.sink is not None:
                ended = await produce(self, host, envelope)
            elif host.runs_sync_batches:
                ended = await run_batch(self, host, envelope)
            elif host.pipelines:  # remote: asks are sent ahead, run in order there
                ended = await execute_pipelined(self, host, envelope)
            else:
                ended = await execute(self, host, envelope)
            if ended is not None:
                return ended

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        return cell_status.status(self)


def _no_event(kind: str, actor: str | None = None, **fields: Any) -> None:
    """The emit of a cell no supervisor has given an event log."""

