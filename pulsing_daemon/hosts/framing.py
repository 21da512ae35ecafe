"""Frames between the daemon and an actor's child process: a 4-byte big-endian length,
then that many bytes of UTF-8 JSON. JSON only -- never pickle -- and bounded in size."""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """A frame that is too large or not a JSON object."""


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode(message: dict[str, Any]) -> bytes:
    body = _encode(message).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return len(body).to_bytes(4, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        raise FrameError(f"incoming frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise FrameError("a frame must hold a JSON object")
    return message


class Outbox:
    """Frames for one stream writer, queued during a loop iteration and written at its
    end in one write: frames come in runs (asks sent ahead, the answers of a batch), and
    a write per frame costs a syscall more than the frame."""

    __slots__ = ("frames", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
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

