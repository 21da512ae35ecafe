"""Every body the daemon sends, and the encoder that writes them.

The daemon writes with these functions; the client and the CLI read with the names
defined here (``CHUNK_PREFIX``, ``chunk_seq``, ``REPLAYED``, ``END``). Importing this
module is cheap -- the standard ``json`` and ``pulsing_daemon.exceptions``, no aiohttp
-- so the CLI may import it at start-up.

The bodies (CONTRACT §3, §6):

- result            ``{"result": VALUE}``; a replayed one adds ``"replayed": true``
- error envelope    ``{"error": {"category", "type", "message", "recoverable", ...}}``
- chunk record      ``{"seq": N, "data": CHUNK}``, one line in NDJSON, one event in SSE
- terminal record   ``{"end": true}``, or the error envelope that ended the stream
- stored outcome    a result or an error envelope, as kept for an idempotency key

``encode`` writes every body (results and chunks through ``encode_chunk``: the same
text, from an encoder built once) except two kinds of error text that must never fail
to encode, whatever an error carries (``default=str``): a stream's terminal record,
which also keeps non-ASCII text as UTF-8 (it is stored in the journal and sent as
is), and a stored outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii
from typing import Any

from pulsing_daemon.exceptions import PulsingError, PulsingSystemError, from_wire

# Compact; ASCII only, so text with lone surrogates (valid JSON escapes) still
# encodes; NaN and Infinity are not JSON, so a value holding one is refused. Built
# once: json.dumps with options builds a new encoder on every call.
encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode

_encode_terminal = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_encode_outcome = json.JSONEncoder(separators=(",", ":"), default=str).encode
_encode_fingerprint = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"
REPLAYED = "Idempotency-Replayed"  # response header of a replayed outcome: "true"

END = '{"end":true}'  # the terminal record of a stream that ended normally
CHUNK_PREFIX = b'{"seq":'  # every chunk record starts with it; nothing else does
KEEP_ALIVE = b": keep-alive\n\n"  # an SSE comment; NDJSON has no keep-alive line


# ---------------------------------------------------------------------- results
def result_body(result_json: str) -> str:
    """A result whose value is already encoded (the cell encodes it once)."""
    return '{"result":' + result_json + "}"


def encode_result(value: Any, op: str) -> str:
    """A result value as JSON text; a value JSON cannot carry is the op's system error."""
    try:
        return encode_chunk(value)  # encode's output, built once: paid on every ask
    except (TypeError, ValueError) as exc:
        raise PulsingSystemError(
            f"the result of {op} is not JSON-serializable: {exc}", recoverable=False
        ) from None


def replayed_body(value: Any) -> str:
    """A stored result sent again for a repeated idempotency key."""
    try:
        return encode({"result": value, "replayed": True})
    except (TypeError, ValueError) as exc:
        raise PulsingSystemError(
            f"the op's result is not JSON-serializable: {exc}", recoverable=False
        ) from None


def error_body(error: PulsingError) -> str:
    """The error envelope of an HTTP error response."""
    return encode(error.to_wire())


# ---------------------------------------------------------------------- streams
def _c_encoder(
    default: Callable[[Any], Any], quote: Callable[[str], str], *, sort_keys: bool, allow_nan: bool
) -> Callable[[Any, int], Any] | None:
    """A C JSON encoder built once: compact separators, no indent, no circular-reference
    table (``iterencode(value, 0)`` yields the text's parts); None without the C
    accelerator."""
    if c_make_encoder is None:
        return None
    return c_make_encoder(None, default, quote, None, ":", ",", sort_keys, False, allow_nan)  # type: ignore[no-any-return]


def _make_chunk_encoder(ensure_ascii: bool = True) -> Callable[[Any], str]:
    """``encode``'s output, without its per-call set-up.

    ``JSONEncoder.encode`` builds a new C encoder (and a circular-reference table) on
    every call, about half its cost for a small chunk; a stream encodes every chunk.
    This one is built once, with the same options as ``encode``, and no circular
    check: a circular (or too deeply nested) chunk ends in RecursionError inside the C
    encoder, which becomes the ValueError ``encode`` raises for it. It keeps no state
    between calls, so threads may share it. ``ensure_ascii=False`` keeps non-ASCII
    text as is (text with a lone surrogate then fails to encode as UTF-8 later).
    """
    quote = encode_basestring_ascii if ensure_ascii else encode_basestring
    # encode's default raises TypeError for what JSON cannot carry.
    iterencode = _c_encoder(encode.__self__.default, quote, sort_keys=False, allow_nan=False)
    if iterencode is None:  # a Python without the C accelerator
        return json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=False
        ).encode
    join = "".join

    def encode_chunk(chunk: Any) -> str:
        """The ``data`` of one chunk record; raises TypeError/ValueError for non-JSON."""
        if type(chunk) is str:
            return quote(chunk)
        try:
            return join(iterencode(chunk, 0))
        except RecursionError:
            raise ValueError("circular reference or nesting too deep") from None

    return encode_chunk


encode_chunk = _make_chunk_encoder()
# The same, non-ASCII text kept as is: the Ray host's messages (UTF-8 bytes both ways).
encode_utf8 = _make_chunk_encoder(ensure_ascii=False)


def chunk_records(chunks: Iterable[tuple[int, str]], ndjson: bool) -> bytes:
    """Chunk records ``(seq, data_json)`` as NDJSON lines or SSE events (``id:`` = seq)."""
    if ndjson:
        return "".join(f'{{"seq":{seq},"data":{data}}}\n' for seq, data in chunks).encode()
    return "".join(
        f'id: {seq}\ndata: {{"seq":{seq},"data":{data}}}\n\n' for seq, data in chunks
    ).encode()


def terminal_body(error: BaseException | None) -> str:
    """The terminal record: ``END``, or the envelope of the error that ended the stream
    (an exception that is not a pulsing error is a non-recoverable system error)."""
    if error is None:
        return END
    if not isinstance(error, PulsingError):
        error = PulsingSystemError(f"{type(error).__name__}: {error}", recoverable=False)
    return _encode_terminal(error.to_wire())


def terminal_record(terminal: str, ndjson: bool) -> bytes:
    """The terminal record as the last NDJSON line or SSE event."""
    return (terminal + "\n").encode() if ndjson else f"data: {terminal}\n\n".encode()


def chunk_seq(line: bytes) -> int | None:
    """The seq of a chunk record line as the daemon writes it, without parsing the line;
    None for any other line (the terminal record)."""
    if not line.startswith(CHUNK_PREFIX):
        return None
    end = line.find(b",", len(CHUNK_PREFIX))
    try:
        return int(line[len(CHUNK_PREFIX) : end])
    except ValueError:
        return None


# ---------------------------------------------------------------------- idempotency
def _make_fingerprint_encoder() -> Callable[[Any], str]:
    """``_encode_fingerprint``'s output, built once (as ``encode_chunk``; every keyed ask
    pays it). Its text is kept in the store, so it must not change: same options. No
    circular check: what it encodes came from JSON."""
    # default=str, ensure_ascii, sort_keys, allow_nan (the JSONEncoder default)
    iterencode = _c_encoder(str, encode_basestring_ascii, sort_keys=True, allow_nan=True)
    if iterencode is None:  # a Python without the C accelerator
        return _encode_fingerprint
    join = "".join
    return lambda value: join(iterencode(value, 0))


_fingerprint_once = _make_fingerprint_encoder()


def fingerprint(op: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """What must match for a repeat with the same key to be 'the same request'."""
    return _fingerprint_once([op, args, kwargs])


def stored_outcome(value: Any, error: PulsingError | None, result_json: str | None = None) -> str:
    """The text kept for a keyed ask: its result (``result_json`` when the cell
    encoded it already) or its error envelope."""
    if error is not None:
        return _encode_outcome(error.to_wire())
    if result_json is not None:
        return result_body(result_json)
    return _encode_outcome({"result": value})


def read_outcome(text: str) -> tuple[Any, PulsingError | None]:
    """The (value, error) of a stored outcome."""
    body = json.loads(text)
    if "error" in body:
        return None, from_wire(body)
    return body.get("result"), None
