"""Child processes started without stalling the event loop.

The loop's own ``subprocess_exec`` forks under uvloop, and while the kernel copies the
page tables of the daemon's whole heap the loop waits: 4-5 ms with 50 MB resident,
~10 ms with 10,000 actors, on every start of a process-isolated actor, a reload's
config reader or a notify command. ``subprocess.Popen`` starts the child with vfork
(~0.5 ms). So the daemon starts its children with Popen, and the event loop reads
their pipes and learns of their exit (a pidfd, Linux 5.3 and later; elsewhere a
thread waits). :class:`Child` offers what the daemon uses of
``asyncio.subprocess.Process``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


class Child:
    """A started child: ``pid``, ``returncode`` (None while it runs), ``stdin`` (a
    stream writer), ``stdout`` and ``stderr`` (stream readers), for pipes; ``kill()``,
    ``wait()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL it (nothing when it has been reaped already)."""
        self.popen.kill()

    async def wait(self) -> int:
        """Its exit status, once it has exited (it is reaped then)."""
        return await asyncio.shield(self._exited)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd here: a thread waits instead
            threading.Thread(target=self._wait_blocking, args=(loop,), daemon=True).start()
            return

        def readable() -> None:  # the child has exited
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._set(self.popen.wait())

        loop.add_reader(pidfd, readable)

    def _wait_blocking(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self.popen.wait()
        try:
            loop.call_soon_threadsafe(self._set, code)
        except RuntimeError:  # the loop has closed (daemon exit)
            pass

    def _set(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)


async def start(
    args: Sequence[str],
    *,
    stdin: int | IO[Any] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    **popen: Any,
) -> Child:
    """Start ``args`` (``subprocess.Popen`` keywords in ``popen``); pipes (``PIPE``) are
    written and read by the event loop. Raises OSError when it cannot start."""
    loop = asyncio.get_running_loop()
    process = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, **popen)
    child = Child(process)
    try:
        if process.stdin is not None:
            child.stdin = await _writer(loop, process.stdin)
        if process.stdout is not None:
            child.stdout = await _reader(loop, process.stdout)
        if process.stderr is not None:
            child.stderr = await _reader(loop, process.stderr)
    except BaseException:
        process.kill()
        process.wait()
        raise
    child._watch(loop)
    return child


async def _writer(loop: asyncio.AbstractEventLoop, pipe: IO[bytes]) -> asyncio.StreamWriter:
    protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader())  # flow control for drain()
    transport, _ = await loop.connect_write_pipe(lambda: protocol, pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader
