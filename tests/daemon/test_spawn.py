"""spawn.start / spawn.Child: children started with Popen, their pipes read and their
exit learnt on the event loop (a pidfd, or a waiting thread where there is none)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from pulsing_daemon import spawn

BOUND = 10.0


def run(main: object) -> object:
    return asyncio.run(asyncio.wait_for(main, BOUND))  # type: ignore[arg-type]


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "thread"])
def test_output_and_exit_status(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)

    async def main() -> None:
        code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
        child = await spawn.start(
            [sys.executable, "-c", code], stdin=spawn.DEVNULL, stdout=spawn.PIPE, stderr=spawn.PIPE
        )
        assert child.stdout is not None and child.stderr is not None
        out, err, status = await asyncio.gather(
            child.stdout.read(), child.stderr.read(), child.wait()
        )
        assert (out, err, status, child.returncode) == (b"out\n", b"err\n", 3, 3)
        assert await child.wait() == 3  # again: the same status

    run(main())


def test_stdin_is_written_by_the_loop_and_stderr_can_join_stdout() -> None:
    async def main() -> None:
        code = "import sys; data = sys.stdin.read(); print(len(data)); print('e', file=sys.stderr)"
        child = await spawn.start(
            [sys.executable, "-c", code], stdin=spawn.PIPE, stdout=spawn.PIPE, stderr=spawn.STDOUT
        )
        assert child.stdin is not None and child.stdout is not None and child.stderr is None
        child.stdin.write(b"x" * 200_000)  # more than a pipe holds: drained as it reads
        await child.stdin.drain()
        child.stdin.close()
        assert await child.stdout.read() == b"200000\ne\n"
        assert await child.wait() == 0

    run(main())


def test_a_killed_child_is_reaped_with_its_signal() -> None:
    async def main() -> None:
        child = await spawn.start([sys.executable, "-c", "import time; time.sleep(60)"])
        assert child.returncode is None
        os.kill(child.pid, signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)  # reaped: no zombie left

    run(main())


def test_a_command_that_cannot_start_raises_oserror() -> None:
    async def main() -> None:
        with pytest.raises(OSError):
            await spawn.start(["/nonexistent/pulsing-test-binary"])

    run(main())
