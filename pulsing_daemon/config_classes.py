"""The actor classes a config names: imported, and their constructors checked.

A class path is ``"pkg.mod:Class"`` or ``"pkg.mod.Class"``, imported after the
config's ``pythonpath`` directories are prepended to ``sys.path``. A class that
cannot be imported, or whose constructor does not take an actor's ``args``, is a
problem of the config (config_tables.Problems), reported with the others.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pulsing_daemon.config_tables import Problems


class _NotAClass(TypeError):
    pass


def import_class(class_path: str) -> type:
    """Import ``"pkg.mod:Class"`` or ``"pkg.mod.Class"`` (nested classes need the colon form).

    Raises ImportError (malformed path, missing module, or any error raised while
    importing it propagates), AttributeError (no such name), TypeError (not a class).
    """
    if ":" in class_path:
        module_name, _, qualname = class_path.partition(":")
    else:
        module_name, _, qualname = class_path.rpartition(".")
    if not module_name or not qualname:
        raise ImportError(f"class path {class_path!r} must be 'module:Class' or 'module.Class'")
    target: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        target = getattr(target, attribute)
    if not isinstance(target, type):
        raise _NotAClass(f"{class_path!r} is not a class (it is a {type(target).__name__})")
    return target


def prepend_sys_path(directories: Iterable[str | Path]) -> None:
    """Put ``directories`` first on ``sys.path`` (in their order), once each."""
    for directory in reversed(tuple(directories)):
        entry = str(directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    importlib.invalidate_caches()


def load_class(class_path: str, where: tuple[str, ...], problems: Problems) -> type | None:
    """The class at ``class_path``, or None with the reason added to ``problems``."""
    try:
        return import_class(class_path)
    except _NotAClass as exc:
        problems.add((*where, "class"), str(exc))
    except Exception as exc:  # user code: anything may go wrong while importing it
        problems.add(
            (*where, "class"), f"cannot import {class_path!r}: {type(exc).__name__}: {exc}"
        )
    return None


@functools.lru_cache(maxsize=4096)
def _class_signature(cls: type) -> inspect.Signature | None:
    """The constructor's signature, once per class: 10,000 actors of a class without its
    own ``__init__`` spent half of a reload parsing ``object``'s text signature."""
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):  # not introspectable (a C extension type, ...)
        return None


def check_args(cls: type, args: dict[str, Any], where: tuple[str, ...], problems: Problems) -> None:
    """Add a problem when ``cls(**args)`` would not bind to the constructor."""
    reason = _args_problem(cls, tuple(args))
    if reason is not None:
        problems.add((*where, "args"), reason)


@functools.lru_cache(maxsize=4096)
def _args_problem(cls: type, names: tuple[str, ...]) -> str | None:
    """Why arguments of these ``names`` would not bind to ``cls``'s constructor (None: they
    bind), once per class and names: binding depends on the names only, and 10,000
    actors of a class bound the same names 10,000 times."""
    signature = _class_signature(cls)
    if signature is None:
        return None
    try:
        signature.bind(**dict.fromkeys(names))
    except TypeError as exc:
        return f"do not match {cls.__name__}{signature}: {exc}"
    return None
