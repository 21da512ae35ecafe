"""Decorators for actor classes: ``@remote`` and ``@nonblocking``.

``@remote`` declares restart defaults on the class itself. Precedence, highest
first: the actor's table in the TOML file, this decorator, ``[defaults]``, the
built-in defaults. The options are validated with the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

T = TypeVar("T", bound=type)

OPTIONS_ATTR = "__pulsing_options__"


@overload
def remote(cls: T) -> T: ...
@overload
def remote(cls: None = None, **options: Any) -> Callable[[T], T]: ...
def remote(cls: T | None = None, **options: Any) -> T | Callable[[T], T]:
    """Mark a class as an actor, optionally with restart defaults.

    ``@remote`` or ``@remote(restart_policy="on_failure", max_restarts=5,
    min_backoff=0.2, max_backoff=10.0)``.
    """

    def mark(target: T) -> T:
        setattr(target, OPTIONS_ATTR, dict(options))
        return target

    if cls is not None:
        return mark(cls)
    return mark


def class_options(cls: type) -> dict[str, Any]:
    """The options ``@remote`` put on ``cls`` (empty when undecorated)."""
    options = cls.__dict__.get(OPTIONS_ATTR)
    return dict(options) if isinstance(options, dict) else {}


NONBLOCKING_ATTR = "__pulsing_nonblocking__"

F = TypeVar("F", bound=Callable[..., Any])


def nonblocking(method: F) -> F:
    """Mark a sync op as one that never blocks: it runs on the event loop.

    Sync ops run on a thread by default, so a blocking one cannot stall the daemon;
    the hop to the thread and back costs about 0.15-0.3 ms per ask. An op that only
    computes on what it is given (a getter, a counter, a small transform) can skip
    it. The promise is the author's: an op so marked that blocks holds up every
    actor of the daemon while it runs, and the daemon logs a ``blocked_loop``
    warning for it (an op longer than 20 ms, at most once a minute per op).
    """
    if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
        raise TypeError(f"@nonblocking is for sync ops; {method.__name__} is async already")
    if inspect.isgeneratorfunction(method):
        raise TypeError(f"@nonblocking is for sync ops, not streaming ops ({method.__name__})")
    if not callable(method):
        raise TypeError("@nonblocking decorates a method")
    setattr(method, NONBLOCKING_ATTR, True)
    return method
