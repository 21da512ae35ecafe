"""The child side of ``isolation = "process"``:
``python -m pulsing_daemon.hosts.child --fd N``.

Hosts one actor instance with the same ``InlineHost`` the daemon uses in-process, and
speaks length-prefixed JSON frames (``pulsing_daemon.hosts.framing``) over an inherited
socket. Exits when the daemon goes away: end of the socket, a parent-death signal
(Linux), or a changed parent pid.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import logging
import math
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from pulsing_daemon.exceptions import PulsingError, is_failure
from pulsing_daemon.hosts.framing import FrameError, Outbox, encode, read_frame
from pulsing_daemon.hosts.threads import SyncCall, SyncCallState

# Sync asks run back to back in one trip to an op thread (as batching.SYNC_BATCH).
BATCH = 64


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the daemon dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:
            pass


def _apply_limits(memory_limit: int | None, cpu_limit: float | None) -> None:
    import resource

    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    if cpu_limit:
        seconds = max(1, int(cpu_limit + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def describe_exception(exc: BaseException, memory_limit: int | None = None) -> dict[str, Any]:
    """An exception as a frame field: Pulsing errors keep their envelope; a failure
    carries its traceback (the daemon shows it in status and logs)."""
    described: dict[str, Any]
    if isinstance(exc, PulsingError):
        described = {"wire": exc.to_wire()}
    else:
        message = str(exc)
        if isinstance(exc, MemoryError) and memory_limit:
            message = f"memory_limit of {memory_limit} bytes exceeded" + (
                f" ({message})" if message else ""
            )
        described = {"type": type(exc).__name__, "message": message}
    if is_failure(exc) and exc.__traceback__ is not None:
        described["traceback"] = "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)
        )
    return described


class _FrameLogHandler(logging.Handler):
    """The child's ``logging`` records go to the daemon as ``log`` frames (any thread)."""

    def __init__(self, child: Child, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.child = child
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = {"t": "log", "text": self.format(record)}
            if threading.get_ident() == self.loop_thread:
                self.child.send(frame)
            else:
                self.loop.call_soon_threadsafe(self.child.send, frame)
        except Exception:
            self.handleError(record)


def _capture_logging(child: Child) -> None:
    root = logging.getLogger()
    if not root.handlers and root.level == logging.WARNING:
        root.setLevel(logging.INFO)
    root.addHandler(_FrameLogHandler(child, asyncio.get_running_loop()))


class Child:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.host: Any = None
        self.tasks: dict[int, asyncio.Future[Any]] = {}
        self.memory_limit: int | None = None
        # Asks run one at a time, in the order they came (the daemon sends them ahead):
        # (call message, withdrawn as expired: None while still wanted).
        self.calls: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self.calls_ready = asyncio.Event()
        self.batch: dict[int, SyncCall] = {}  # the sync asks of the batch being run
        self.failed = False  # an op failed the instance: start nothing more
        self.outbox = Outbox(writer)

    def send(self, message: dict[str, Any]) -> None:
        """Queue a frame; the frames of one loop iteration go out in one write."""
        try:
            frame = encode(message)
        except FrameError as exc:
            if "id" not in message:
                return
            frame = encode(
                {"t": "error", "id": message["id"], "type": "FrameError", "message": str(exc)}
            )
        self.outbox.put(frame)

    async def drain(self) -> None:
        """Write the queued frames now, then wait while the socket is full."""
        self.outbox.flush()
        await self.writer.drain()

    async def serve(self) -> int:
        init = await read_frame(self.reader)
        if init is None or init.get("t") != "init":
            return 2
        from pulsing_daemon.hosts.inline import InlineHost

        self.memory_limit = init.get("memory_limit")
        _capture_logging(self)
        try:
            for path in reversed(init.get("sys_path") or []):
                if path not in sys.path:
                    sys.path.insert(0, path)
            _apply_limits(init.get("memory_limit"), init.get("cpu_limit"))
            from pulsing_daemon.config_classes import import_class

            cls = import_class(init["class"])
            self.host = InlineHost(cls, init.get("args") or {}, init.get("name", "actor"))
            await self.host.start()
        except BaseException as exc:  # a failed start: report, then exit
            self.send({"t": "start_failed", **describe_exception(exc, self.memory_limit)})
            await self.drain()
            return 1
        self.host.exited.add_done_callback(self._instance_exited)
        self.send({"t": "ready", "pid": os.getpid()})
        runner = asyncio.ensure_future(self._run_calls())
        try:
            return await self._read_messages()
        finally:
            runner.cancel()

    async def _read_messages(self) -> int:
        while True:
            try:
                message = await read_frame(self.reader)
            except FrameError:
                return 2
            if message is None:  # the daemon is gone
                return 0
            kind = message.get("t")
            if kind == "call":
                self.calls[message["id"]] = message
                self.calls_ready.set()
            elif kind == "withdraw":
                call_id = message["id"]
                taken = self.calls.pop(call_id, None) is not None  # not started: never will
                if not taken and call_id in self.batch and self.batch[call_id].hold():
                    del self.batch[call_id]  # in a batch, not started: it never will
                    taken = True
                if taken:
                    self.send({"t": "not_started", "id": call_id, "expired": message["expired"]})
            elif kind == "stream":
                self.tasks[message["id"]] = asyncio.ensure_future(self._stream(message))
            elif kind == "cancel":
                task = self.tasks.get(message["id"])
                if isinstance(task, asyncio.Task):
                    task.cancel()
            elif kind == "stop":
                await self.host.stop(graceful=True)
                self.send({"t": "stopped"})
                await self.drain()
                return 0
            await self.drain()

    def _instance_exited(self, done: asyncio.Future[Any]) -> None:
        error = done.result().cause
        payload = None if error is None else describe_exception(error, self.memory_limit)
        self.send({"t": "exited", "error": payload})

    async def _run_calls(self) -> None:
        """Run the asks in the order they came, one at a time. One whose deadline passed
        before its turn, or that comes after an op that failed the instance, is answered
        "not started": the daemon answers it as never executed, or gives it to the next
        instance. A sync op and the sync asks queued right behind it go to an op thread
        in one batch, as in the daemon (``hosts.threads.run_sync_batch``)."""
        loop = asyncio.get_running_loop()
        while True:
            while not self.calls:
                self.calls_ready.clear()
                await self.calls_ready.wait()
            call_id, message = self.calls.popitem(last=False)
            deadline = message.get("deadline")
            if self.failed or (deadline is not None and loop.time() >= deadline):
                self.send({"t": "not_started", "id": call_id, "expired": not self.failed})
                await self.drain()
                continue
            try:
                prepared = self.host.prepare(
                    message["op"], message.get("args") or [], message.get("kwargs") or {}
                )
                if prepared.is_async:
                    running = asyncio.ensure_future(prepared.start())
                else:
                    await self._run_batch(call_id, message, prepared)
                    continue
            except BaseException as exc:
                self.send({"t": "error", "id": call_id, **describe_exception(exc)})
                await self.drain()
                continue
            self.tasks[call_id] = running
            await asyncio.wait((running,))
            self._answer(call_id, running)
            await self.drain()

    async def _run_batch(self, call_id: int, message: dict[str, Any], first: Any) -> None:
        """Run a sync ask and the sync asks queued right behind it in one trip to an op
        thread; each is answered as it ends. A member withdrawn before it started is
        answered "not started" at once (``batch``); one whose deadline passed before
        its turn, or left behind by a member that failed the instance, after the batch."""
        loop = asyncio.get_running_loop()
        lock = threading.Lock()

        def sync_call(bound: Any, deadline: float | None) -> SyncCall:
            return SyncCall(
                bound.method,
                bound.args,
                bound.kwargs,
                math.inf if deadline is None else deadline,
                loop.create_future(),
                lock,
                loop.time,
            )

        members = [(call_id, sync_call(first, message.get("deadline")))]
        while len(members) < BATCH and self.calls:
            next_id, queued = next(iter(self.calls.items()))
            try:
                bound = self.host.prepare(
                    queued["op"], queued.get("args") or [], queued.get("kwargs") or {}
                )
            except BaseException:
                break  # answered when its turn comes
            if bound.is_async:
                break
            del self.calls[next_id]
            members.append((next_id, sync_call(bound, queued.get("deadline"))))
        self.batch = dict(members)
        for member_id, call in members:
            call.future.add_done_callback(functools.partial(self._answer, member_id))
        try:
            await self.host.run_batch([call for _, call in members])
        finally:
            left, self.batch = self.batch, {}
            for member_id, call in left.items():
                expired = call.state is SyncCallState.EXPIRED
                # Not started (expired, left behind by a failure, or the batch given up
                # at shutdown): it never will be. One running now still answers.
                if not call.future.done() and call.hold():
                    self.send({"t": "not_started", "id": member_id, "expired": expired})
        await self.drain()

    def _answer(self, call_id: int, done: asyncio.Future[Any]) -> None:
        self.tasks.pop(call_id, None)
        if done.cancelled():
            self.send({"t": "cancelled", "id": call_id})
            return
        exc = done.exception()
        if exc is not None:
            self.failed = self.failed or is_failure(exc)
            self.send({"t": "error", "id": call_id, **describe_exception(exc, self.memory_limit)})
            return
        value = done.result()
        try:
            self.send({"t": "result", "id": call_id, "value": value})
        except (TypeError, ValueError) as err:
            self.send({"t": "result", "id": call_id, "unserializable": str(err)})

    async def _stream(self, message: dict[str, Any]) -> None:
        call_id = message["id"]
        try:
            chunks = self.host.produce(
                message["op"], message.get("args") or [], message.get("kwargs") or {}
            )
            async for chunk in chunks:
                self.send({"t": "chunk", "id": call_id, "data": chunk})
                await self.drain()
        except asyncio.CancelledError:
            self.send({"t": "cancelled", "id": call_id})
        except BaseException as exc:
            self.send({"t": "error", "id": call_id, **describe_exception(exc, self.memory_limit)})
        else:
            self.send({"t": "end", "id": call_id})
        finally:
            self.tasks.pop(call_id, None)


async def _watch_parent(parent: int) -> None:
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


async def main(fd: int, parent: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    watcher = asyncio.ensure_future(_watch_parent(parent))
    try:
        return await Child(reader, writer).serve()
    finally:
        watcher.cancel()


if __name__ == "__main__":
    _die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m pulsing_daemon.hosts.child")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cpus", default="", help="CPUs to run on (a pinned daemon's own)")
    ns = parser.parse_args()
    if os.getppid() != ns.parent:
        sys.exit(0)
    if ns.cpus:
        try:
            os.sched_setaffinity(0, {int(cpu) for cpu in ns.cpus.split(",")})
        except (OSError, ValueError):
            pass  # a CPU went away meanwhile: run where the daemon does
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
    # Line by line: the daemon records each line as the actor writes it.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    code = asyncio.run(main(ns.fd, ns.parent))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for op threads still blocked in user code
