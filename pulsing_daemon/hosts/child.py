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
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from pulsing_daemon.eventloop import thread_clock
from pulsing_daemon.exceptions import is_failure
from pulsing_daemon.hosts.child_io import (
    FrameSink,
    apply_limits,
    capture_logging,
    describe_exception,
    die_with_parent,
)
from pulsing_daemon.hosts.framing import FrameError, FrameReader, encode
from pulsing_daemon.hosts.threads import (
    SYNC_BATCH,
    LoopPost,
    SyncCall,
    SyncCallState,
    loop_post,
)

if TYPE_CHECKING:
    from pulsing_daemon.hosts.inline import BoundCall

# A reader thread runs an ask itself only when the child looks idle: no frame behind
# it already read, and the loop has answered no ask for this long. Asks that come in a
# run (load) go to the loop, which runs them in batches on an op thread: under load
# that costs less CPU per ask than one write and one hand-over per ask.
LOOP_BUSY = 0.0005


class Child:
    """The child's side of the frames.

    Two reader threads take turns reading the socket (leader/follower). An ask that
    finds the child idle -- nothing running or queued, no run of asks coming in
    (``LOOP_BUSY``) -- and is a sync op runs on the thread that read it, right away,
    and its answer is written from there: no hop to the event loop and to an op
    thread and back. While it runs, a frame that comes wakes the other thread (an
    epoll armed for as long as the op runs), which takes the turn to read: an ask
    sent ahead behind a long op can be withdrawn unstarted, a cancel or a stop
    arrives. A short op wakes nobody. Every other frame goes to the event loop,
    which queues the asks and runs them in order (``_run_calls``), after the one a
    reader thread runs.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.frames = FrameReader(sock)
        self.sink = FrameSink(sock)
        self.host: Any = None
        self.tasks: dict[int, asyncio.Future[Any]] = {}
        self.memory_limit: int | None = None
        # Asks run one at a time, in the order they came (the daemon sends them ahead).
        # Those the loop runs: (call message), in order.
        self.calls: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self.calls_ready = asyncio.Event()
        self.batch: dict[int, SyncCall] = {}  # the sync asks of the batch being run
        self.failed = False  # an op failed the instance: start nothing more
        # Shared by the reader threads and the loop, under ``state``:
        self.state = threading.Lock()
        self.turn: int | None = None  # the reader thread whose turn it is to read
        # Armed (the socket) while a reader thread runs an ask: wakes the other one.
        # Without epoll (not Linux), one reader thread gives every frame to the loop.
        self.watch = select.epoll() if hasattr(select, "epoll") else None
        self.closed = False  # the stream ended: the reader threads stop
        self.direct: int | None = None  # the ask a reader thread is running
        self.queued = 0  # asks given to the loop and not answered yet
        self.loop_answered = -math.inf  # when the loop last answered an ask
        self.direct_ended = asyncio.Event()  # set when the loop waits for ``direct``
        self.ended: asyncio.Future[int] | None = None  # serve's exit code
        self.stopping: asyncio.Future[None] | None = None

    def encode(self, message: dict[str, Any]) -> bytes | None:
        try:
            return encode(message)
        except FrameError as exc:
            if "id" not in message:
                return None
            return encode(
                {"t": "error", "id": message["id"], "type": "FrameError", "message": str(exc)}
            )

    def send(self, message: dict[str, Any]) -> None:
        """Loop thread: queue a frame; the frames of one loop iteration go out in one
        write."""
        frame = self.encode(message)
        if frame is not None:
            self.sink.put(frame)

    def send_now(self, message: dict[str, Any]) -> None:
        """Any thread: write a frame now."""
        frame = self.encode(message)
        if frame is not None:
            self.sink.send(frame)

    def reply(self, message: dict[str, Any]) -> None:
        """Loop thread: the one answer to an ask the loop was given."""
        self.send(message)
        self._answered()

    def _answered(self) -> None:
        """Loop thread: an ask given to the loop has its answer queued."""
        with self.state:
            self.queued -= 1
            self.loop_answered = time.monotonic()

    def _prepare(self, message: dict[str, Any]) -> BoundCall:
        """The ask of a call frame, resolved and bound (raises what refuses it)."""
        return self.host.prepare(  # type: ignore[no-any-return]
            message["op"], message.get("args") or [], message.get("kwargs") or {}
        )

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            init = await loop.run_in_executor(None, self.frames.read)
        except FrameError:
            return 2
        if init is None or init.get("t") != "init":
            return 2
        from pulsing_daemon.hosts.inline import InlineHost

        self.memory_limit = init.get("memory_limit")
        capture_logging(self)
        try:
            from pulsing_daemon.config_classes import import_class, prepend_sys_path

            prepend_sys_path(init.get("sys_path") or [])
            apply_limits(init.get("memory_limit"), init.get("cpu_limit"))

            cls = import_class(init["class"])
            self.host = InlineHost(cls, init.get("args") or {}, init.get("name", "actor"))
            await self.host.start()
        except BaseException as exc:  # a failed start: report, then exit
            self.send({"t": "start_failed", **describe_exception(exc, self.memory_limit)})
            self.sink.flush()  # the child exits next
            return 1
        self.host.exited.add_done_callback(self._instance_exited)
        self.send({"t": "ready", "pid": os.getpid()})
        self.ended = loop.create_future()
        post = loop_post(loop)
        for _ in range(1 if self.watch is None else 2):
            threading.Thread(
                target=self._read_turns, args=(post,), name="pulsing-child-reader", daemon=True
            ).start()
        runner = asyncio.ensure_future(self._run_calls())
        try:
            return await self.ended
        finally:
            runner.cancel()

    # ------------------------------------------------------------ reader threads
    def _read_turns(self, post: LoopPost) -> None:
        """A reader thread: take the turn to read when it is free, else watch (see
        ``_watch``); read until an ask to run here comes, run it, answer it; until
        the stream ends."""
        state = self.state
        me = threading.get_ident()
        while True:
            with state:
                if self.closed:
                    return
                if self.turn is None:
                    self.turn = me
                mine = self.turn == me
            if not mine:
                self._watch()
                continue
            taken = self._read_until_direct(post)
            if taken is None:
                return
            self._run_direct(post, *taken)

    def _watch(self) -> None:
        """The thread without the turn to read: wait until a frame comes while the
        other one runs an ask (``_run_direct`` arms the watch for as long as the op
        runs), then take the turn. A short op ends with no frame come: nobody woke,
        the thread that ran it goes on reading."""
        assert self.watch is not None
        self.watch.poll()
        with self.state:
            if self.direct is not None:  # the op still runs: read for its thread
                self.turn = threading.get_ident()

    def _read_until_direct(self, post: LoopPost) -> tuple[int, BoundCall, float | None] | None:
        """Read frames, giving each to the loop, until one is an ask to run on this
        thread (returned). None at the end of the stream."""
        state = self.state
        while True:
            code = 0
            try:
                message = self.frames.read()
            except FrameError:
                message, code = None, 2
            if message is None:  # the daemon is gone (or spoke nonsense)
                with state:
                    self.closed = True
                post.post(self._end, code)
                return None
            is_call = message.get("t") == "call"
            with state:
                taken = self._take_direct(message) if is_call else None
                if taken is not None:
                    return taken
                if is_call:
                    self.queued += 1
            post.post(self._handle, message)

    def _take_direct(self, message: dict[str, Any]) -> tuple[int, BoundCall, float | None] | None:
        """(Under ``state``.) The ask to run on this thread now: a sync op, with
        nothing running or queued before it, the instance not failed, its deadline
        not passed, and the child idle (``LOOP_BUSY``). Anything else goes to the
        loop (which answers it as it should)."""
        if self.direct is not None or self.queued or self.failed or self.watch is None:
            return None
        if self.frames.buffer or time.monotonic() - self.loop_answered < LOOP_BUSY:
            return None  # asks in a run: the loop batches them
        deadline = message.get("deadline")
        if _past(deadline):
            return None  # not started, expired: the loop answers it
        try:
            bound = self._prepare(message)
        except BaseException:
            return None
        if bound.is_async:
            return None
        self.direct = message["id"]
        return message["id"], bound, deadline

    def _run_direct(
        self, post: LoopPost, call_id: int, bound: BoundCall, deadline: float | None
    ) -> None:
        """Run an ask on the reader thread; the other thread reads if a frame comes
        meanwhile (the watch is armed while the op runs)."""
        assert self.watch is not None
        fd = self.frames.sock.fileno()
        self.watch.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        value = error = None
        try:
            value = bound.method(*bound.args, **bound.kwargs)
        except BaseException as exc:
            error = exc
        finally:
            self.watch.unregister(fd)  # before the answer: the daemon wakes to a child
            # that is about to block, with little left to do on this CPU
        frame = self._outcome(call_id, value, error, _past(deadline))
        # Answered before the next ask may start: answers go out in the order run.
        self.sink.send(frame)
        with self.state:
            if error is not None and is_failure(error):
                self.failed = True
            self.direct = None
            waiting = self.queued > 0
        if waiting:
            post.post(self.direct_ended.set)

    def _outcome(self, call_id: int, value: Any, error: BaseException | None, late: bool) -> bytes:
        """The answer frame of an ask that ran; ``late`` when its op ended past the
        ask's deadline (on time.monotonic, the clock of the daemon's loop): the daemon
        answers the caller's deadline then, however soon it reads this frame."""
        head: dict[str, Any] = {"id": call_id, "late": True} if late else {"id": call_id}
        frame: bytes | None
        if error is not None:
            described = describe_exception(error, self.memory_limit)
            frame = self.encode({"t": "error", **head, **described})
        else:
            try:
                frame = self.encode({"t": "result", **head, "value": value})
            except (TypeError, ValueError) as err:
                frame = self.encode({"t": "result", **head, "unserializable": str(err)})
        assert frame is not None  # an answer has an id
        return frame

    # ------------------------------------------------------------ the loop
    def _end(self, code: int) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(code)

    def _handle(self, message: dict[str, Any]) -> None:
        """A frame the reader threads gave to the loop."""
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
                self.reply({"t": "not_started", "id": call_id, "expired": message["expired"]})
        elif kind == "stream":
            self.tasks[message["id"]] = asyncio.ensure_future(self._stream(message))
        elif kind == "cancel":
            task = self.tasks.get(message["id"])
            if isinstance(task, asyncio.Task):
                task.cancel()
        elif kind == "stop":
            self.stopping = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        await self.host.stop(graceful=True)
        self.send({"t": "stopped"})
        self.sink.flush()  # the child exits next
        self._end(0)

    def _instance_exited(self, done: asyncio.Future[Any]) -> None:
        error = done.result().cause
        payload = None if error is None else describe_exception(error, self.memory_limit)
        self.send({"t": "exited", "error": payload})

    async def _run_calls(self) -> None:
        """Run the asks given to the loop in the order they came, one at a time, each
        after the one a reader thread runs. One whose deadline passed before its turn,
        or that comes after an op that failed the instance, is answered "not started":
        the daemon answers it as never executed, or gives it to the next instance. A
        sync op and the sync asks queued right behind it go to an op thread in one
        batch, as in the daemon (``hosts.threads.run_sync_batch``)."""
        while True:
            while not self.calls:
                self.calls_ready.clear()
                await self.calls_ready.wait()
            while self.direct is not None:  # the reader thread's ask first
                self.direct_ended.clear()
                if self.direct is None:
                    break
                await self.direct_ended.wait()
            call_id, message = self.calls.popitem(last=False)
            deadline = message.get("deadline")
            if self.failed or _past(deadline):
                self.reply({"t": "not_started", "id": call_id, "expired": not self.failed})
                continue
            try:
                prepared = self._prepare(message)
                if prepared.is_async:
                    running = asyncio.ensure_future(prepared.start())
                else:
                    await self._run_batch(call_id, message, prepared)
                    continue
            except BaseException as exc:
                self.reply({"t": "error", "id": call_id, **describe_exception(exc)})
                continue
            self.tasks[call_id] = running
            await asyncio.wait((running,))
            self._answer(call_id, _past(deadline), running)

    async def _run_batch(self, call_id: int, message: dict[str, Any], first: Any) -> None:
        """Run a sync ask and the sync asks queued right behind it in one trip to an op
        thread; each is answered as it ends. A member withdrawn before it started is
        answered "not started" at once (``batch``); one whose deadline passed before
        its turn, or left behind by a member that failed the instance, after the batch."""
        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        clock = thread_clock(loop)  # read on the op thread

        def sync_call(bound: Any, deadline: float | None) -> SyncCall:
            return SyncCall(
                bound.method,
                bound.args,
                bound.kwargs,
                math.inf if deadline is None else deadline,
                loop.create_future(),
                lock,
                clock,
            )

        members = [(call_id, sync_call(first, message.get("deadline")))]
        while len(members) < SYNC_BATCH and self.calls:
            next_id, queued = next(iter(self.calls.items()))
            try:
                bound = self._prepare(queued)
            except BaseException:
                break  # answered when its turn comes
            if bound.is_async:
                break
            del self.calls[next_id]
            members.append((next_id, sync_call(bound, queued.get("deadline"))))
        self.batch = dict(members)
        for member_id, call in members:
            call.future.add_done_callback(functools.partial(self._answer_member, member_id, call))
        try:
            await self.host.run_batch([call for _, call in members])
        finally:
            left, self.batch = self.batch, {}
            for member_id, call in left.items():
                expired = call.state is SyncCallState.EXPIRED
                # Not started (expired, left behind by a failure, or the batch given up
                # at shutdown): it never will be. One running now still answers.
                if not call.future.done() and call.hold():
                    self.reply({"t": "not_started", "id": member_id, "expired": expired})

    def _answer_member(self, call_id: int, call: SyncCall, done: asyncio.Future[Any]) -> None:
        self._answer(call_id, call.ended_late, done)  # as the op thread saw its end

    def _answer(self, call_id: int, late: bool, done: asyncio.Future[Any]) -> None:
        self.tasks.pop(call_id, None)
        if done.cancelled():
            frame = self.encode({"t": "cancelled", "id": call_id})
        else:
            exc = done.exception()
            if exc is not None:
                self.failed = self.failed or is_failure(exc)
            frame = self._outcome(call_id, None if exc is not None else done.result(), exc, late)
        assert frame is not None
        self.sink.put(frame)
        self._answered()

    async def _stream(self, message: dict[str, Any]) -> None:
        call_id = message["id"]
        try:
            chunks = self.host.produce(
                message["op"], message.get("args") or [], message.get("kwargs") or {}
            )
            async for chunk in chunks:
                self.send({"t": "chunk", "id": call_id, "data": chunk})
        except asyncio.CancelledError:
            self.send({"t": "cancelled", "id": call_id})
        except BaseException as exc:
            self.send({"t": "error", "id": call_id, **describe_exception(exc, self.memory_limit)})
        else:
            self.send({"t": "end", "id": call_id})
        finally:
            self.tasks.pop(call_id, None)


def _past(deadline: float | None) -> bool:
    """An ask's deadline (None: none) has passed. It is on the daemon loop's clock,
    ``time.monotonic`` (uvloop's cut to the millisecond), which is this process's loop
    clock too and may be read from any thread."""
    return deadline is not None and time.monotonic() >= deadline


async def _watch_parent(parent: int) -> None:
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


async def main(fd: int, parent: int) -> int:
    sock = socket.socket(fileno=fd)
    watcher = asyncio.ensure_future(_watch_parent(parent))
    try:
        return await Child(sock).serve()
    finally:
        watcher.cancel()


if __name__ == "__main__":
    die_with_parent()
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
