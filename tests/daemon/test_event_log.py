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


def test_a_waiting_follower_gets_events_through_send_and_a_refusal_queues_them(
    tmp_path: Path,
) -> None:
    """``send`` writes straight from ``emit`` while the follower waits with nothing queued;
    from the first event it refuses, events queue and come out of the generator in
    order, and ``send`` is used again only once the follower has caught up."""

    async def main() -> None:
        log = EventLog(tmp_path / "events.db")
        sent: list[int] = []
        accepting = [True]

        def send(event_id: int, text: str) -> bool:
            assert json.loads(text)["id"] == event_id
            if accepting[0]:
                sent.append(event_id)
            return accepting[0]

        stream = log.follow(heartbeat=5.0, send=send)
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # registered and waiting: direct from here
        log.emit("a")
        log.emit("b")
        assert sent == [1, 2] and not pending.done()
        accepting[0] = False
        log.emit("c")  # refused: queued, the follower's task is woken
        accepting[0] = True
        log.emit("d")  # behind "c": queued too, not sent past it
        assert sent == [1, 2]
        assert [e["id"] for e in await asyncio.wait_for(pending, 2)] == [3, 4]
        log.emit("e")  # the batch is out, the generator not waiting yet: queued
        pending = asyncio.ensure_future(stream.__anext__())
        assert [e["id"] for e in await asyncio.wait_for(pending, 2)] == [5]
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        log.emit("f")
        assert sent == [1, 2, 6] and not pending.done()
        pending.cancel()
        log.close()

    asyncio.run(main())


def test_a_send_that_raises_queues_the_event_and_others_still_get_it(tmp_path: Path) -> None:
    async def main() -> None:
        log = EventLog(tmp_path / "events.db")
        got: list[int] = []

        def broken(event_id: int, text: str) -> bool:
            raise OSError("connection gone")

        def good(event_id: int, text: str) -> bool:
            got.append(event_id)
            return True

        first, second = log.follow(heartbeat=5.0, send=broken), log.follow(heartbeat=5.0, send=good)
        pending = asyncio.ensure_future(first.__anext__())
        waiting = asyncio.ensure_future(second.__anext__())
        await asyncio.sleep(0)
        log.emit("a")
        assert got == [1]
        assert [e["id"] for e in await asyncio.wait_for(pending, 2)] == [1]
        waiting.cancel()
        log.close()

    asyncio.run(main())
