"""streams.StreamManager with a real Supervisor and Journal, no HTTP.

Each test runs its own event loop with ``asyncio.run`` and bounds every wait.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from rooms import config_with, rooms

from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
    PulsingUnsupportedError,
)
from pulsing_daemon.journal import StreamRecord
from pulsing_daemon.streams import Frame, StreamManager
from pulsing_daemon.wire import END

BOUND = 3.0


def run_streams(
    tmp_path: Path, scenario: Callable[[StreamManager], Awaitable[Any]], **daemon: Any
) -> Any:
    """One actor ``s`` (store_actors.Store) and its StreamManager; ``scenario(manager)``
    on a fresh loop."""
    config = config_with(tmp_path, {"s": "store_actors:Store"}, **daemon)

    async def main() -> Any:
        async with rooms(config) as built:
            return await asyncio.wait_for(scenario(built.streams), BOUND * 2)

    return asyncio.run(main())


async def read_all(manager: StreamManager, stream_id: str, start: int = 0) -> list[Frame]:
    return [frame async for frame in manager.frames(stream_id, start, heartbeat=BOUND)]


def chunks_of(frames: list[Frame]) -> list[tuple[int, Any]]:
    return [(seq, json.loads(data)) for frame in frames for seq, data in frame.chunks]


def test_a_stream_commits_every_chunk_then_ends(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, attached = manager.start("s", "count", [], {"n": 5}, None)
        assert attached is False
        frames = await read_all(manager, stream_id)
        assert chunks_of(frames) == [(i, i) for i in range(5)]
        assert frames[-1].terminal == END
        record = manager.journal.stream(stream_id)
        assert record is not None and record.next_seq == 5 and record.terminal == END

    run_streams(tmp_path, scenario)


def test_a_sync_generator_streams_the_same_way(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "count_sync", [3], {}, None)
        frames = await read_all(manager, stream_id)
        assert chunks_of(frames) == [(0, 0), (1, 1), (2, 2)]
        assert frames[-1].terminal == END

    run_streams(tmp_path, scenario)


def test_a_reader_resumes_from_any_retained_offset(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "count", [10], {}, None)
        await read_all(manager, stream_id)
        assert [seq for seq, _ in chunks_of(await read_all(manager, stream_id, 7))] == [7, 8, 9]
        manager.live.clear()  # as after the live window is dropped: read from SQLite
        assert [seq for seq, _ in chunks_of(await read_all(manager, stream_id, 8))] == [8, 9]

    run_streams(tmp_path, scenario)


def test_the_same_key_attaches_to_the_same_stream(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        first, attached = manager.start("s", "count", [3], {}, "k")
        again, attached_again = manager.start("s", "count", [3], {}, "k")
        assert (attached, attached_again) == (False, True)
        assert again == first
        with pytest.raises(PulsingBusinessError) as conflict:
            manager.start("s", "count", [4], {}, "k")
        assert conflict.value.code == "idempotency_conflict"
        assert conflict.value.http_status == 422
        await read_all(manager, first)

    run_streams(tmp_path, scenario)


def test_a_bad_start_fails_at_once_and_leaves_no_stream(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        with pytest.raises(PulsingUnsupportedError):
            manager.start("s", "nope", [], {}, None)
        with pytest.raises(PulsingUnsupportedError):
            manager.start("s", "put", [], {"token": "t"}, None)  # not a streaming op
        with pytest.raises(PulsingBusinessError) as bad:
            manager.start("s", "count", [], {"m": 1}, None)
        assert bad.value.code == "bad_arguments"
        with pytest.raises(PulsingRuntimeError) as unknown:
            manager.start("nobody", "count", [1], {}, None)
        assert unknown.value.http_status == 404
        assert manager.journal.db.execute("SELECT COUNT(*) FROM streams").fetchone()[0] == 0
        assert manager.live == {}

    run_streams(tmp_path, scenario)


def test_an_error_of_the_producer_is_the_terminal_record(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "count_then_fail", [2], {}, None)
        frames = await read_all(manager, stream_id)
        assert [seq for seq, _ in chunks_of(frames)] == [0, 1]
        terminal = json.loads(frames[-1].terminal or "")
        assert terminal["error"]["category"] == "business"
        assert terminal["error"]["code"] == "ran_dry"

    run_streams(tmp_path, scenario)


def test_a_chunk_that_is_not_json_ends_the_stream_with_a_system_error(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "unencodable", [], {}, None)
        frames = await read_all(manager, stream_id)
        assert chunks_of(frames) == [(0, 1)]
        terminal = json.loads(frames[-1].terminal or "")
        assert terminal["error"]["category"] == "system"
        assert "not JSON-serializable" in terminal["error"]["message"]

    run_streams(tmp_path, scenario)


def test_an_offset_older_than_retention_is_gone(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "count", [10], {}, None)
        await read_all(manager, stream_id)
        assert manager.describe(stream_id)["first_seq"] == 6
        with pytest.raises(PulsingRuntimeError) as gone:
            await read_all(manager, stream_id, 2)
        assert gone.value.http_status == 410
        assert gone.value.extra["earliest"] == 6

    run_streams(tmp_path, scenario, stream_retention_chunks=4)


def test_an_unknown_stream_is_404(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        with pytest.raises(PulsingRuntimeError) as unknown:
            await read_all(manager, "s0000")
        assert unknown.value.http_status == 404
        with pytest.raises(PulsingRuntimeError) as described:
            manager.describe("s0000")
        assert described.value.http_status == 404

    run_streams(tmp_path, scenario)


def test_describe_tells_the_offsets(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        stream_id, _ = manager.start("s", "count", [3], {}, None)
        await read_all(manager, stream_id)
        assert manager.describe(stream_id) == {
            "stream": stream_id,
            "actor": "s",
            "op": "count",
            "first_seq": 0,
            "next_seq": 3,
            "open": False,
        }

    run_streams(tmp_path, scenario)


def test_recover_closes_streams_left_open_by_a_dead_daemon(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        record = StreamRecord("s-dead", "s", "count", "fp", None, True, None, 0, 0, 0, 1.0, None)
        manager.journal.create_stream(record)
        manager.journal.append_chunks("s-dead", 0, ["0", "1"], max_chunks=10, kept_from=0)
        assert manager.recover() == 1
        frames = await read_all(manager, "s-dead")
        assert chunks_of(frames) == [(0, 0), (1, 1)]
        terminal = json.loads(frames[-1].terminal or "")
        assert terminal["error"]["category"] == "system"
        assert terminal["error"]["recoverable"] is False
        assert "up to seq 1" in terminal["error"]["message"]
        assert manager.recover() == 0

    run_streams(tmp_path, scenario)


def test_follow_false_stops_after_what_is_committed(tmp_path: Path) -> None:
    async def scenario(manager: StreamManager) -> None:
        record = StreamRecord("s-open", "s", "count", "fp", None, True, None, 0, 0, 0, 1.0, None)
        manager.journal.create_stream(record)
        manager.journal.append_chunks("s-open", 0, ["7"], max_chunks=10, kept_from=0)
        frames = [frame async for frame in manager.frames("s-open", 0, follow=False)]
        assert chunks_of(frames) == [(0, 7)]
        assert all(frame.terminal is None for frame in frames)

    run_streams(tmp_path, scenario)
