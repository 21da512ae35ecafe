"""pulsing_daemon.wire: each body's exact text, and the CLI's side of the stream line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pulsing_daemon import wire
from pulsing_daemon.exceptions import PulsingBusinessError, PulsingSystemError


def test_a_result_body_wraps_the_encoded_value() -> None:
    assert wire.result_body(wire.encode({"é": [1, 1.5]})) == '{"result":{"\\u00e9":[1,1.5]}}'
    assert wire.replayed_body("x") == '{"result":"x","replayed":true}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1j: 2}])
def test_what_json_cannot_carry_is_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        wire.encode(value)
    with pytest.raises(PulsingSystemError, match="not JSON-serializable"):
        wire.replayed_body(value)


def test_an_error_body_is_the_ascii_envelope() -> None:
    error = PulsingBusinessError("no", "é", {"k": 1})
    assert wire.error_body(error) == (
        '{"error":{"category":"business","type":"PulsingBusinessError","message":"\\u00e9",'
        '"recoverable":false,"code":"no","details":{"k":1}}}'
    )


def test_chunk_records_in_both_framings() -> None:
    chunks = [(7, "1"), (8, '"\\u00e9"')]
    assert wire.chunk_records(chunks, ndjson=True) == (
        b'{"seq":7,"data":1}\n{"seq":8,"data":"\\u00e9"}\n'
    )
    assert wire.chunk_records(chunks, ndjson=False) == (
        b'id: 7\ndata: {"seq":7,"data":1}\n\nid: 8\ndata: {"seq":8,"data":"\\u00e9"}\n\n'
    )
    assert wire.encode_chunk({"a": None}) == '{"a":null}'


def test_terminal_records() -> None:
    assert wire.terminal_body(None) == wire.END == '{"end":true}'
    assert wire.terminal_record(wire.END, ndjson=True) == b'{"end":true}\n'
    assert wire.terminal_record(wire.END, ndjson=False) == b'data: {"end":true}\n\n'
    refused = json.loads(wire.terminal_body(PulsingBusinessError("no", "é")))
    assert refused["error"]["message"] == "é"
    assert "é" in wire.terminal_body(PulsingBusinessError("no", "é"))  # kept as UTF-8
    crashed = json.loads(wire.terminal_body(KeyError("k")))["error"]
    assert (crashed["category"], crashed["recoverable"]) == ("system", False)
    assert crashed["message"] == "KeyError: 'k'"
    assert wire.KEEP_ALIVE == b": keep-alive\n\n"


def test_the_cli_reads_the_seq_of_the_records_the_daemon_writes() -> None:
    for line in wire.chunk_records([(0, "1"), (12345, '{"seq":3}')], ndjson=True).splitlines():
        assert line.startswith(wire.CHUNK_PREFIX)
        assert wire.chunk_seq(line) == json.loads(line)["seq"]
    assert wire.chunk_seq(wire.END.encode()) is None
    assert wire.chunk_seq(wire.terminal_body(PulsingBusinessError("no", "x")).encode()) is None
    assert wire.chunk_seq(b'{"seq":x,"data":1}') is None


def test_a_stored_outcome_round_trips() -> None:
    assert wire.stored_outcome([1], None) == '{"result":[1]}'
    assert wire.stored_outcome(None, None, "[1]") == '{"result":[1]}'
    assert wire.read_outcome('{"result":[1]}') == ([1], None)
    value, error = wire.read_outcome(wire.stored_outcome(None, PulsingBusinessError("no", "x")))
    assert value is None and isinstance(error, PulsingBusinessError) and error.code == "no"


def test_a_fingerprint_ignores_key_order() -> None:
    assert wire.fingerprint("op", [1], {"b": 1, "a": 2}) == '["op",[1],{"a":2,"b":1}]'
    assert wire.fingerprint("op", [], {"a": 2, "b": 1}) == wire.fingerprint(
        "op", [], {"b": 1, "a": 2}
    )


def test_importing_the_wire_module_does_not_import_aiohttp() -> None:
    """The CLI imports it at start-up."""
    code = "import sys, pulsing_daemon.wire; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    "value",
    [{"i": 1}, "é\ud800", 1.5, -0.0, 2**70, [1, None, True], {"a": {"b": [1, 2]}}, {1: 2}, []],
)
def test_encode_chunk_is_encode(value: object) -> None:
    # encode_chunk is encode's output built once (no per-call encoder set-up).
    assert wire.encode_chunk(value) == wire.encode(value)
    # encode_utf8: the same, non-ASCII text kept as is.
    utf8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    assert wire.encode_utf8(value) == utf8(value)


def _circular() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "value",
    [_circular(), float("nan"), [float("inf")], {1j: 1}, object(), {"x": {1, 2}}, {(1,): 2}],
)
def test_encode_chunk_refuses_what_encode_refuses(value: object) -> None:
    # The stream's sink turns TypeError/ValueError into "not JSON-serializable".
    with pytest.raises((TypeError, ValueError)):
        wire.encode(value)
    with pytest.raises((TypeError, ValueError)):
        wire.encode_chunk(value)
    with pytest.raises((TypeError, ValueError)):
        wire.encode_utf8(value)
