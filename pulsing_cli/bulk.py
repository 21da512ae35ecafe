"""Several actors at once: names, shell-style patterns (``'worker-*'``) and ``--all``.

``restart|stop|start|status`` accept any mix of names and patterns. Patterns are
expanded against the daemon's actors (``fnmatch``: ``*``, ``?``, ``[...]``); a name
without pattern characters is passed through as given, so an unknown one gets the
daemon's own "unknown actor" answer. Each actor's outcome is reported on its own,
and the command's exit status is the worst (highest) of them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulsing_daemon.exceptions import PulsingError, PulsingRuntimeError

_PATTERN_CHARS = frozenset("*?[")


def is_pattern(word: str) -> bool:
    return any(char in _PATTERN_CHARS for char in word)


def is_bulk(words: list[str] | None, every: bool) -> bool:
    """Whether the command line asks for the several-actors form (and its answer shape)."""
    return every or len(words or []) != 1 or is_pattern((words or [""])[0])


@dataclass
class Selection:
    """What the words select: actor names in order, and the patterns that matched none."""

    names: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def select(words: Iterable[str], known: list[str], every: bool = False) -> Selection:
    """Expand names and patterns against ``known`` (the daemon's actors, in its order).

    Each actor appears once, in the order the words first name it.
    """
    if every:
        return Selection(list(known))
    chosen: dict[str, None] = {}
    unmatched: list[str] = []
    for word in words:
        if is_pattern(word):
            matches = [name for name in known if fnmatch.fnmatchcase(name, word)]
            if not matches:
                unmatched.append(word)
            chosen.update(dict.fromkeys(matches))
        else:
            chosen[word] = None
    return Selection(list(chosen), unmatched)


def no_match(pattern: str, known: list[str]) -> PulsingRuntimeError:
    names = ", ".join(known) or "none"
    return PulsingRuntimeError(
        f"pattern {pattern!r} matches no actor (actors: {names})",
        status=404,
        hint="quote the pattern ('worker-*') so the shell leaves it alone; see `pulsing status`",
    )


@dataclass
class Outcome:
    """One actor's result: the daemon's answer, or the error it got."""

    actor: str
    payload: dict[str, Any] | None = None
    error: PulsingError | None = None

    @property
    def exit_code(self) -> int:
        if self.error is None:
            return 0
        from pulsing_cli.exit import exit_for

        return int(exit_for(self.error.category))

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"actor": self.actor, "ok": False, **self.error.to_wire()}
        return {"actor": self.actor, "ok": True, **(self.payload or {})}


def worst(codes: Iterable[int]) -> int:
    """The exit status of several results: the highest (0 when all succeeded)."""
    return max(codes, default=0)
