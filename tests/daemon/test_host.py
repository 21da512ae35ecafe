"""hosts/ops.py: op resolution and argument checks (the fast path agrees with Signature.bind)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pulsing_daemon.exceptions import PulsingBusinessError
from pulsing_daemon.hosts.ops import PlainParameters, bind_arguments, describe_ops


class Shapes:
    def none(self) -> None: ...

    def one(self, x: Any) -> None: ...

    def defaults(self, a: Any, b: Any = 1, c: Any = 2) -> None: ...

    def kwonly(self, a: Any, *, k: Any, opt: Any = 0) -> None: ...

    def star(self, a: Any, *rest: Any) -> None: ...

    def starstar(self, a: Any, **extra: Any) -> None: ...

    def kwonly_extra(self, *, k: Any = 0, **extra: Any) -> None: ...

    def posonly(self, a: Any, /, b: Any) -> None: ...

    @staticmethod
    def static(p: Any, q: Any = 0) -> None: ...


NAMES = ("a", "b", "c", "k", "opt", "x", "p", "q", "zz", "extra")


def calls() -> list[tuple[list[Any], dict[str, Any]]]:
    out = []
    for n_args in range(4):
        for n_kwargs in range(3):
            for keys in itertools.combinations(NAMES, n_kwargs):
                out.append((list(range(n_args)), dict.fromkeys(keys, 0)))
    return out


@pytest.mark.parametrize("op", sorted(describe_ops(Shapes)))
def test_the_fast_check_agrees_with_signature_bind(op: str) -> None:
    info = describe_ops(Shapes)[op]
    assert info.signature is not None
    for args, kwargs in calls():
        try:
            info.signature.bind(*args, **kwargs)
            expected = None
        except TypeError as exc:
            expected = str(exc)
        try:
            bind_arguments(info, args, kwargs)
            got = None
        except PulsingBusinessError as exc:
            got = exc.message
            assert exc.code == "bad_arguments"
        if expected is None:
            assert got is None, (op, args, kwargs)
        else:
            assert got is not None and expected in got, (op, args, kwargs)


def test_plain_signatures_are_recognised() -> None:
    ops = describe_ops(Shapes)
    assert ops["defaults"].plain == PlainParameters(("a", "b", "c"), 3, frozenset("a"), False)
    assert ops["kwonly"].plain == PlainParameters(("a", "k", "opt"), 1, frozenset("ak"), False)
    assert ops["static"].plain == PlainParameters(("p", "q"), 2, frozenset("p"), False)
    assert ops["starstar"].plain == PlainParameters(("a",), 1, frozenset("a"), True)
    for op in ("star", "posonly"):
        assert ops[op].plain is None


def test_nonblocking_marks_sync_ops_only() -> None:
    from pulsing_daemon import nonblocking

    class Marked:
        @nonblocking
        def quick(self) -> int:
            return 1

        def plain(self) -> int:
            return 2

    ops = describe_ops(Marked)
    assert ops["quick"].on_loop and not ops["quick"].is_async
    assert not ops["plain"].on_loop

    async def coroutine() -> None: ...

    def generator() -> Any:
        yield 1

    for wrong in (coroutine, generator):
        with pytest.raises(TypeError, match="@nonblocking is for sync ops"):
            nonblocking(wrong)
