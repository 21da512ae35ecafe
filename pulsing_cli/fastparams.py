"""Plain-type parameter conversion without pydantic, for a fast CLI start-up.

Typer 0.29 converts every command-line value through a pydantic ``TypeAdapter``;
importing pydantic and building the adapters costs ~100 ms per invocation, more
than the rest of ``pulsing ask`` together. Our parameters are plain ``str``,
``int``, ``float``, ``bool`` and ``list[str]`` (optionally ``Optional``), so
``install`` gives those a small converter with the same checks (type, min, max)
and messages in Typer's style. Anything else -- or a Typer whose internals differ --
keeps Typer's own conversion, so this can only make things faster, never different.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

_PLAIN = (str, int, float, bool)


def _unwrap(annotation: Any) -> Any:
    """``Optional[X]`` -> X; ``list[str]`` stays; anything else as is."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _supported(annotation: Any) -> bool:
    base = _unwrap(annotation)
    if base in _PLAIN:
        return True
    return typing.get_origin(base) is list and typing.get_args(base) == (str,)


def install() -> None:
    """Route Typer's per-parameter converter factory through the plain-type fast path.

    Typer builds a parameter's converter lazily, the first time a value is converted,
    through ``typer.core.build_runtime_param``; wrapping that one factory covers every
    parameter, including the help options Typer adds per context. A no-op when
    Typer's internals are not the ones this was written for.
    """
    try:
        import typer.core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
    except ImportError:
        return
    if not hasattr(typer.core, "build_runtime_param"):
        return

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc]
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            base = _unwrap(self.annotation)
            if typing.get_origin(base) is list:
                return [str(item) for item in value]
            if base is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("1", "true", "yes", "y", "on"):
                    return True
                if text in ("0", "false", "no", "n", "off"):
                    return False
                raise BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)
            if base is str:
                return str(value)
            try:
                number = base(value)
            except (TypeError, ValueError):
                kind = "integer" if base is int else "float"
                raise BadParameter(
                    f"{value!r} is not a valid {kind}.", ctx=ctx, param=param
                ) from None
            low, high = self.parameter_info.min, self.parameter_info.max
            if (low is not None and number < low) or (high is not None and number > high):
                bounds = " and ".join(
                    text
                    for text in (
                        f"x>={low}" if low is not None else "",
                        f"x<={high}" if high is not None else "",
                    )
                    if text
                )
                raise BadParameter(f"{number} is not in the range {bounds}.", ctx=ctx, param=param)
            return number

    original = typer.core.build_runtime_param
    if getattr(original, "pulsing_fast", False):
        return

    def build_runtime_param(descriptor: Any) -> Any:
        if descriptor.file_annotation is None and _supported(descriptor.annotation):
            return PlainRuntimeParam(
                annotation=descriptor.annotation, parameter_info=descriptor.parameter_info
            )
        return original(descriptor)

    build_runtime_param.pulsing_fast = True  # type: ignore[attr-defined]
    typer.core.build_runtime_param = build_runtime_param
