"""pulsing_daemon.storage.events.EventLog: followers get batches, once each, in order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pulsing_daemon.storage import events as events_mod
from pulsing_daemon.storage.events import EventLog, FollowerOverrun


def test_a_follower_gets_what_came_at_once_in_one_batch_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        log = EventLog(tmp_path / "events.db")
        log.emit("before")
        stream = log.follow(since=0, heartbeat=5.0)
        assert [e["kind"] for e in await asyncio.wait_for(stream.__anext__(), 2)] == ["before"]
        for kind in ("a", "b", "c"):  # one crash makes several events in one go
            log.emit(kind, actor="w")
        batch = await asyncio.wait_for(stream.__anext__(), 2)
        assert [e["kind"] for e in batch] == ["a", "b", "c"]
        assert [e["id"] for e in batch] == [2, 3, 4]
        log.emit("d")
        assert [e["id"] for e in await asyncio.wait_for(stream.__anext__(), 2)] == [5]
        text = log.text(batch[0])
        assert json.loads(text) == batch[0] and log.text(batch[0]) is text  # encoded once
        await stream.aclose()
        log.close()

    asyncio.run(main())


def test_a_follower_too_far_behind_gets_what_was_kept_then_overrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_mod, "FOLLOWER_BACKLOG", 3)

    async def main() -> None:
        log = EventLog(tmp_path / "events.db")
        stream = log.follow(heartbeat=5.0)
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # the follower is registered and waiting
        for index in range(5):
            log.emit(f"e{index}")
        batch = await asyncio.wait_for(pending, 2)
        assert [e["kind"] for e in batch] == ["e0", "e1", "e2"]
        with pytest.raises(FollowerOverrun):
            await asyncio.wait_for(stream.__anext__(), 2)
        log.close()

    asyncio.run(main())
