"""What an actor class offers: its ops, how each is called, and the fast argument check.

Shared by every host (an op is resolved the same way in the daemon and in a child
process) and by the streams route, which checks a stream's arguments before it starts.
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pulsing_daemon import argcheck
from pulsing_daemon.exceptions import PulsingBusinessError, PulsingUnsupportedError
from pulsing_daemon.remote import NONBLOCKING_ATTR

# Methods that are lifecycle hooks, never ops.
HOOKS = frozenset({"on_start", "on_stop", "run", "receive"})

class OpKind(str, enum.Enum):
    ASK = "ask"  # plain or async method
    STREAM = "stream"  # generator or async generator


@dataclass(frozen=True)
class OpInfo:
    name: str
    kind: OpKind
    is_async: bool
    signature: inspect.Signature | None
    plain: PlainParameters | None = None  # for the fast argument check
    on_loop: bool = False  # a sync op marked @nonblocking: run on the event loop
    # Checks argument values against the annotations (argcheck.py); None: nothing to check.
    check: Callable[[list[Any], dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class PlainParameters:
    """A signature without ``*args`` or positional-only parameters, for checking a call
    without ``Signature.bind`` (a few microseconds per ask)."""

    names: tuple[str, ...]  # positional-or-keyword ones first, then keyword-only ones
    positional: int  # how many of ``names`` may be given by position
    required: frozenset[str]
    extra: bool  # takes **kwargs

    @classmethod
    def of(cls, signature: inspect.Signature | None) -> PlainParameters | None:
        if signature is None:
            return None
        kinds: dict[Any, list[inspect.Parameter]] = collections.defaultdict(list)
        for param in signature.parameters.values():
            kinds[param.kind].append(param)
        if kinds[inspect.Parameter.POSITIONAL_ONLY] or kinds[inspect.Parameter.VAR_POSITIONAL]:
            return None
        named = (
            kinds[inspect.Parameter.POSITIONAL_OR_KEYWORD] + kinds[inspect.Parameter.KEYWORD_ONLY]
        )
        return cls(
            names=tuple(p.name for p in named),
            positional=len(kinds[inspect.Parameter.POSITIONAL_OR_KEYWORD]),
            required=frozenset(p.name for p in named if p.default is inspect.Parameter.empty),
            extra=bool(kinds[inspect.Parameter.VAR_KEYWORD]),
        )

    def binds(self, args: list[Any], kwargs: dict[str, Any]) -> bool:
        """True when the call certainly binds; False means "ask Signature.bind" (which
        also words the error)."""
        if len(args) > self.positional:
            return False
        given = self.names[: len(args)]
        names = self.names
        for key in kwargs:
            if key in given or not (self.extra or key in names):
                return False
        return all(name in kwargs or name in given for name in self.required)


@functools.lru_cache(maxsize=4096)
def describe_ops(cls: type) -> dict[str, OpInfo]:
    """The public ops of an actor class, by name (cached per class)."""
    ops: dict[str, OpInfo] = {}
    for name in dir(cls):
        if name.startswith("_") or name in HOOKS:
            continue
        attr = inspect.getattr_static(cls, name, None)
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not inspect.isfunction(attr):
            continue
        if inspect.isasyncgenfunction(attr) or inspect.isgeneratorfunction(attr):
            kind = OpKind.STREAM
        else:
            kind = OpKind.ASK
        is_async = inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr)
        try:
            signature = inspect.signature(getattr(cls, name))
            params = list(signature.parameters.values())
            if params and not isinstance(inspect.getattr_static(cls, name), staticmethod):
                signature = signature.replace(parameters=params[1:])  # drop self
        except (TypeError, ValueError):
            signature = None
        on_loop = kind is OpKind.ASK and getattr(attr, NONBLOCKING_ATTR, False) is True
        ops[name] = OpInfo(
            name, kind, is_async, signature, PlainParameters.of(signature),
            on_loop and not is_async, argcheck.compile_check(attr, signature, name),
        )  # fmt: skip
    return ops


def bind_arguments(info: OpInfo, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Check a call against the op's signature and annotations before it runs: a bad call
    is a business error (``bad_arguments``, ``invalid_argument``)."""
    if info.signature is None:
        return
    if info.plain is None or not info.plain.binds(args, kwargs):
        try:
            info.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PulsingBusinessError(
                "bad_arguments",
                f"bad arguments for {info.name}{info.signature}: {exc}",
                {"op": info.name, "signature": f"{info.name}{info.signature}"},
            ) from None
    if info.check is not None:
        info.check(args, kwargs)


def resolve_op(cls: type, op: str, want: OpKind) -> OpInfo | None:
    """The op to call, or None when the class routes it to ``receive``.

    Raises ``PulsingUnsupportedError`` for private names and unknown ops.
    """
    ops = describe_ops(cls)
    info = ops.get(op) if isinstance(op, str) and not op.startswith("_") else None
    if info is None:
        if (
            op not in HOOKS
            and not str(op).startswith("_")
            and callable(getattr(cls, "receive", None))
        ):
            return None
        raise PulsingUnsupportedError(op, message=_unknown_op_message(op, ops))
    if info.kind is not want:
        if info.kind is OpKind.STREAM:
            message = f"{op} is a streaming op; use `pulsing stream` (POST .../streams)"
        else:
            message = f"{op} is not a streaming op; use `pulsing ask`"
        raise PulsingUnsupportedError(op, message=message)
    return info


def _unknown_op_message(op: Any, ops: dict[str, OpInfo]) -> str:
    names = ", ".join(sorted(ops)) or "none"
    return f"unsupported operation {op!r} (ops: {names})"
