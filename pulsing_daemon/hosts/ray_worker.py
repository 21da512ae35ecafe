"""The worker side of ``isolation = "ray"``: the Ray actor that hosts one instance.

It hosts the instance with the same ``InlineHost`` the daemon uses in-process (as the
child of a process-isolated actor does) and answers in plain data: results as JSON
text, exceptions described as the child describes them (``child_io.describe_exception``:
a Pulsing error keeps its envelope, a failure carries its traceback). Nothing raised
here reaches Ray, so the daemon never has to unwrap a ``RayTaskError`` of ours.

Methods (all sync: a threaded Ray actor, ``call`` on one thread in order and the others
in concurrency groups of their own, see ``PulsingRayWorker``; the instance and its
async ops live on a loop of the worker's own):

``start``   import the class, construct it, run ``on_start``; an answer, never a raise
``call``    one ask; refused unstarted when its budget is already spent
``stream``  a streaming op, as a Ray streaming generator of chunk batches
``cancel``  take back an ask before its turn, or cancel an async op or a stream, by call id
``watch``   a streaming generator kept open for the instance's life: batches of the
            actor's output lines, then how ``run()`` ended; its failure tells the daemon
            the instance died while idle
``stop``    ``on_stop``; the daemon then kills the Ray actor
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pulsing_daemon.exceptions import PulsingSystemError, is_failure
from pulsing_daemon.hosts.child_io import describe_exception
from pulsing_daemon.hosts.threads import loop_post
from pulsing_daemon.wire import encode_utf8

BATCH = 64  # most chunks per streamed Ray object
RUN_AHEAD = 256  # chunks produced ahead of what was handed to Ray
ASYNC_SLACK = 0.5  # the daemon cancels an async op at its deadline; this is the backstop
LOG_LINES = 512  # most output lines per watch item


def described(exc: BaseException) -> dict[str, Any]:
    """``describe_exception``, and if even that cannot cross as JSON, a system error."""
    payload = describe_exception(exc)
    try:
        encode_utf8(payload)
    except (TypeError, ValueError) as err:
        name = type(exc).__name__
        payload = describe_exception(
            PulsingSystemError(
                f"{name} raised by the op could not be sent back from the Ray worker "
                f"(not JSON: {err}): {exc!s}"[:2000]
            )
        )
    return payload


def _encode_answer(answer: dict[str, Any]) -> bytes:
    try:
        return encode_utf8(answer).encode()
    except (TypeError, ValueError) as err:  # a result JSON cannot carry
        kept = {k: answer[k] for k in ("id", "t") if k in answer}
        return encode_utf8({"unserializable": str(err), **kept}).encode()


class _Lines(io.TextIOBase):
    """sys.stdout / sys.stderr of the worker: each complete line goes to the daemon."""

    def __init__(self, worker: _Core, stream: str) -> None:
        self.worker = worker
        self.stream = stream
        self.partial = ""
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            self.partial += text
            *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.worker.output(self.stream, line)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            line, self.partial = self.partial, ""
        if line:
            self.worker.output(self.stream, line)


class _LogHandler(logging.Handler):
    def __init__(self, worker: _Core) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("ray"):
            return  # Ray's own records are not the actor's
        try:
            self.worker.output("log", self.format(record))
        except Exception:
            self.handleError(record)


class _Core:
    """The worker's asyncio side, on its own loop thread: the hosted instance, its output
    lines, async ops and streams. Kept off the Ray actor class, whose methods are all
    sync (see :class:`PulsingRayWorker`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.host: Any = None
        self.tasks: dict[int, asyncio.Future[Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lines: list[tuple[str, str]] = []
        self._lines_ready: asyncio.Event | None = None

    # ----------------------------------------------------------------- output
    def output(self, stream: str, text: str) -> None:
        """Any thread: one line the actor wrote (kept until ``watch`` hands it over)."""
        loop = self.loop
        if loop is None:
            return
        if len(self._lines) < 100_000:
            self._lines.append((stream, text))
        if threading.get_ident() == self._loop_thread:
            self._wake_lines()
        else:  # a sync op's thread: one wake-up of the loop for a burst of lines
            loop_post(loop).post(self._wake_lines)

    def _wake_lines(self) -> None:
        if self._lines_ready is not None:
            self._lines_ready.set()

    def _capture(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lines_ready = asyncio.Event()
        sys.stdout = _Lines(self, "stdout")  # type: ignore[assignment]
        sys.stderr = _Lines(self, "stderr")  # type: ignore[assignment]
        root = logging.getLogger()
        if root.level == logging.WARNING or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        root.addHandler(_LogHandler(self))

    # ----------------------------------------------------------------- lifecycle
    async def start(self, class_path: str, args: dict[str, Any]) -> dict[str, Any]:
        from pulsing_daemon.config_classes import import_class
        from pulsing_daemon.hosts.inline import InlineHost

        self._capture()
        info: dict[str, Any] = {"pid": os.getpid()}  # the node and Ray actor id: the worker's
        try:
            cls = import_class(class_path)
            self.host = InlineHost(cls, args, self.name)
            await self.host.start()
        except BaseException as exc:
            return {**info, "error": described(exc)}
        return {**info, "ok": True}

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        """Output lines as they come; at the end, how run() ended."""
        assert self._lines_ready is not None and self.host is not None
        exited = self.host.exited
        while True:
            if self._lines:
                lines, self._lines = self._lines[:LOG_LINES], self._lines[LOG_LINES:]
                yield {"lines": lines}
                continue
            if exited.done():
                error = exited.result()
                yield {"exited": None if error is None else described(error)}
                return
            self._lines_ready.clear()
            waiter = asyncio.ensure_future(self._lines_ready.wait())
            await asyncio.wait((waiter, exited), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def stop(self) -> bool:
        if self.host is not None:
            await self.host.stop(graceful=True)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        return True

    # ----------------------------------------------------------------- ops
    async def run_async(self, call_id: int, bound: Any, budget: float) -> dict[str, Any]:
        """An async op of an ask whose turn it is, cancelled at its budget plus
        ASYNC_SLACK (the daemon cancels it at the deadline; this is the backstop)."""
        task = asyncio.ensure_future(bound.start())
        self.tasks[call_id] = task
        try:
            await asyncio.wait((task,), timeout=budget + ASYNC_SLACK)
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        finally:
            self.tasks.pop(call_id, None)
        if task.cancelled():
            return {"cancelled": True}
        exc = task.exception()
        if exc is not None:
            return {"error": described(exc), "failure": is_failure(exc)}
        return {"value": task.result()}

    def cancel_task(self, call_id: int) -> None:
        task = self.tasks.get(call_id)
        if task is not None:
            task.cancel()

    async def stream(
        self, call_id: int, op: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """A streaming op as batches ``{"chunks": [json, ...]}``, ending with
        ``{"end": true}`` or ``{"error": ...}``. At most RUN_AHEAD chunks wait here, and
        Ray's generator backpressure bounds the batches in flight to the daemon."""
        try:
            chunks = self.host.produce(op, args, kwargs)
        except BaseException as exc:
            yield {"error": described(exc)}
            return
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(RUN_AHEAD)

        async def pump() -> None:
            try:
                async for chunk in chunks:
                    try:
                        text = encode_utf8(chunk)
                    except (TypeError, ValueError) as err:
                        raise PulsingSystemError(
                            f"{op} yielded a chunk that is not JSON: {err}", recoverable=False
                        ) from None
                    await queue.put(("chunk", text))
                await queue.put(("end", None))
            except asyncio.CancelledError:  # cancelled by the daemon: the stream ends here
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(("cancelled", None))
                raise
            except BaseException as exc:
                await queue.put(("error", described(exc)))
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except BaseException:
                        pass

        producer = asyncio.ensure_future(pump())
        self.tasks[call_id] = producer
        try:
            while True:
                kind, value = await queue.get()
                batch: list[str] = []
                while kind == "chunk":
                    batch.append(value)
                    if len(batch) >= BATCH or queue.empty():
                        break
                    kind, value = queue.get_nowait()
                if batch:
                    yield {"chunks": batch}
                    if kind == "chunk":
                        continue
                if kind == "end":
                    yield {"end": True}
                    return
                if kind == "error":
                    yield {"error": value}
                    return
                if kind == "cancelled":
                    return
        finally:
            producer.cancel()
            self.tasks.pop(call_id, None)


class PulsingRayWorker:
    """One actor instance on a Ray worker (created with max_restarts=0).

    A threaded Ray actor: every method is sync. ``call`` is in Ray's default concurrency
    group, one thread run in order (``allow_out_of_order_execution`` off): Ray's own
    queue hands the asks to that thread back to back, in the order the daemon sent them,
    as it does for a plain sync actor -- no thread hand-off between two asks. The other
    methods run on threads of their own groups (``GROUPS``), so a stream, the watch and
    a cancel are served while an ask runs. (An async Ray actor pays a hop from Ray's
    thread to its event loop and back on every call, which doubled the worker's CPU
    per ask.) The instance lives on a loop of its own (:class:`_Core`, on the
    ``pulsing-ray-loop`` thread); a sync op runs right on the ask's thread, which is a
    thread as the contract asks; an async op crosses to the loop."""

    # Concurrency groups besides the default one (``call``): how many threads each has,
    # and which methods run there. ``control`` is never held long but by ``watch``;
    # ``streams`` bounds the streams of one instance running at once.
    GROUPS = {"control": 4, "streams": 32}
    METHOD_GROUPS = {
        "start": "control",
        "stop": "control",
        "ping": "control",
        "cancel": "control",
        "watch": "control",
        "stream": "streams",
    }

    def __init__(self, name: str, sys_path: list[str]) -> None:
        self.name = name
        # Imported now, so that a warm spare's start only imports the actor's class.
        import pulsing_daemon.config
        import pulsing_daemon.hosts.inline  # noqa: F401
        from pulsing_daemon.config_classes import prepend_sys_path

        prepend_sys_path(sys_path)

        self.core = _Core(name)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run_loop() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        threading.Thread(target=run_loop, name="pulsing-ray-loop", daemon=True).start()
        ready.wait()
        # Asks run one at a time, in the order the daemon sent them: Ray's own queue of
        # the default concurrency group (one thread, in order). ``lock`` makes starting
        # an ask and withdrawing it (``cancel``) exclusive.
        self.lock = threading.Lock()
        self.reached = 0  # the id of the last ask that came to its turn
        self.withdrawn: dict[int, str] = {}  # ask id -> how it answers, never started
        self.failed = False  # an ask failed the instance: no further ask starts

    def _on_loop(self, coro: Any) -> Any:
        """Run ``coro`` on the instance's loop and wait for its value."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _iterate(self, agen: AsyncIterator[Any]) -> Iterator[Any]:
        """An async generator of the core, driven from this Ray thread, item by item."""
        finished = False
        try:
            while True:
                try:
                    item = self._on_loop(agen.__anext__())
                except StopAsyncIteration:
                    finished = True
                    return
                yield item
        finally:
            if not finished:  # closed by Ray, or failed: the async generator ends too
                asyncio.run_coroutine_threadsafe(agen.aclose(), self.loop)

    # ----------------------------------------------------------------- lifecycle
    def start(self, class_path: str, args: dict[str, Any]) -> dict[str, Any]:
        """Import the class, construct it, run ``on_start``; an answer, never a raise."""
        info: dict[str, Any] = {}
        try:
            import ray

            # Inside a Ray actor Ray is initialized; anywhere else (the worker's own
            # tests) asking for the runtime context would start a local Ray instance.
            if ray.is_initialized():
                context = ray.get_runtime_context()
                info["node"] = context.get_node_id()
                info["actor_id"] = context.get_actor_id()
        except Exception:  # pragma: no cover - always inside Ray here
            pass
        return {**self._on_loop(self.core.start(class_path, args)), **info}

    def watch(self) -> Iterator[dict[str, Any]]:
        """Output lines as they come; at the end, how run() ended."""
        yield from self._iterate(self.core.watch())

    def stop(self) -> bool:
        return bool(self._on_loop(self.core.stop()))

    # ----------------------------------------------------------------- ops
    def call(self, request: bytes) -> bytes:
        """One ask, or a batch of asks, as JSON bytes both ways (one bytes argument is
        Ray's cheapest to send: a third of the submit cost of five plain arguments).
        An ask holds ``id``, ``op``, ``args``, ``kwargs`` and ``budget``, the seconds
        left; a batch is a JSON array of asks, answered by an array of answers in the
        same order, each with its ``id`` (one Ray call for many asks: see
        ``hosts.ray.BATCH``).

        The daemon may send asks ahead; Ray runs the calls one at a time in the order
        sent (see the class), and a batch runs its asks in its order. An ask is never
        started when its budget is spent, when it was withdrawn (``cancel``) before its
        turn, or after an earlier ask failed the instance. The answer holds one of
        ``value``, ``unserializable``, ``error``, ``expired`` (not started: its
        deadline), ``not_started`` (not started: a failure before it, or taken back)
        or ``cancelled``; an ask that ran also gives ``t``, the seconds it took, and
        ``late`` when it ended past its budget (counted from its arrival here: an op
        ending within the send's transit after the daemon's deadline is not seen late)."""
        arrived = time.monotonic()  # budgets count from here, on this machine's clock
        message = json.loads(request)
        if isinstance(message, list):
            return b"[" + b",".join(self._one(m, arrived, True) for m in message) + b"]"
        return self._one(message, arrived, False)

    def _one(self, message: dict[str, Any], arrived: float, with_id: bool) -> bytes:
        deadline = arrived + message["budget"]
        call_id = message["id"]
        with self.lock:
            self.reached = call_id  # from here on, cancel cannot withdraw it
            reason = None
            if self.withdrawn:
                reason = self.withdrawn.pop(call_id, None)
                # Ids below this one: asks already answered, or streams.
                for stale in [k for k in self.withdrawn if k < call_id]:
                    del self.withdrawn[stale]
        answer: dict[str, Any]
        if reason is not None:
            answer = {reason: True}
        elif self.failed:
            answer = {"not_started": True}
        elif time.monotonic() >= deadline:
            answer = {"expired": True}
        else:
            started = time.perf_counter()
            answer = self._call(message, deadline - time.monotonic())
            answer["t"] = time.perf_counter() - started
            if time.monotonic() >= deadline and "cancelled" not in answer:
                answer["late"] = True  # the daemon answers its caller's deadline
            if "error" in answer and answer.pop("failure", False):
                self.failed = True  # the asks behind this one go to the next instance
        if with_id:
            answer["id"] = call_id
        return _encode_answer(answer)

    def _call(self, message: dict[str, Any], budget: float) -> dict[str, Any]:
        host = self.core.host
        try:
            bound = host.prepare(message["op"], message["args"], message["kwargs"])
        except BaseException as exc:
            return {"error": described(exc)}
        if bound.is_async:
            return self._on_loop(self.core.run_async(message["id"], bound, budget))  # type: ignore[no-any-return]
        # A sync op runs to its end, whatever the deadline, here on this Ray thread.
        try:
            value = bound.method(*bound.args, **bound.kwargs)
        except BaseException as exc:
            return {"error": described(exc), "failure": is_failure(exc)}
        return {"value": value}

    def cancel(self, call_id: int, reason: str = "expired") -> bool:
        """Take back an ask that has not come to its turn: it never starts and answers
        ``reason`` (``expired`` or ``not_started``); True then. Otherwise stop the
        running async op or stream of ``call_id``, if any."""
        if call_id in self.core.tasks:
            self.loop.call_soon_threadsafe(self.core.cancel_task, call_id)
            return False
        with self.lock:
            if call_id > self.reached:
                self.withdrawn[call_id] = reason
                return True
        return False

    def stream(
        self, call_id: int, op: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """A streaming op as batches of chunks (``_Core.stream``)."""
        yield from self._iterate(self.core.stream(call_id, op, args, kwargs))

    def ping(self) -> float:
        return time.time()


def remote_class(ray: Any) -> Any:
    """``PulsingRayWorker`` as a Ray actor class, its methods in their concurrency groups."""
    for method, group in PulsingRayWorker.METHOD_GROUPS.items():
        ray.method(concurrency_group=group)(getattr(PulsingRayWorker, method))
    return ray.remote(concurrency_groups=dict(PulsingRayWorker.GROUPS))(PulsingRayWorker)
