"""Reading a config file's tables: every problem found, each on the line of its key.

``read_table`` checks a table against a list of ``keyspec.KeySpec`` and collects each
problem in ``Problems`` (file, key path, line, reason) instead of stopping at the
first; ``LineLocator`` finds the line of a key path in the TOML source, which tomllib
does not report.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulsing_daemon.keyspec import Invalid, KeySpec, got

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# Shown in key paths for problems with a class's @remote(...) options.
DECORATOR = "class(@remote)"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    file: str
    key: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# --------------------------------------------------------------------------- line locator

_SEGMENT = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_SEGMENT}(?:\s*\.\s*{_SEGMENT})*"
# A header is alone on its line, so a nested array like `  ["a"],` is not one.
_HEADER_RE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts = []
    for segment in re.findall(_SEGMENT, dotted):
        if segment.startswith('"'):
            try:
                segment = json.loads(segment)
            except ValueError:
                segment = segment[1:-1]
        elif segment.startswith("'"):
            segment = segment[1:-1]
        parts.append(segment)
    return tuple(parts)


class LineLocator:
    """Finds the line of a key path in TOML source (tomllib reports none).

    Records table headers and ``key =`` lines under the current header, dotted keys
    included; keys inside an inline table resolve to the line of the table's key.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        open_string: str | None = None  # the delimiter of a multi-line string we are in
        for number, line in enumerate(text.splitlines(), start=1):
            if open_string is not None:
                if line.count(open_string) % 2 == 1:
                    open_string = None
                continue
            header = _HEADER_RE.match(line)
            assign = None if header else _ASSIGN_RE.match(line)
            if header:
                table = _split_dotted(header.group(1))
                self._record(table, number)
            elif assign:
                self._record(table + _split_dotted(assign.group(1)), number)
                for delimiter in ('"""', "'''"):
                    if line.count(delimiter) % 2 == 1:
                        open_string = delimiter

    def _record(self, path: tuple[str, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def line_of(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path``, else of its nearest enclosing table, else None."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return None


def format_key(path: tuple[str, ...]) -> str:
    return ".".join(
        part if part == DECORATOR or re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
        for part in path
    )


class Problems:
    """Collects problems, placing each on the line of its key."""

    def __init__(self, file: str, text: str | None = None) -> None:
        self.file = file
        self._text = text
        self._locator: LineLocator | None = None  # built at the first problem
        self.items: list[ConfigProblem] = []

    def add(self, key: tuple[str, ...], reason: str, *, at: tuple[str, ...] | None = None) -> None:
        if self._locator is None and self._text is not None:
            self._locator = LineLocator(self._text)  # a pass over the whole text
        line = self._locator.line_of(key if at is None else at) if self._locator else None
        problem = ConfigProblem(self.file, format_key(key), line, reason)
        if problem not in self.items:
            self.items.append(problem)

    def sorted(self) -> list[ConfigProblem]:
        return sorted(self.items, key=lambda p: math.inf if p.line is None else p.line)


# --------------------------------------------------------------------------- reading tables

# Marks a key whose value was reported as invalid, so no later check trips over it.
INVALID = object()


def read_table(
    table: Mapping[str, Any],
    specs: Mapping[str, KeySpec],
    where: tuple[str, ...],
    problems: Problems,
    *,
    forbidden: Mapping[str, str] | None = None,
    at: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Check every key of ``table`` against ``specs``; returns the converted values.

    ``forbidden`` maps keys that exist but are not allowed here to the hint shown;
    ``at`` is where problems are placed when the keys are not in the file (@remote).
    """
    values: dict[str, Any] = {}
    for key, raw in table.items():
        path = (*where, key)
        spec = specs.get(key)
        if forbidden and key in forbidden:
            problems.add(path, f"not allowed here; {forbidden[key]}", at=at)
        elif spec is None:
            problems.add(path, unknown_key(key, [*specs, *(forbidden or ())]), at=at)
        elif raw is None and spec.nullable:
            values[key] = None
        else:
            try:
                values[key] = spec.check(raw)
            except Invalid as exc:
                for each in exc.each():  # a table value may name the sub-key at fault
                    problems.add((*path, *each.at), str(each), at=at)
                values[key] = INVALID
    return values


def unknown_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def sub_table(
    data: Mapping[str, Any], key: str, where: tuple[str, ...], problems: Problems
) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.add((*where, key), f"expected a table, got {got(value)}")
        return {}
    return value


def syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line = int(found.group(1))
        message = f"{message[: found.start()]} (column {found.group(2)})"
    elif "(at end of document)" in message:
        line = max(1, len(text.splitlines()))
    return ConfigProblem(file, "", line, f"invalid TOML: {message}")
