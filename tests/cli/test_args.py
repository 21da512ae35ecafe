"""pulsing_cli.args: command-line words and --data -> an op's (args, kwargs) (CONTRACT §4)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pulsing_cli.args import ArgumentError, build_arguments, load_data, parse_value, parse_words


# ----------------------------------------------------------------- parse_value
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5),
        ("-2.5", -2.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"5"', "5"),
        ("[1,2]", [1, 2]),
        ('{"a": {"b": [null]}}', {"a": {"b": [None]}}),
        ("hello", "hello"),
        ("hello world", "hello world"),
        ("", ""),
        ("[1,", "[1,"),
        ("True", "True"),
        ("'quoted'", "'quoted'"),
    ],
)
def test_parse_value(text: str, expected: Any) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


# ----------------------------------------------------------------- parse_words
def test_parse_words_keywords_and_positionals() -> None:
    assert parse_words(["x=5", "name=bob", "7", "plain", 'y="5"']) == (
        [7, "plain"],
        {"x": 5, "name": "bob", "y": "5"},
    )


def test_parse_words_empty() -> None:
    assert parse_words([]) == ([], {})


@pytest.mark.parametrize(
    ("word", "key", "value"),
    [
        ("q=a=b", "q", "a=b"),
        ("expr=x==1", "expr", "x==1"),
        ("url=http://h/?a=1&b=2", "url", "http://h/?a=1&b=2"),
        ("empty=", "empty", ""),
        ('j={"a": "b=c"}', "j", {"a": "b=c"}),
        ("_private=1", "_private", 1),
        ("A1_b2=[1]", "A1_b2", [1]),
    ],
)
def test_equals_in_value_splits_on_first(word: str, key: str, value: Any) -> None:
    assert parse_words([word]) == ([], {key: value})


@pytest.mark.parametrize("word", ["1a=5", "a-b=1", "=5", "a b=1", "a.b=2", "é=1", "-x=1"])
def test_non_identifier_keys_are_positional(word: str) -> None:
    positional, keywords = parse_words([word])
    assert keywords == {}
    assert positional == [word]


def test_key_with_trailing_newline_is_positional() -> None:
    assert parse_words(["a\n=1"]) == (["a\n=1"], {})


def test_later_keyword_wins() -> None:
    assert parse_words(["x=1", "x=2"]) == ([], {"x": 2})


def test_positionals_keep_order() -> None:
    assert parse_words(["3", "b", "1", "[2]"]) == ([3, "b", 1, [2]], {})


identifiers = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,15}\Z")
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(identifiers, json_values)
def test_keyword_json_round_trip(key: str, value: Any) -> None:
    assert parse_words([f"{key}={json.dumps(value)}"]) == ([], {key: value})


@given(json_values)
def test_positional_json_round_trip(value: Any) -> None:
    positional, keywords = parse_words([json.dumps(value)])
    assert keywords == {}
    assert positional == [value]


@given(st.text())
def test_parse_value_is_json_or_the_text(text: str) -> None:
    value = parse_value(text)  # never raises
    try:
        expected = json.loads(text)
    except ValueError:
        assert value == text
    else:
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(value)
        else:
            assert value == expected


# ----------------------------------------------------------------- load_data
def test_load_data_inline_object_and_array() -> None:
    assert load_data('{"x": 5, "y": [1]}') == {"x": 5, "y": [1]}
    assert load_data("[1, 2, 3]") == [1, 2, 3]


@pytest.mark.parametrize("text", ["5", '"s"', "null", "true"])
def test_load_data_rejects_scalars(text: str) -> None:
    with pytest.raises(ArgumentError, match=r"object|array"):
        load_data(text)


@pytest.mark.parametrize("text", ["{bad", "", "{'a': 1}", "[1,]", "x=5"])
def test_load_data_bad_json(text: str) -> None:
    with pytest.raises(ArgumentError) as info:
        load_data(text)
    assert "not valid JSON" in str(info.value)
    assert "--data" in str(info.value)


def test_argument_error_is_a_value_error() -> None:
    assert issubclass(ArgumentError, ValueError)


def test_load_data_from_file(tmp_path: Path) -> None:
    path = tmp_path / "args.json"
    path.write_text('{"x": "é", "n": 1}', encoding="utf-8")
    assert load_data(f"@{path}") == {"x": "é", "n": 1}


def test_load_data_file_bad_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope", encoding="utf-8")
    with pytest.raises(ArgumentError) as info:
        load_data(f"@{path}")
    assert str(path) in str(info.value)


def test_load_data_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ArgumentError) as info:
        load_data(f"@{missing}")
    assert str(missing) in str(info.value)


def test_load_data_directory_is_an_argument_error(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError):
        load_data(f"@{tmp_path}")


def test_load_data_from_stdin() -> None:
    assert load_data("-", stdin=io.StringIO('{"a": [1, 2]}')) == {"a": [1, 2]}
    assert load_data("-", stdin=io.StringIO("[true]\n")) == [True]


def test_load_data_stdin_bad_json() -> None:
    with pytest.raises(ArgumentError) as info:
        load_data("-", stdin=io.StringIO("not json"))
    assert "stdin" in str(info.value)


def test_load_data_stdin_defaults_to_sys_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "sys"}'))
    assert load_data("-") == {"from": "sys"}


# ----------------------------------------------------------------- build_arguments
def test_build_arguments_without_data() -> None:
    assert build_arguments(["1", "x=2"]) == ([1], {"x": 2})


def test_build_arguments_object_data_merges_keywords() -> None:
    args, kwargs = build_arguments(["x=9", "z=3", "7"], data='{"x": 1, "y": 2}')
    assert kwargs == {"x": 9, "y": 2, "z": 3}  # words win over --data
    assert args == [7]


def test_build_arguments_array_data_prepends_positionals() -> None:
    assert build_arguments(["3", "k=v"], data="[1, 2]") == ([1, 2, 3], {"k": "v"})


def test_build_arguments_stdin_and_file(tmp_path: Path) -> None:
    assert build_arguments([], data="-", stdin=io.StringIO('{"a": 1}')) == ([], {"a": 1})
    path = tmp_path / "d.json"
    path.write_text("[1]", encoding="utf-8")
    assert build_arguments(["2"], data=f"@{path}") == ([1, 2], {})


def test_build_arguments_bad_data() -> None:
    with pytest.raises(ArgumentError):
        build_arguments(["x=1"], data="{oops")


def test_build_arguments_does_not_mutate_loaded_data() -> None:
    data = '{"a": 1}'
    first = build_arguments(["b=2"], data=data)
    second = build_arguments([], data=data)
    assert first == ([], {"a": 1, "b": 2})
    assert second == ([], {"a": 1})
