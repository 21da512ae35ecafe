"""``isolation = "process"``: the instance lives in a child Python process.

Same interface as ``InlineHost``, so supervision, deadlines, streams and idempotency
do not change. A child that dies for any reason (exception in ``run()``, ``os._exit``,
a signal such as SIGSEGV or SIGKILL, a resource limit) is a failure: in-flight calls
fail with ``ProcessLost`` (an ``InstanceLost``: a keyed ask's outcome is unknown) and
``exited`` resolves. A call that cannot be sent raises ``ProcessDied`` from ``invoke``.
Child stdout/stderr and its ``logging`` records go to the actor's log
(storage/logs.py) line by line. Stop = ``on_stop``, then SIGTERM, then SIGKILL after
the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulsing_daemon import affinity, log, spawn
from pulsing_daemon.exceptions import from_wire
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
from pulsing_daemon.hosts.framing import RECV_SIZE, FrameError, Outbox, encode, take_frames
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.hosts.registry import register
from pulsing_daemon.hosts.threads import queued_chunks
from pulsing_daemon.keyspec import (
    KeySpec,
    boolean_key,
    integer_key,
    number_key,
    path_key,
    string_table_key,
)
from pulsing_daemon.storage import capture

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig

START_TIMEOUT = 60.0
STOP_GRACE = 5.0
CANCEL_GRACE = 1.0


class ChildError(HostFailure):
    """An exception raised in the child, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class ProcessDied(HostFailure):
    """The child process ended while it was supposed to run; ``where`` says why
    ("process": it died, "timeout": killed at an op's deadline, "protocol")."""

    type_name = "ProcessExit"

    def __init__(self, message: str, *, where: str = "process") -> None:
        super().__init__(message)
        self.where = where


class ProcessLost(ProcessDied, InstanceLost):
    """The child died while an op sent to it had not answered: its outcome is unknown."""


class Unserializable:
    """Stands for a child's result that JSON cannot carry (fails like inline when sent)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unserializable result: {self.reason}>"


def _exception(payload: dict[str, Any]) -> BaseException:
    exc: BaseException
    if "wire" in payload:
        exc = from_wire(payload["wire"])
    else:
        exc = ChildError(str(payload.get("type", "Exception")), str(payload.get("message", "")))
    if isinstance(payload.get("traceback"), str):
        exc.remote_traceback = payload["traceback"]  # type: ignore[attr-defined]
    return exc


def describe_exit(returncode: int, memory_limit: int | None, cpu_limit: float | None) -> str:
    if returncode >= 0:
        return f"process exited with code {returncode}"
    signum = -returncode
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    text = f"process killed by {name}"
    if signum == signal.SIGXCPU and cpu_limit:
        text += f" (cpu_limit of {cpu_limit:g}s exceeded)"
    if signum == signal.SIGKILL and memory_limit:
        text += " (possibly memory_limit)"
    return text


class _Frames(asyncio.BufferedProtocol):
    """The child's frames, dispatched as they are read (no task to wake in between).
    Reads land in one buffer (a plain protocol gets a new 256 KB bytes per read,
    mmapped and unmapped)."""

    def __init__(self, host: ProcessHost) -> None:
        self.host = host
        self.buffer = bytearray()
        self.received = memoryview(bytearray(RECV_SIZE))
        self.broken = False

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.received

    def buffer_updated(self, nbytes: int) -> None:
        if self.broken:
            return
        self.buffer += self.received[:nbytes]
        try:
            messages = take_frames(self.buffer)
        except FrameError as exc:
            self.broken = True
            self.host._protocol_error(exc)
            return
        for message in messages:
            try:
                self.host._dispatch(message)
            except Exception as exc:  # one bad frame must not close the connection
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"error dispatching a frame of {self.host.name}", "exception": exc}
                )


def _finish_keys(values: dict[str, Any], base: Path, problem: Callable[[str, str], None]) -> None:
    """``cwd`` relative to the config file, and a directory; ``env`` a plain dict."""
    values["env"] = dict(values["env"])
    if values["cwd"] is not None:
        values["cwd"] = str(base / values["cwd"])
        if not Path(values["cwd"]).is_dir():
            problem("cwd", f"no such directory: {values['cwd']}")


@register
class ProcessHost(ActorHost):
    """The instance lives in a child process (``python -m pulsing_daemon.hosts.child``)."""

    isolation = "process"
    summary = "own child process; survives hard crashes"
    keys = HostKeys(
        actor=(
            KeySpec("kill_on_timeout", "boolean", False, boolean_key,
                    "process and ray isolation: kill and restart an instance whose op is "
                    "still running at its deadline (counted as a restart with cause timeout)"),
            KeySpec("memory_limit", "integer", None, integer_key(1),
                    "process isolation: memory limit in bytes; exceeding it is a failure",
                    nullable=True),
            KeySpec("cpu_limit", "float", None, number_key(positive=True),
                    "process isolation: CPU time limit in seconds; exceeding it is a failure",
                    nullable=True),
            KeySpec("env", "table of strings", {}, string_table_key,
                    "process isolation: extra environment variables for the child process"),
            KeySpec("cwd", "path", None, path_key,
                    "process isolation: working directory of the child process; relative "
                    "to the config file", nullable=True),
        ),
        # kill_on_timeout is accepted on any actor (it changes nothing inline).
        exclusive=("memory_limit", "cpu_limit", "env", "cwd"),
        finish=_finish_keys,
    )  # fmt: skip

    # Asks are sent ahead (pipelining.py): the child runs them in order, one at a time,
    # and a round trip to it is paid once for all the asks queued behind the first.
    pipelines = True

    def __init__(self, config: ActorConfig) -> None:
        assert config.cls is not None
        self.config = config
        self.settings = config.host_keys
        self.cls = config.cls
        self.name = config.name
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[Exit] = loop.create_future()
        self.proc: spawn.Child | None = None
        self.writer: asyncio.WriteTransport | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self.late_answers = LateAnswers()  # see ActorHost.ended_late
        self._streams: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._next_id = 0
        self._ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._stopped = loop.create_future()
        self._stopping = False
        self._kill_cause: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._log = capture.current()  # the actor's log (the cell's task creates hosts)
        self._outbox: Outbox | None = None  # frames to the child (framing.Outbox)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = {**os.environ, **self.settings["env"]}
        cpus = affinity.released_cpus()  # a pinned daemon does not pin its children
        extra = ["--cpus", ",".join(map(str, sorted(cpus)))] if cpus else []
        try:
            # spawn.start, not the loop's subprocess_exec: no loop stall while it forks.
            self.proc = await spawn.start(
                [
                    sys.executable,
                    "-m",
                    "pulsing_daemon.hosts.child",
                    "--fd",
                    str(child_sock.fileno()),
                    "--parent",
                    str(os.getpid()),
                    *extra,
                ],
                stdin=spawn.DEVNULL,
                stdout=spawn.PIPE,
                stderr=spawn.PIPE,
                pass_fds=(child_sock.fileno(),),
                env=env,
                cwd=self.settings["cwd"],
                start_new_session=True,  # a Ctrl-C on the daemon's terminal is the daemon's
            )
        finally:
            child_sock.close()
        loop = asyncio.get_running_loop()
        self.writer, _ = await loop.create_connection(lambda: _Frames(self), sock=parent_sock)
        self._outbox = Outbox(self.writer)
        self._tasks = [
            asyncio.create_task(self._pump(self.proc.stdout, "stdout")),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr")),
            asyncio.create_task(self._wait()),
        ]
        self.writer.write(
            encode(
                {
                    "t": "init",
                    "name": self.name,
                    "class": self.config.class_path,
                    "args": dict(self.config.args),
                    "sys_path": [p for p in sys.path if p],
                    "memory_limit": self.settings["memory_limit"],
                    "cpu_limit": self.settings["cpu_limit"],
                }
            )
        )
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except asyncio.TimeoutError:
            raise ProcessDied(f"child did not start within {START_TIMEOUT:g}s") from None

    def info(self) -> dict[str, Any]:
        return {"pid": self.proc.pid if self.proc else None}

    def _protocol_error(self, exc: FrameError) -> None:
        log.event("protocol_error", actor=self.name, category="system", msg=str(exc))
        self._kill("protocol")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        call_id = message.get("id")
        if kind == "ready":
            if not self._ready.done():
                self._ready.set_result(message)
        elif kind == "start_failed":
            if not self._ready.done():
                self._ready.set_exception(_exception(message))
        elif kind == "not_started" and call_id in self._calls:
            future = self._calls.pop(call_id)
            if not future.done():
                future.set_exception(NotStarted(bool(message.get("expired"))))
        elif kind in ("result", "error", "cancelled") and call_id in self._calls:
            future = self._calls.pop(call_id)
            if future.done():
                return
            if kind == "result":
                if "unserializable" in message:
                    future.set_result(Unserializable(message["unserializable"]))
                else:
                    future.set_result(message.get("value"))
            elif kind == "error":
                future.set_exception(_exception(message))
            else:
                future.cancel()
            if "late" in message:
                self.late_answers.mark(future)
        elif call_id in self._streams:
            queue = self._streams[call_id]
            if kind == "chunk":
                queue.put_nowait(("chunk", message.get("data")))
            elif kind == "error":
                queue.put_nowait(("error", _exception(message)))
            elif kind in ("end", "cancelled"):
                queue.put_nowait(("end", None))
        elif kind == "exited":
            payload = message.get("error")
            if not self.exited.done():
                cause = None if payload is None else _exception(payload)
                self.exited.set_result(Exit("run", cause))
        elif kind == "stopped" and not self._stopped.done():
            self._stopped.set_result(None)
        elif kind == "log" and self._log is not None:
            self._log.write("log", str(message.get("text", "")))

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                line = b"<line too long>\n"
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            if self._log is not None:
                self._log.write(name, text)
                log.event("output", actor=self.name, stream=name, level=logging.DEBUG, msg=text)
            else:  # no actor log (a host made outside a cell): the daemon's log has it
                log.event("output", actor=self.name, stream=name, level=logging.INFO, msg=text)

    async def _wait(self) -> None:
        assert self.proc is not None
        returncode = await self.proc.wait()
        text = describe_exit(returncode, self.settings["memory_limit"], self.settings["cpu_limit"])
        if self._kill_cause == "timeout":
            text = f"killed at an op's deadline (kill_on_timeout); {text}"
        died = ProcessDied(text, where=self._kill_cause or "process")
        if not self._ready.done():
            self._ready.set_exception(died)
        # The first op still unanswered may have run: its outcome is unknown. The child
        # runs asks in order, so the ones behind it never started.
        lost: BaseException = ProcessLost(text, where=died.where)
        for future in self._calls.values():
            if not future.done():
                future.set_exception(lost)
                lost = NotStarted(expired=False)
        self._calls.clear()
        for queue in self._streams.values():
            queue.put_nowait(("error", died))
        if not self.exited.done():
            where = "timeout" if self._kill_cause == "timeout" else "process"
            self.exited.set_result(Exit(where, None if self._stopping else died))
        if not self._stopped.done():
            self._stopped.set_result(None)
        if not self._stopping:
            log.event(
                "process_exit",
                actor=self.name,
                category="system",
                level=logging.WARNING,
                pid=self.proc.pid,
                msg=text,
            )

    def _kill(self, cause: str) -> None:
        self._kill_cause = self._kill_cause or cause
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> bool:
        """Signal the child unless it has exited. False when it had."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        try:
            os.kill(self.proc.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def _send(self, message: dict[str, Any]) -> None:
        outbox = self._outbox
        if outbox is None or outbox.writer.is_closing():
            raise ProcessDied("the child process is gone")
        outbox.put(encode(message))

    # ------------------------------------------------------------------ ops
    def invoke(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        info = resolve_op(self.cls, op, OpKind.ASK)
        if info is not None:
            bind_arguments(info, args, kwargs)
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[self._next_id] = future
        self._send(
            {"t": "call", "id": self._next_id, "op": op, "args": args, "kwargs": kwargs,
             "deadline": call_deadline.get()}
        )  # fmt: skip
        return future

    def send_now(self) -> None:
        """The frames queued so far go out now, not at the end of the loop iteration:
        the cell is about to wait for the first answer."""
        if self._outbox is not None:
            self._outbox.flush()

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        """Take back an ask sent ahead: the child answers "not started" unless it has
        started it (then its answer comes as usual)."""
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is None or running.done():
            return
        try:
            self._send({"t": "withdraw", "id": call_id, "expired": expired})
        except ProcessDied:
            pass  # the child is gone: _wait answers every call

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        info = resolve_op(self.cls, op, OpKind.STREAM)
        if info is not None:
            bind_arguments(info, args, kwargs)
        self._next_id += 1
        call_id = self._next_id
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._streams[call_id] = queue
        self._send({"t": "stream", "id": call_id, "op": op, "args": args, "kwargs": kwargs})
        return self._chunks(call_id, queue)

    async def _chunks(
        self, call_id: int, queue: asyncio.Queue[tuple[str, Any]]
    ) -> AsyncIterator[Any]:
        try:
            async for chunk in queued_chunks(queue):
                yield chunk
        finally:
            self._streams.pop(call_id, None)

    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        if self.settings["kill_on_timeout"]:
            self._kill("timeout")
            if self.proc is not None:
                await self.proc.wait()
            await asyncio.wait((self.exited,), timeout=STOP_GRACE)
            if running.done() and not running.cancelled():
                running.exception()  # ProcessDied; the caller already has its timeout
            return True
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is not None:
            try:
                self._send({"t": "cancel", "id": call_id})
            except ProcessDied:
                return True
        return await ended_within(running, CANCEL_GRACE)

    async def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            steps: list[tuple[int | None, float]] = [(signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)]
            if graceful:
                try:
                    self._send({"t": "stop"})
                    await asyncio.wait_for(asyncio.shield(self._stopped), STOP_GRACE)
                except (ProcessDied, asyncio.TimeoutError, ConnectionError):
                    pass
                steps.insert(0, (None, 2.0))  # it said "stopped": let it exit on its own
            for signum, wait in steps:
                if proc.returncode is not None:
                    break
                if signum is not None and not self._signal(signum):
                    break
                try:
                    await asyncio.wait_for(proc.wait(), wait)
                except asyncio.TimeoutError:
                    continue
        if self.writer is not None:
            self.writer.close()
        if proc is not None and proc.returncode is not None:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.exited.done():
            self.exited.set_result(Exit("process"))
