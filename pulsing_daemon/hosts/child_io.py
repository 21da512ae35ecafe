"""What the process child (``hosts/child.py``) needs around its frames: the process
set-up (parent-death signal, resource limits), exceptions described as frame fields,
``logging`` records sent as frames, and the one writer of frames to the daemon."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from pulsing_daemon.exceptions import PulsingError, is_failure

if TYPE_CHECKING:
    from pulsing_daemon.hosts.child import Child


def die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the daemon dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:
            pass


def apply_limits(memory_limit: int | None, cpu_limit: float | None) -> None:
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


class FrameLogHandler(logging.Handler):
    """The child's ``logging`` records go to the daemon as ``log`` frames (any thread)."""

    def __init__(self, child: Child) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.child = child
        self.loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = {"t": "log", "text": self.format(record)}
            if threading.get_ident() == self.loop_thread:
                self.child.send(frame)
            else:
                self.child.send_now(frame)
        except Exception:
            self.handleError(record)


def capture_logging(child: Child) -> None:
    root = logging.getLogger()
    if not root.handlers and root.level == logging.WARNING:
        root.setLevel(logging.INFO)
    root.addHandler(FrameLogHandler(child))


class FrameSink:
    """Frames to the daemon, from the loop and from reader threads, in one order.

    The loop's frames of one iteration go out in one write (they come in runs: the
    answers of a batch, the asks a withdraw takes back); a thread's frame goes out at
    once, behind any the loop queued before it. Writes block (the socket is blocking:
    the reader threads read it); a write to a daemon that is gone is dropped."""

    __slots__ = ("frames", "lock", "open", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.frames: list[bytes] = []
        self.open = True

    def put(self, frame: bytes) -> None:
        """Loop thread: queue a frame, written at the end of this loop iteration."""
        with self.lock:
            self.frames.append(frame)
            first = len(self.frames) == 1
        if first:
            asyncio.get_running_loop().call_soon(self.flush)

    def send(self, frame: bytes) -> None:
        """Any thread: write a frame now."""
        with self.lock:
            self.frames.append(frame)
            self._write()

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        frames, self.frames = self.frames, []
        if frames and self.open:
            try:
                self.sock.sendall(frames[0] if len(frames) == 1 else b"".join(frames))
            except OSError:
                self.open = False  # the daemon is gone: the reader sees the end
