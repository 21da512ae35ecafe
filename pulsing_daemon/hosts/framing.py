"""Frames between the daemon and an actor's child process: a 4-byte big-endian length,
then that many bytes of UTF-8 JSON. JSON only -- never pickle -- and bounded in size."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

MAX_FRAME = 64 * 1024 * 1024
RECV_SIZE = 256 * 1024  # as asyncio's stream reader reads


class FrameError(Exception):
    """A frame that is too large or not a JSON object."""


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode(message: dict[str, Any]) -> bytes:
    body = _encode(message).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return len(body).to_bytes(4, "big") + body


def take_frames(buffer: bytearray) -> list[dict[str, Any]]:
    """The whole frames at the start of ``buffer``, taken out of it (a partial one
    stays for the next read); FrameError for a bad frame."""
    messages = []
    start, end = 0, len(buffer)
    while end - start >= 4:
        size = int.from_bytes(buffer[start : start + 4], "big")
        _check_size(size)
        if end - start - 4 < size:
            break
        messages.append(_decode(buffer[start + 4 : start + 4 + size]))
        start += 4 + size
    if start:
        del buffer[:start]
    return messages


def _check_size(size: int) -> None:
    if size > MAX_FRAME:
        raise FrameError(f"incoming frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")


def _decode(body: bytes | bytearray) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise FrameError(f"a frame that is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("a frame must hold a JSON object")
    return message


class FrameReader:
    """Frames from a blocking socket, for a thread: ``read`` blocks for the next one.
    Frames that came in the same read wait in the buffer; only one thread at a time may
    read (the child's reader threads take turns)."""

    __slots__ = ("buffer", "received", "sock", "view")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        # Reads land here: ``recv(n)`` would allocate (and, this large, mmap) n bytes.
        self.received = bytearray(RECV_SIZE)
        self.view = memoryview(self.received)

    def read(self) -> dict[str, Any] | None:
        """The next message, or None at end of stream; FrameError for a bad frame."""
        header = self._exactly(4)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        _check_size(size)
        body = self._exactly(size)
        return None if body is None else _decode(body)

    def _exactly(self, size: int) -> bytes | None:
        buffer = self.buffer
        while len(buffer) < size:
            try:
                count = self.sock.recv_into(self.received)
            except OSError:
                return None
            if not count:
                return None
            buffer += self.view[:count]
        taken = bytes(buffer[:size])
        del buffer[:size]
        return taken


class Outbox:
    """Frames for one transport, queued during a loop iteration and written at its
    end in one write: frames come in runs (asks sent ahead, the answers of a batch), and
    a write per frame costs a syscall more than the frame."""

    __slots__ = ("frames", "writer")

    def __init__(self, writer: asyncio.WriteTransport) -> None:
        self.writer = writer
        self.frames: list[bytes] = []

    def put(self, frame: bytes) -> None:
        frames = self.frames
        frames.append(frame)
        if len(frames) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (a closed writer drops it: the peer is gone)."""
        frames, self.frames = self.frames, []
        if frames and not self.writer.is_closing():
            self.writer.write(b"".join(frames))

