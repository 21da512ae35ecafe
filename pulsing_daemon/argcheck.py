"""Arguments checked against an op's annotations before it runs (CONTRACT §4).

Checked are the types a JSON value can have: ``int`` (not a boolean), ``float`` (an
int is accepted), ``str``, ``bool``, ``None``, ``list``/``list[X]``,
``dict``/``dict[str, X]``, ``Optional[X]``/``X | None``, unions and ``Literal`` of
these. ``Any``, unannotated parameters and every other annotation accept anything.

A mismatch is a ``PulsingBusinessError`` with code ``invalid_argument`` naming the
parameter, the expected type and the value: the op never runs, so bad input never
costs the instance a restart. The checker is built once per op (``describe_ops``
caches it per class); an op with nothing to check gets none, and its asks pay nothing.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from pulsing_daemon.exceptions import PulsingBusinessError

Check = Callable[[list[Any], dict[str, Any]], None]
Validator = Callable[[Any], bool]

_JSON_TYPES = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
    (list, "array"), (dict, "object"), (type(None), "null"),
)  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SIMPLE: dict[Any, tuple[Validator, str]] = {
    int: (_is_int, "int"),
    float: (_is_number, "float"),
    str: (lambda value: isinstance(value, str), "str"),
    bool: (lambda value: isinstance(value, bool), "bool"),
    None: (lambda value: value is None, "None"),
    type(None): (lambda value: value is None, "None"),
    list: (lambda value: isinstance(value, list), "list"),
    dict: (lambda value: isinstance(value, dict), "dict"),
}


def validator(annotation: Any) -> tuple[Validator, str] | None:
    """(test, name) for an annotation; None when it accepts anything."""
    simple = _SIMPLE.get(annotation) if _hashable(annotation) else None
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and len(args) == 1:
        item = validator(args[0])
        if item is None:
            return _SIMPLE[list]
        test = item[0]
        return (
            lambda value: isinstance(value, list) and all(test(v) for v in value),
            f"list[{item[1]}]",
        )
    if origin is dict and len(args) == 2:
        key, value_check = validator(args[0]), validator(args[1])
        if key is not None and key[1] != "str":
            return None  # JSON object keys are strings: any other key type is not ours
        if value_check is None:
            return _SIMPLE[dict]
        test = value_check[0]
        return (
            lambda value: isinstance(value, dict) and all(test(v) for v in value.values()),
            f"dict[str, {value_check[1]}]",
        )
    if origin is Union or origin is getattr(types, "UnionType", Union):
        members = [validator(arg) for arg in args]
        if any(member is None for member in members):
            return None
        tests = [member[0] for member in members]  # type: ignore[index]
        name = " | ".join(member[1] for member in members)  # type: ignore[index]
        return (lambda value: any(test(value) for test in tests), name)
    if origin is Literal:
        if not all(isinstance(arg, (str, int, float, bool, type(None))) for arg in args):
            return None
        choices = tuple(args)
        return (
            lambda value: any(type(value) is type(c) and value == c for c in choices),
            "Literal[" + ", ".join(repr(c) for c in choices) + "]",
        )
    return None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The function's annotations, evaluated (string ones too); those that cannot be
    evaluated are left out (they accept anything)."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    raw = getattr(func, "__annotations__", {}) or {}
    return {name: value for name, value in raw.items() if not isinstance(value, str)}


def compile_check(
    func: Callable[..., Any], signature: inspect.Signature | None, op: str
) -> Check | None:
    """The argument check of one op, or None when no parameter needs one."""
    if signature is None:
        return None
    hints = _hints(func)
    positional: list[tuple[str, tuple[Validator, str] | None]] = []
    by_name: dict[str, tuple[Validator, str]] = {}
    star_args: tuple[Validator, str] | None = None
    star_kwargs: tuple[Validator, str] | None = None
    for param in signature.parameters.values():
        check = validator(hints[param.name]) if param.name in hints else None
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            star_args = check
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            star_kwargs = check
        else:
            if param.kind is not inspect.Parameter.KEYWORD_ONLY:
                positional.append((param.name, check))
            if check is not None and param.kind is not inspect.Parameter.POSITIONAL_ONLY:
                by_name[param.name] = check
    nothing = star_args is None and star_kwargs is None
    if nothing and not by_name and all(check is None for _, check in positional):
        return None

    def check_arguments(args: list[Any], kwargs: dict[str, Any]) -> None:
        for index, value in enumerate(args):
            if index < len(positional):
                name, check = positional[index]
            else:
                name, check = f"*{index - len(positional)}", star_args
            if check is not None and not check[0](value):
                raise invalid_argument(op, name, check[1], value)
        for name, value in kwargs.items():
            check = by_name.get(name, star_kwargs)
            if check is not None and not check[0](value):
                raise invalid_argument(op, name, check[1], value)

    return check_arguments


def invalid_argument(op: str, parameter: str, expected: str, value: Any) -> PulsingBusinessError:
    shown = _shown(value)
    return PulsingBusinessError(
        "invalid_argument",
        f"invalid argument {parameter} of {op}: expected {expected}, got {shown} "
        f"({_json_type(value)})",
        {"op": op, "parameter": parameter, "expected": expected, "value": _detail(value)},
    )


def _json_type(value: Any) -> str:
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _detail(value: Any) -> Any:
    """The value as given, when short; else its start, as text."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)[:200]
    return value if len(text) <= 200 else text[:197] + "..."
