"""Arguments checked against annotations before an op runs (CONTRACT §4): a mismatch is a
business error `invalid_argument` naming parameter, expected type and value; the op never
runs and the instance is never restarted for it."""

from __future__ import annotations

import json
from typing import Any

import pytest

TYPED = """
[actors.typed]
class = "log_actors:Typed"
isolation = "{isolation}"
max_restarts = 1
"""

# (op, a bad value as the CLI gets it, the expected type named, a good value)
BAD = [
    ("integer", "abc", "int", "5"),
    ("integer", "true", "int", "0"),
    ("integer", "1.5", "int", "-3"),
    ("number", '"x"', "float", "2"),
    ("text", "12", "str", "hello"),
    ("flag", "1", "bool", "false"),
    ("nothing", "0", "None", "null"),
    ("items", '[1,"a"]', "list[int]", "[1,2]"),
    ("table", '{"a":"x"}', "dict[str, float]", '{"a":1,"b":2.5}'),
    ("maybe", '"3"', "int | None", "null"),
    ("either", "1.5", "int | str", "word"),
    ("pipe", "[]", "int | None", "7"),
    ("choice", "c", "Literal['a', 'b', 3]", "3"),
]


def as_given(word: str) -> Any:
    """The value the CLI sends for ``x=word``: JSON when it parses, else the string."""
    try:
        return json.loads(word)
    except ValueError:
        return word


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_bad_arguments_of_each_type_never_cost_a_restart(
    daemon_factory: Any, isolation: str
) -> None:
    d = daemon_factory(TYPED.format(isolation=isolation))
    for op, bad, expected, _ in BAD:
        result = d.cli("ask", "typed", op, f"x={bad}", "--json")
        assert result.code == 3, (op, bad, result.stdout, result.stderr)
        error = result.json()["error"]
        assert error["category"] == "business" and error["code"] == "invalid_argument", error
        assert error["details"]["parameter"] == "x" and error["details"]["expected"] == expected
        assert error["details"]["value"] == as_given(bad)
        assert f"argument x of {op}: expected {expected}" in error["message"], error["message"]
    plain = d.cli("ask", "typed", "integer", "x=abc")
    assert plain.code == 3 and "expected int" in plain.stderr and '"abc"' in plain.stderr
    actor = d.actor("typed")
    assert actor["state"] == "running" and actor["restarts"] == 0, actor
    assert actor["counts"]["business"] == len(BAD) + 1 and actor["counts"]["system"] == 0
    assert d.cli("ask", "typed", "count", "--json").json()["result"] == 0  # never ran
    for op, _, _, good in BAD:
        result = d.cli("ask", "typed", op, f"x={good}", "--json")
        assert result.code == 0, (op, good, result.stdout, result.stderr)
    assert d.cli("ask", "typed", "count", "--json").json()["result"] == len(BAD)
    assert d.cli("ask", "typed", "anything", "x=whatever", "y=[1]").code == 0


def test_positional_arguments_and_http_are_checked_too(daemon_factory: Any) -> None:
    d = daemon_factory(TYPED.format(isolation="inline"))
    result = d.cli("ask", "typed", "integer", "abc", "--json")
    assert result.code == 3 and result.json()["error"]["details"]["parameter"] == "x"
    status, _, body = d.http(
        "POST", "/v1/actors/typed/ask", {"op": "items", "args": {"x": [1, 2, "three"]}}
    )
    assert status == 422 and body["error"]["code"] == "invalid_argument", body
    assert d.actor("typed")["restarts"] == 0
