"""Actors for the Ray tests (tests/e2e/test_ray*.py), beside proc_actors.Worker."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from pulsing_daemon import nonblocking
from pulsing_daemon.exceptions import PulsingBusinessError


class Odd(Exception):
    """An exception whose message cannot even be turned into text."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class Extra:
    def boom_unsendable(self) -> None:
        raise PulsingBusinessError("weird", "details that are not JSON", {"obj": object()})

    def odd(self) -> None:
        raise Odd()

    def chatty(self, text: str = "hi") -> str:
        print(f"out: {text}", flush=True)
        import sys

        print(f"err: {text}", file=sys.stderr, flush=True)
        logging.getLogger("user").warning("log: %s", text)
        return text

    def pid(self) -> int:
        return os.getpid()

    def many(self, n: int = 1000) -> Iterator[int]:
        yield from range(n)

    def slow_many(self, n: int = 100, pause: float = 0.01) -> Iterator[int]:
        for i in range(n):
            time.sleep(pause)
            yield i

    def exit_later(self, seconds: float = 0.3) -> float:
        import threading

        threading.Timer(seconds, lambda: os._exit(7)).start()
        return seconds


class BadInit:
    def __init__(self) -> None:
        raise ValueError("constructor says no")

    def ping(self) -> str:
        return "pong"


class Stall:
    """An inline actor that holds the daemon's event loop (it breaks its @nonblocking
    promise on purpose): what a long fsync or a busy machine does to the loop."""

    @nonblocking
    def hold(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
