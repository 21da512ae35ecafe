"""argcheck.py: which values each annotation accepts, and which ops get no check at all."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import pytest

from pulsing_daemon.argcheck import validator
from pulsing_daemon.exceptions import PulsingBusinessError
from pulsing_daemon.hosts.ops import bind_arguments, describe_ops

CASES: list[tuple[Any, list[Any], list[Any]]] = [
    (int, [0, -5, 10**20], [True, 1.0, "1", None, [1]]),
    (float, [1, 1.5], [False, "1.5", None]),
    (str, ["", "x"], [1, None, ["x"]]),
    (bool, [True, False], [0, 1, "true"]),
    (None, [None], [0, "", False]),
    (type(None), [None], [0]),
    (list, [[], [1, "a"]], [{}, "x"]),
    (list[int], [[], [1, 2]], [[1, "a"], [True], "x"]),
    (list[list[str]], [[["a"]], []], [[["a", 1]]]),
    (dict, [{}, {"a": 1}], [[], "x"]),
    (dict[str, float], [{"a": 1, "b": 2.5}], [{"a": "x"}, [1]]),
    (Optional[int], [None, 3], ["3", 1.5]),  # noqa: UP045
    (Union[int, str], [1, "s"], [1.5, None]),  # noqa: UP007
    (int | None, [None, 2], ["2"]),
    (Literal["a", 3], ["a", 3], ["b", 3.0, True]),
    (Literal[True], [True], [1]),
]


@pytest.mark.parametrize(("annotation", "good", "bad"), CASES)
def test_values_each_annotation_accepts(annotation: Any, good: list[Any], bad: list[Any]) -> None:
    check = validator(annotation)
    assert check is not None
    for value in good:
        assert check[0](value), (annotation, value)
    for value in bad:
        assert not check[0](value), (annotation, value)


@pytest.mark.parametrize("annotation", [Any, object, tuple[int, int], set, bytes, dict[int, str]])
def test_other_annotations_accept_anything(annotation: Any) -> None:
    assert validator(annotation) is None
    assert validator(Optional[annotation]) is None  # noqa: UP045


class Ops:
    def plain(self, a, b=1):  # type: ignore[no-untyped-def]
        return a

    def loose(self, a: Any, b: object = None, **kw: Any) -> None: ...

    def typed(self, a: int, *rest: str, k: bool = False, **kw: float) -> None: ...

    def forward(self, a: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821


def test_ops_with_nothing_to_check_get_no_check() -> None:
    ops = describe_ops(Ops)
    assert ops["plain"].check is None and ops["loose"].check is None
    assert ops["forward"].check is None  # an annotation that cannot be evaluated
    assert ops["typed"].check is not None


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter"),
    [(["x"], {}, "a"), ([1, 2], {}, "*0"), ([1], {"k": 1}, "k"), ([1], {"extra": "x"}, "extra")],
)
def test_the_message_names_parameter_type_and_value(
    args: list[Any], kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(PulsingBusinessError) as caught:
        bind_arguments(describe_ops(Ops)["typed"], args, kwargs)
    error = caught.value
    assert error.code == "invalid_argument" and error.details["parameter"] == parameter
    assert error.message.startswith(f"invalid argument {parameter} of typed: expected ")
    bind_arguments(describe_ops(Ops)["typed"], [1, "a", "b"], {"k": True, "extra": 2})
