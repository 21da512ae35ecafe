"""Actors the fault-injection soak (``benchmarks/soak.py``) hosts.

They misbehave on request and at random: succeed, raise business errors, raise
recoverable and non-recoverable system errors, crash with an unexpected exception,
crash in ``__init__``, sleep or block past their deadline, die hard (process mode).

Every *execution* of a keyed ask appends one line ``KEY MODE PID`` to
``<effects_dir>/<name>.log`` before doing anything else, so the soak can count how
often each idempotency key really ran, across instance restarts and daemon SIGKILLs.
Stream producers append ``KEY`` to ``<effects_dir>/<name>.streams.log`` when they start.

Configs point ``[daemon] pythonpath`` at ``benchmarks/`` and name the classes as
``soak_actors:Chaos`` and ``soak_actors:Streams``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError

# What ``mode="random"`` picks from, with weights.
RANDOM_MODES = (
    ("ok", 50),
    ("business", 15),
    ("recoverable", 15),
    ("fatal", 5),
    ("crash", 5),
    ("slow", 10),
)


def _append(path: str | None, line: str) -> None:
    if not path:
        return
    # One small O_APPEND write per line: atomic with respect to other writers.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Chaos:
    """``work(mode=...)`` behaves as told; ``mode="random"`` lets the actor choose.

    Modes: ``ok`` (returns ``{"x": x, "key": key}``), ``business``, ``recoverable``
    (``PulsingSystemError(recoverable=True)``, answered, no restart), ``fatal``
    (``PulsingSystemError(recoverable=False)``: a failure, restart per policy),
    ``crash`` (RuntimeError: a failure), ``slow`` (async sleep of ``delay``),
    ``block`` (sync sleep of ``delay`` on a thread), ``hard`` (``os._exit``: only
    meaningful in process isolation).
    """

    def __init__(
        self, name: str = "chaos", effects_dir: str = "", init_fail_rate: float = 0.0
    ) -> None:
        if init_fail_rate > 0 and random.random() < init_fail_rate:
            raise RuntimeError(f"{name}: crash in __init__ (soak)")
        self.name = name
        self.effects = os.path.join(effects_dir, f"{name}.log") if effects_dir else None
        self.calls = 0

    def _effect(self, key: str | None, mode: str) -> None:
        if key:
            _append(self.effects, f"{key} {mode} {os.getpid()}")

    async def work(
        self, mode: str = "ok", key: str | None = None, x: int = 0, delay: float = 0.0
    ) -> Any:
        self.calls += 1
        self._effect(key, mode)
        if mode == "random":
            modes = [m for m, _ in RANDOM_MODES]
            mode = random.choices(modes, [w for _, w in RANDOM_MODES])[0]
            if mode == "slow" and delay <= 0:
                delay = 30.0
        return await self._behave(mode, key, x, delay)

    async def _behave(self, mode: str, key: str | None, x: int, delay: float) -> Any:
        if mode == "ok":
            return {"x": x, "key": key}
        if mode == "business":
            raise PulsingBusinessError("soak_rule", f"rule violated for x={x}", {"x": x})
        if mode == "recoverable":
            raise PulsingSystemError("upstream unavailable (soak)", recoverable=True)
        if mode == "fatal":
            raise PulsingSystemError("corrupted state (soak)", recoverable=False)
        if mode == "crash":
            raise RuntimeError("unexpected crash (soak)")
        if mode == "slow":
            await asyncio.sleep(delay)
            return {"x": x, "key": key, "slept": delay}
        if mode == "hard":
            os._exit(17)
        raise PulsingBusinessError("bad_mode", f"unknown mode {mode!r}", {"mode": mode})

    def block(self, seconds: float = 0.1, key: str | None = None, x: int = 0) -> Any:
        """A blocking sync op (runs on a thread; the actor is busy until it returns)."""
        self.calls += 1
        self._effect(key, "block")
        time.sleep(min(seconds, 5.0))
        return {"x": x, "key": key, "blocked": seconds}

    def ping(self) -> str:
        return "pong"


class Streams:
    """Streaming ops for the soak's readers: chunk ``i`` is ``{"i": i, "tag": tag}``."""

    def __init__(self, name: str = "streams", effects_dir: str = "") -> None:
        self.starts = os.path.join(effects_dir, f"{name}.streams.log") if effects_dir else None

    async def count(
        self, n: int = 100, delay: float = 0.0, tag: str = "", fail_at: int = -1
    ) -> AsyncIterator[dict[str, Any]]:
        """``n`` chunks ``delay`` apart; with ``fail_at >= 0`` a crash after that many."""
        _append(self.starts, tag or "-")
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"producer crashed after {i} chunks (soak)")
            if delay > 0 and i:
                await asyncio.sleep(delay)
            yield {"i": i, "tag": tag}
