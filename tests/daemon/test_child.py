"""The child of ``isolation = "process"`` driven over its socket, frame by frame
(``pulsing_daemon.hosts.child``): what the daemon relies on while an ask runs on the
child's reader thread. Every wait is bounded (socket timeouts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pulsing_daemon.hosts.framing import FrameReader, encode

ACTORS = '''
import asyncio
import time
from pathlib import Path


class Slow:
    def __init__(self, effects: str) -> None:
        self.effects = Path(effects)

    def block(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    async def anap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def mark(self, tag: str) -> str:
        with self.effects.open("a") as fh:
            fh.write(tag + "\\n")
        return tag
'''


class ChildUnderTest:
    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "child_actors.py").write_text(ACTORS)
        self.effects = tmp_path / "effects"
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulsing_daemon.hosts.child", "--fd", str(theirs.fileno()),
             "--parent", str(os.getpid())],
            pass_fds=(theirs.fileno(),),
        )  # fmt: skip
        theirs.close()
        self.sock.settimeout(10.0)
        self.frames = FrameReader(self.sock)
        self.send({"t": "init", "name": "slow", "class": "child_actors:Slow",
                   "args": {"effects": str(self.effects)},
                   "sys_path": [str(tmp_path), *sys.path]})  # fmt: skip
        assert self.read()["t"] == "ready"

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def read(self) -> dict[str, Any]:
        while True:
            message = self.frames.read()
            assert message is not None, "the child closed the socket (or 10 s passed)"
            if message.get("t") != "log":
                return message

    def close(self) -> int:
        self.sock.close()
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_an_ask_sent_ahead_behind_a_long_op_is_withdrawn_while_the_op_runs(
    tmp_path: Path,
) -> None:
    """The first ask finds the child idle and runs on the thread that read it. The ask
    sent ahead behind it is still read (the other reader thread takes over) and, taken
    back at its deadline, is answered "not started" at once -- not when the long op
    ends -- and never runs."""
    child = ChildUnderTest(tmp_path)
    try:
        started = time.monotonic()
        child.send({"t": "call", "id": 1, "op": "block", "args": [], "kwargs": {"seconds": 3.0},
                    "deadline": None})  # fmt: skip
        time.sleep(0.2)
        child.send({"t": "call", "id": 2, "op": "mark", "args": [], "kwargs": {"tag": "late"},
                    "deadline": time.monotonic() + 0.3})  # fmt: skip
        time.sleep(0.4)
        child.send({"t": "withdraw", "id": 2, "expired": True})
        first = child.read()
        took = time.monotonic() - started
        assert first == {"t": "not_started", "id": 2, "expired": True}, first
        assert took < 2.0, f"answered {took:.2f}s after the long op started (it takes 3 s)"
        assert child.read() == {"t": "result", "id": 1, "value": 3.0}
        child.send({"t": "call", "id": 3, "op": "mark", "args": [], "kwargs": {"tag": "next"},
                    "deadline": None})  # fmt: skip
        assert child.read() == {"t": "result", "id": 3, "value": "next"}
        assert child.effects.read_text().split() == ["next"]  # "late" never ran
    finally:
        assert child.close() == 0


def test_asks_run_one_at_a_time_in_order_whichever_thread_runs_them(tmp_path: Path) -> None:
    """Asks sent ahead together go to the loop's batch; one that finds the child idle
    runs on a reader thread; either way they run in the order sent and each is
    answered once."""
    child = ChildUnderTest(tmp_path)
    try:
        for i in range(5):  # one at a time: each finds the child idle
            child.send({"t": "call", "id": i, "op": "mark", "args": [],
                        "kwargs": {"tag": f"a{i}"}, "deadline": None})  # fmt: skip
            assert child.read() == {"t": "result", "id": i, "value": f"a{i}"}
        child.sock.sendall(b"".join(
            encode({"t": "call", "id": 10 + i, "op": "mark", "args": [],
                    "kwargs": {"tag": f"b{i}"}, "deadline": None})
            for i in range(20)
        ))  # fmt: skip
        answers = [child.read() for _ in range(20)]
        assert answers == [{"t": "result", "id": 10 + i, "value": f"b{i}"} for i in range(20)]
        expected = [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(20)]
        assert child.effects.read_text().split() == expected
    finally:
        assert child.close() == 0


def test_an_answer_says_when_its_op_ended_past_the_deadline(tmp_path: Path) -> None:
    """``late`` in an answer: the op ended past the ask's deadline (time.monotonic, the
    daemon loop's clock), whichever thread ran it -- the reader thread (an idle child),
    the loop's batch (asks that came together), the loop (an async op). The daemon
    answers the caller's deadline then, however soon it reads the frame."""
    child = ChildUnderTest(tmp_path)

    def call(call_id: int, op: str, seconds: float, within: float | None) -> bytes:
        deadline = None if within is None else time.monotonic() + within
        return encode({"t": "call", "id": call_id, "op": op, "args": [],
                       "kwargs": {"seconds": seconds}, "deadline": deadline})  # fmt: skip

    try:
        child.sock.sendall(call(1, "block", 0.2, 0.05))  # alone: the reader thread runs it
        assert child.read() == {"t": "result", "id": 1, "late": True, "value": 0.2}
        child.sock.sendall(call(2, "block", 0.0, 5.0))
        assert child.read() == {"t": "result", "id": 2, "value": 0.0}
        # Together: the loop runs them as one batch on an op thread.
        child.sock.sendall(call(3, "block", 0.0, 5.0) + call(4, "block", 0.2, 0.1))
        assert child.read() == {"t": "result", "id": 3, "value": 0.0}
        assert child.read() == {"t": "result", "id": 4, "late": True, "value": 0.2}
        child.sock.sendall(call(5, "anap", 0.2, 0.05) + call(6, "anap", 0.0, 5.0))
        assert child.read() == {"t": "result", "id": 5, "late": True, "value": 0.2}
        assert child.read() == {"t": "result", "id": 6, "value": 0.0}
    finally:
        assert child.close() == 0
