"""Turn command-line words into an op's arguments.

``key=value`` is a keyword argument, anything else a positional one; a value is
parsed as JSON when it parses (``x=5`` is the number 5, ``x='"5"'`` the string "5",
``x=[1,2]`` a list) and taken as a plain string otherwise. ``--data`` gives the
arguments as one JSON object (keywords) or array (positional), inline, ``@file``
or ``-`` for stdin; words on the command line add to it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ArgumentError(ValueError):
    """Arguments that cannot be used (bad JSON in --data, unreadable file, ...)."""


TOO_DEEP = "JSON nested too deeply (Python's recursion limit; flatten the value)"


def parse_value(text: str) -> Any:
    """JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise ArgumentError(f"argument {text[:20]!r}...: {TOO_DEEP}") from None


def parse_words(words: list[str]) -> tuple[list[Any], dict[str, Any]]:
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and _KEY.fullmatch(key):
            keywords[key] = parse_value(value)
        else:
            positional.append(parse_value(word))
    return positional, keywords


def load_data(data: str, stdin: TextIO | None = None) -> list[Any] | dict[str, Any]:
    """The value of ``--data``: JSON text, ``@file`` or ``-`` (stdin)."""
    if data == "-":
        text, source = (stdin or sys.stdin).read(), "stdin"
    elif data.startswith("@"):
        path = Path(data[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArgumentError(f"--data {data}: cannot read {path}: {exc.strerror}") from None
        source = str(path)
    else:
        text, source = data, "--data"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArgumentError(f"{source} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ArgumentError(f"{source}: {TOO_DEEP}") from None
    if not isinstance(value, (dict, list)):
        raise ArgumentError(f"{source} must be a JSON object (keywords) or array (positional)")
    return value


def build_arguments(
    words: list[str], data: str | None = None, stdin: TextIO | None = None
) -> tuple[list[Any], dict[str, Any]]:
    positional, keywords = parse_words(words)
    if data is None:
        return positional, keywords
    base = load_data(data, stdin)
    if isinstance(base, list):
        return [*base, *positional], keywords
    return positional, {**base, **keywords}
