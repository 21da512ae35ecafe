"""Actors for the per-actor log tests: they print, log and fail in known places."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Literal, Optional, Union

logger = logging.getLogger("log_actors")


class Talker:
    """Writes to stdout, stderr and logging on request; fails in a named function."""

    def __init__(self, tag: str = "talker", greet: bool = False) -> None:
        self.tag = tag
        if greet:
            print(f"{tag} constructed")

    def say(self, text: str = "hello", times: int = 1) -> int:
        for index in range(times):
            print(f"{self.tag} {text} {index}")
        return times

    async def asay(self, text: str = "hello", times: int = 1, pause: float = 0.0) -> int:
        for index in range(times):
            print(f"{self.tag} {text} {index}")
            if pause:
                await asyncio.sleep(pause)
        return times

    def warn(self, text: str = "careful") -> str:
        print(f"{self.tag} {text}", file=sys.stderr)
        logger.warning("%s logged %s", self.tag, text)
        logger.info("%s info %s", self.tag, text)
        return text

    def explode(self, key: str = "missing") -> None:
        deeply_nested_failure({}, key)

    def blob(self, size: int = 1000, times: int = 1) -> int:
        for _ in range(times):
            print("x" * size)
        return times


def deeply_nested_failure(table: dict, key: str) -> None:
    table[key]  # KeyError, raised here


class Typed:
    """Ops with each kind of annotation CONTRACT §4 checks."""

    def __init__(self) -> None:
        self.calls = 0

    def integer(self, x: int) -> int:
        self.calls += 1
        return x

    def number(self, x: float) -> float:
        self.calls += 1
        return x

    def text(self, x: str) -> str:
        self.calls += 1
        return x

    def flag(self, x: bool) -> bool:
        self.calls += 1
        return x

    def nothing(self, x: None) -> None:
        self.calls += 1

    def items(self, x: list[int]) -> list[int]:
        self.calls += 1
        return x

    def table(self, x: dict[str, float]) -> dict[str, float]:
        self.calls += 1
        return x

    def maybe(self, x: Optional[int] = None) -> Optional[int]:  # noqa: UP045
        self.calls += 1
        return x

    def either(self, x: Union[int, str]) -> Union[int, str]:  # noqa: UP007
        self.calls += 1
        return x

    def pipe(self, x: int | None) -> int | None:
        self.calls += 1
        return x

    def choice(self, x: Literal["a", "b", 3]) -> object:
        self.calls += 1
        return x

    def anything(self, x, y: object = None) -> object:
        self.calls += 1
        return x

    def count(self) -> int:
        return self.calls
