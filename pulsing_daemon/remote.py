"""``@remote``: restart defaults declared on the actor class itself.

Precedence, highest first: the actor's table in the TOML file, this decorator,
``[defaults]``, the built-in defaults. The options are validated with the config.
"""

from __future__ import annotations

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
