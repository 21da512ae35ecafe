"""The host contract: everything supervision may ask of an actor instance.

An actor's cell (``pulsing_daemon/cell.py``) talks to its instance only through
:class:`ActorHost`. What a host can do beyond the required methods is declared on its
class (``runs_sync_batches``), never probed. How an instance ended is an :class:`Exit`;
a failure a host raises on the instance's behalf is a :class:`HostFailure`, which says
where it happened and the type name to report. The config keys a kind of host reads
are its :class:`HostKeys`; ``hosts/registry.py`` maps an ``isolation`` value to the
host class.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pulsing_daemon.keyspec import KeySpec

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig, DaemonConfig
    from pulsing_daemon.hosts.inline import BoundCall
    from pulsing_daemon.hosts.threads import SyncCall


@dataclass(frozen=True)
class Exit:
    """How an instance ended on its own (what ``ActorHost.exited`` resolves with)."""

    # Where it ended: "run" (run() returned or raised), "process" (its process died),
    # "timeout" (killed at an op's deadline), "protocol" (it broke the frame protocol).
    where: str
    cause: BaseException | None = None  # None: a normal end (run() returned, a stop)

    @property
    def failed(self) -> bool:
        return self.cause is not None


class HostFailure(Exception):
    """A failure a host reports about its instance (its process died, an exception
    raised in a child process). Any other exception out of an op is the op's own:
    it happened in the op, and it is reported by its class name."""

    where: str = "op"  # as Exit.where, or "op": the op raised it
    type_name: str = ""  # the type reported in last_failure ("": the class name)


def failure_where(failure: BaseException) -> str:
    """Where a failure during an op happened: the op itself, or what its host says."""
    return failure.where if isinstance(failure, HostFailure) else "op"


def failure_type(failure: BaseException) -> str:
    """The type name a failure is reported with (a child's exception keeps its own)."""
    if isinstance(failure, HostFailure) and failure.type_name:
        return failure.type_name
    return type(failure).__name__


class InstanceLost(Exception):
    """The instance was lost (its process or remote worker died) while an op handed to
    it had not answered: whether the op ran, partly or fully, is unknown.

    Hosts fail the result of such an op with this (or a subclass). A keyed ask then
    gets a non-recoverable "outcome unknown" system error and is never run again with
    its key (see pulsing_daemon.handover); other asks get the usual failure error.
    """


# The deadline (event loop time) of the ask or stream a host's ``invoke``/``produce`` is
# starting: set by the cell around those calls, for hosts that send the remaining budget
# along with the call (a remote instance enforces it on its side too).
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "pulsing_call_deadline", default=None
)


async def ended_within(running: asyncio.Future[Any], timeout: float) -> bool:
    """After an interrupt: wait up to ``timeout`` for the op to end. True when it did
    (its exception, if any, retrieved: its caller already has its answer)."""
    done, _ = await asyncio.wait((running,), timeout=timeout)
    if done and not running.cancelled():
        running.exception()
    return bool(done)


class NotStarted(Exception):
    """A host that runs asks sent ahead (``ActorHost.pipelines``) did not start this one:
    its deadline passed before its turn (``expired``), or an earlier ask failed the
    instance, or it was taken back. The cell answers it as never executed, or puts it
    back in the mailbox for the next instance (see pulsing_daemon.pipelining)."""

    def __init__(self, expired: bool) -> None:
        super().__init__("expired before its turn" if expired else "not started")
        self.expired = expired


class LateAnswers:
    """The answered asks of a host whose op ended past its deadline, by the clock of
    the instance that ran it (a child process, a Ray worker): ``ActorHost.ended_late``.
    Held weakly: an answer nobody asks about is forgotten with its future."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()

    def mark(self, future: asyncio.Future[Any]) -> None:
        self._futures.add(future)

    def take(self, future: asyncio.Future[Any]) -> bool:
        """Was ``future`` marked? (Forgotten once asked.)"""
        if not self._futures or future not in self._futures:
            return False
        self._futures.discard(future)
        return True


# Finishes a host's key values once every layer is applied: makes paths absolute
# against the config file's directory (the Path), cross-checks values, and reports
# a problem with ``problem(key, reason)``. It runs for every actor, whatever its
# isolation: a key set in [defaults] is checked even where no actor uses it.
KeyFinisher = Callable[[dict[str, Any], Path, Callable[[str, str], None]], None]


@dataclass(frozen=True)
class HostKeys:
    """The config keys a kind of host brings (documented in pulsing-config(5))."""

    # Keys of [actors.NAME], layered like every actor key ([defaults], @remote(...)).
    # The values reach the host as ``ActorConfig.host_keys[name]``.
    actor: tuple[KeySpec, ...] = ()
    # Of those, the keys an actor's own table may set only with this isolation.
    exclusive: tuple[str, ...] = ()
    # Keys of the [daemon.ISOLATION] table (``DaemonConfig.hosts[isolation]``).
    daemon: tuple[KeySpec, ...] = ()
    finish: KeyFinisher | None = None


class ActorHost(abc.ABC):
    """One actor instance, wherever it lives.

    The cell calls ``start`` once, then ``invoke``/``produce`` one message at a time
    (``prepare`` too, when the host ``runs_sync_batches``), and ``stop`` once.
    ``exited`` resolves with an :class:`Exit` when the instance ends on its own
    (``run()`` returned or raised, the process died) or is stopped.

    At most once for keyed asks rests on one rule a host must keep. The cell calls
    ``invoke`` only after the ask's "handed over" record is durable, so from then on
    the op counts as possibly run. When the instance is lost before the op answered,
    fail its future (or stream) with :class:`InstanceLost`: the caller hears "outcome
    unknown". When the op certainly never reached the instance (it could not be sent),
    raise from ``invoke`` itself, or fail with any other exception: the ask is then
    not stored and its key stays free, so a retry runs it once. Asks still in the
    mailbox when an instance is lost were never handed over: the cell keeps them for
    the next instance.

    Failures: an exception out of ``start`` fails the instance where "start"; out of
    ``invoke``/``produce`` or an op's result, where :func:`failure_where` says. Raise
    a :class:`HostFailure` to say where and under which type name; business and
    unsupported errors (a bad call) answer the caller and fail nothing.
    """

    # The isolation value that selects this host, and what it means (one phrase, shown
    # in the description of the ``isolation`` key).
    isolation: ClassVar[str]
    summary: ClassVar[str]
    keys: ClassVar[HostKeys] = HostKeys()
    # True: sync ops are resolved with ``prepare`` and run by the cell in batches on
    # the op thread pool (hosts/threads.py); False: every ask goes through ``invoke``.
    runs_sync_batches: ClassVar[bool] = False
    # True: ``invoke`` may be called again before the previous ask answered; the host
    # runs the asks one at a time in the order of the ``invoke`` calls, starts none after
    # one that failed the instance (its future fails with :class:`NotStarted`), and
    # ``withdraw`` takes back one that has not started. When the instance is lost, only
    # the first unanswered ask may have run (InstanceLost); the ones behind it fail with
    # NotStarted. A remote instance hides its round trip this way (pipelining.py).
    pipelines: ClassVar[bool] = False
    # Hosts whose instance says when an op ended past its deadline (a child process, a
    # Ray worker) make their own and mark those answers in it (``ended_late``).
    late_answers: LateAnswers | None = None

    exited: asyncio.Future[Exit]

    @classmethod
    def for_actor(cls, config: ActorConfig, daemon: DaemonConfig) -> ActorHost:
        """A host (not started) for one instance of the actor ``config`` describes;
        ``daemon`` holds the host's [daemon.ISOLATION] table (``daemon.hosts``)."""
        return cls(config)  # type: ignore[call-arg]

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this kind of host cannot run here (a missing package), or None. A config
        naming it is then refused with this reason."""
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

    def prepare(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> BoundCall:
        """Resolve and bind an ask without running it (hosts that ``runs_sync_batches``).

        Raises the resolution errors, like ``invoke``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not run sync batches")

    def run_batch(
        self,
        calls: list[SyncCall],
        on_progress: Callable[[], None],
        on_heavy: Callable[[], None] | None,
    ) -> asyncio.Future[int]:
        """Run prepared sync calls back to back, in order (hosts that
        ``runs_sync_batches``): each call's future gets its outcome as it ends; the
        returned future, how many calls the batch went through (it stops after a
        failure). ``on_progress`` runs on the loop after each outcome; ``on_heavy``
        when an op turned out to burn CPU (see ``hosts.threads.run_sync_batch``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not run sync batches")

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

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        """Hosts that ``pipelines``: do not start this ask if it has not started; it then
        answers ``NotStarted(expired)``."""
        return None

    def send_now(self) -> None:
        """Hosts that ``pipelines``: send the asks invoked so far now; the cell calls
        it before it waits (a host may hold them to send several at once)."""
        return None

    def ended_late(self, running: asyncio.Future[Any]) -> bool:
        """Hosts that ``pipelines``: the instance said this answered ask's op ended past
        its deadline (the host marked it in ``late_answers``). The cell then answers the
        caller's deadline, though the answer came before the deadline in its loop's turn
        (a loop held up past both)."""
        late = self.late_answers
        return late is not None and late.take(running)

    def info(self) -> dict[str, Any]:
        """Extra facts for status (a pid, ...)."""
        return {}
