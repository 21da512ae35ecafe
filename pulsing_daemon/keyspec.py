"""Config keys described once: ``KeySpec`` and the checks its values go through.

A check takes the raw value (from TOML, or from ``@remote(...)`` in Python) and
returns the value to store, or raises ``Invalid`` with the reason shown to the user.
``config.py`` reads every table against a list of specs; a host
(``pulsing_daemon/hosts/``) declares its own keys with the same pieces.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Invalid(Exception):
    """A value a key does not accept; the message is the reason shown to the user.

    For a table value, ``at`` names the sub-key at fault (``("num_cpus",)``) and
    ``also`` holds more problems found in the same table.
    """

    def __init__(
        self, reason: str, at: tuple[str, ...] = (), also: tuple[Invalid, ...] = ()
    ) -> None:
        super().__init__(reason)
        self.at = at
        self.also = also

    def each(self) -> tuple[Invalid, ...]:
        return (self, *self.also)


Check = Callable[[Any], Any]


def value_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string",
             list: "array", tuple: "array", dict: "table"}  # fmt: skip
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def got(value: Any) -> str:
    """``boolean (true)``, ``string ('x')``: what the user wrote, briefly."""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, (dict, list, tuple)):
        return value_type(value)
    else:
        shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{value_type(value)} ({shown})"


def integer_key(minimum: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {got(value)}")
        if value < minimum:
            raise Invalid(f"must be >= {minimum} (got {value})")
        return value

    return check


def number_key(*, minimum: float | None = None, positive: bool = False) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number, got {got(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise Invalid(f"must be a finite number (got {number})")
        if positive and number <= 0:
            raise Invalid(f"must be > 0 (got {number!r})")
        if minimum is not None and number < minimum:
            raise Invalid(f"must be >= {minimum:g} (got {number!r})")
        return number

    return check


def boolean_key(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected a boolean (true or false), got {got(value)}")
    return value


def string_key(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {got(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    return value


def choice_key(*choices: str) -> Check:
    """A string among ``choices``, any case, with ``-`` accepted for ``_``."""

    def check(value: Any) -> str:
        normalised = string_key(value).strip().lower().replace("-", "_")
        if normalised not in choices:
            raise Invalid(f"unknown value {value!r} (expected one of: {', '.join(choices)})")
        return normalised

    return check


def table_key(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table, got {got(value)}")
    return dict(value)


def string_table_key(value: Any) -> dict[str, str]:
    table = table_key(value)
    for key, item in table.items():
        if not key or "=" in key or "\0" in key:
            raise Invalid(f"invalid variable name {key!r}")
        if not isinstance(item, str):
            raise Invalid(f"{key}: expected a string, got {got(item)}")
    return table


def path_key(value: Any) -> Path:
    """A path as written (``~`` expanded); made absolute against the config dir later."""
    if isinstance(value, Path):  # from @remote(...)
        return value.expanduser()
    return Path(string_key(value)).expanduser()


def path_list_key(value: Any) -> tuple[Path, ...]:
    if not isinstance(value, (list, tuple)):
        raise Invalid(f"expected an array of strings, got {got(value)}")
    paths = []
    for index, item in enumerate(value):
        try:
            paths.append(path_key(item))
        except Invalid as exc:
            raise Invalid(f"item {index}: {exc}") from None
    return tuple(paths)


@dataclass(frozen=True)
class KeySpec:
    """One config key: how it is checked, its default, and what it means (for docs)."""

    name: str
    type: str  # as documented: "float", "integer", "string", "table", ...
    default: Any
    check: Check
    description: str
    # None is accepted (from @remote(...); TOML has no null) and means "unset".
    nullable: bool = False

    @property
    def toml_default(self) -> str:
        """The default as it would be written in TOML ("" when there is none)."""
        value = self.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, enum.Enum):
            return json.dumps(value.value)
        if isinstance(value, (str, Path)):
            return json.dumps(str(value))
        if isinstance(value, (tuple, list)):
            return json.dumps([str(v) for v in value])
        if isinstance(value, dict):
            return "{}" if not value else json.dumps(value)
        return repr(value)
