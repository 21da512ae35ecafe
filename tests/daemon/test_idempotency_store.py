"""idempotency.IdempotencyStore with a real Supervisor and Journal, no HTTP.

Each test runs its own event loop with ``asyncio.run`` and bounds every wait.
"""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from rooms import config_with, rooms

from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)
from pulsing_daemon.idempotency import IdempotencyStore, is_final
from pulsing_daemon.journal import Journal
from pulsing_daemon.supervisor import Supervisor
from pulsing_daemon.wire import fingerprint, read_outcome, stored_outcome

BOUND = 3.0


class Keyed:
    """Sends keyed asks to actor ``s`` through the store, as the ask handler does."""

    def __init__(self, supervisor: Supervisor, store: IdempotencyStore) -> None:
        self.supervisor = supervisor
        self.store = store

    async def ask(
        self, key: str, op: str, *, timeout: float = 2.0, **kwargs: Any
    ) -> tuple[Any, bool]:
        cell, envelope = self.supervisor.envelope("s", op, [], kwargs, timeout)
        return await asyncio.wait_for(self.store.ask(cell, envelope, key), BOUND)

    async def error(self, key: str, op: str, **kwargs: Any) -> PulsingError:
        try:
            value = await self.ask(key, op, **kwargs)
        except PulsingError as error:
            return error
        raise AssertionError(f"{op} succeeded with {value!r}; expected an error")


def run_keyed(
    tmp_path: Path,
    scenario: Callable[[Keyed], Awaitable[Any]],
    before: Callable[[Journal], None] | None = None,
) -> Any:
    config = config_with(tmp_path, {"s": "store_actors:Store"}, idempotency_retention=3600.0)

    async def main() -> Any:
        async with rooms(config, before) as built:
            keyed = Keyed(built.supervisor, built.keys)
            return await asyncio.wait_for(scenario(keyed), BOUND * 2)

    return asyncio.run(main())


def runs(token: str) -> int:
    return importlib.import_module("store_actors").RUNS.get(token, 0)


def test_a_repeat_gets_the_stored_result_and_the_op_runs_once(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        assert await keyed.ask("k", "put", token="once-1", value=[1, "a"]) == ([1, "a"], False)
        assert await keyed.ask("k", "put", token="once-1", value=[1, "a"]) == ([1, "a"], True)
        assert runs("once-1") == 1

    run_keyed(tmp_path, scenario)


def test_concurrent_repeats_share_the_first_outcome(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        outcomes = await asyncio.gather(
            *(keyed.ask("k", "wait", token="shared-1", seconds=0.05) for _ in range(5))
        )
        assert sorted(replayed for _, replayed in outcomes) == [False, True, True, True, True]
        assert {value for value, _ in outcomes} == {"shared-1"}
        assert runs("shared-1") == 1

    run_keyed(tmp_path, scenario)


def test_the_same_key_for_another_request_is_a_422(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        await keyed.ask("k", "put", token="conflict-1")
        error = await keyed.error("k", "put", token="conflict-2")
        assert isinstance(error, PulsingBusinessError)
        assert error.code == "idempotency_conflict"
        assert error.http_status == 422
        assert runs("conflict-2") == 0

    run_keyed(tmp_path, scenario)


def test_a_business_error_is_stored_and_replayed_as_such(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        first = await keyed.error("k", "refuse", token="refuse-1")
        again = await keyed.error("k", "refuse", token="refuse-1")
        assert isinstance(first, PulsingBusinessError) and isinstance(again, PulsingBusinessError)
        assert again.code == first.code == "refused"
        assert again.extra.get("replayed") is True and "replayed" not in first.extra
        assert runs("refuse-1") == 1

    run_keyed(tmp_path, scenario)


def test_a_recoverable_error_is_not_stored_so_a_retry_runs(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        first = await keyed.error("k", "flaky", token="flaky-1")
        assert isinstance(first, PulsingSystemError) and first.recoverable
        await keyed.error("k", "flaky", token="flaky-1")
        assert runs("flaky-1") == 2
        assert keyed.store.journal.ask_record("s", "k") is None

    run_keyed(tmp_path, scenario)


def test_the_caller_hears_an_outcome_once_its_record_has_committed(tmp_path: Path) -> None:
    # A second connection sees committed data only: it must find each outcome stored
    # (or its record dropped) the moment the caller is answered, one ask alone or many
    # answered together, from async and sync ops.
    async def scenario(keyed: Keyed) -> None:
        reader = sqlite3.connect(keyed.store.journal.path)

        def row(key: str) -> tuple[int, str] | None:
            query = "SELECT done, outcome FROM asks WHERE actor = 's' AND key = ?"
            return reader.execute(query, (key,)).fetchone()

        async def one(key: str, op: str, value: int) -> None:
            assert await keyed.ask(key, op, token=f"heard-{key}", value=value) == (value, False)
            assert row(key) == (1, f'{{"result":{value}}}')

        try:
            await one("alone", "put", 7)
            await one("alone-sync", "put_sync", 8)
            await asyncio.gather(
                *(one(f"many-{i}", "put" if i % 2 else "put_sync", i) for i in range(40))
            )
            await keyed.error("refused", "refuse", token="heard-refused")
            stored = row("refused")
            assert stored is not None and stored[0] == 1 and '"refused"' in stored[1]
            await keyed.error("flaky", "flaky", token="heard-flaky")
            assert row("flaky") is None  # dropped: a retry runs
        finally:
            reader.close()

    run_keyed(tmp_path, scenario)


def test_a_timeout_of_an_interrupted_op_is_stored(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        first = await keyed.error("k", "wait", token="late-1", seconds=5.0, timeout=0.05)
        assert isinstance(first, PulsingTimeoutError)
        again = await keyed.error("k", "wait", token="late-1", seconds=5.0, timeout=0.05)
        assert isinstance(again, PulsingTimeoutError) and again.extra.get("replayed") is True
        assert runs("late-1") == 1

    run_keyed(tmp_path, scenario)


def test_a_record_left_started_by_a_dead_daemon_means_outcome_unknown(tmp_path: Path) -> None:
    def died_while_running(journal: Journal) -> None:
        journal.claim_ask("s", "k", fingerprint("put", [], {"token": "dead-1"}))

    async def scenario(keyed: Keyed) -> None:
        error = await keyed.error("k", "put", token="dead-1")
        assert isinstance(error, PulsingSystemError)
        assert error.recoverable is False
        assert "outcome unknown" in error.message
        assert runs("dead-1") == 0

    run_keyed(tmp_path, scenario, before=died_while_running)


def test_a_key_that_is_too_long_is_a_business_error(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        error = await keyed.error("k" * 257, "put", token="long-1")
        assert isinstance(error, PulsingBusinessError) and error.code == "bad_idempotency_key"
        assert runs("long-1") == 0

    run_keyed(tmp_path, scenario)


@pytest.mark.parametrize(
    ("error", "executed", "stored"),
    [
        (None, True, True),
        (PulsingBusinessError("no", "no"), True, True),
        (PulsingUnsupportedError("op"), False, True),
        (PulsingSystemError("gone", recoverable=False), True, True),
        (PulsingSystemError("again", recoverable=True), True, False),
        (PulsingTimeoutError("op", 10.0), True, True),  # cancelled while it ran
        (PulsingTimeoutError("op", 10.0), False, False),  # expired in the mailbox
        (PulsingTimeoutError("op", 10.0, executed=False), True, False),
        (PulsingRuntimeError("stopped"), False, False),
    ],
)
def test_which_outcomes_are_final(error: PulsingError | None, executed: bool, stored: bool) -> None:
    assert is_final(error, executed) is stored


def test_an_outcome_survives_its_text_form() -> None:
    assert read_outcome(stored_outcome({"a": [1, 2]}, None)) == ({"a": [1, 2]}, None)
    assert read_outcome(stored_outcome(None, None, '{"a":[1,2]}')) == ({"a": [1, 2]}, None)
    value, error = read_outcome(
        stored_outcome(None, PulsingBusinessError("no", "not now", {"x": 1}))
    )
    assert value is None and isinstance(error, PulsingBusinessError)
    assert (error.code, error.message, error.details) == ("no", "not now", {"x": 1})


# A repeat of a stored key is found by the claim at the handover (a conditional insert),
# or, when the ask is answered before it gets there, by reading the record then; the
# answer is the stored one either way, and the repeat is not an outcome of the actor's.
def test_a_repeat_of_a_stored_key_is_not_counted_as_an_outcome(tmp_path: Path) -> None:
    async def scenario(keyed: Keyed) -> None:
        await keyed.ask("k", "put", token="count-1", value=7)
        counts = dict(keyed.supervisor.cell("s").counts)
        for _ in range(3):
            assert await keyed.ask("k", "put", token="count-1", value=7) == (7, True)
        assert keyed.supervisor.cell("s").counts == counts
        assert runs("count-1") == 1

    run_keyed(tmp_path, scenario)


def test_a_repeat_of_a_stored_key_to_a_stopped_actor_gets_the_stored_outcome(
    tmp_path: Path,
) -> None:
    async def scenario(keyed: Keyed) -> None:
        await keyed.ask("k", "put", token="stopped-1", value="v")
        await keyed.error("b", "refuse", token="stopped-2")
        await asyncio.wait_for(keyed.supervisor.control("s", "stop"), BOUND)
        assert await keyed.ask("k", "put", token="stopped-1", value="v") == ("v", True)
        again = await keyed.error("b", "refuse", token="stopped-2")
        assert isinstance(again, PulsingBusinessError) and again.extra.get("replayed") is True
        conflict = await keyed.error("k", "put", token="stopped-3")
        assert isinstance(conflict, PulsingBusinessError)
        assert conflict.code == "idempotency_conflict"
        fresh = await keyed.error("new", "put", token="stopped-4")
        assert isinstance(fresh, PulsingRuntimeError)  # a new key: the actor's answer
        assert keyed.store._running == {}
        assert runs("stopped-1") == runs("stopped-2") == 1 and runs("stopped-4") == 0

    run_keyed(tmp_path, scenario)


def test_a_repeat_of_a_stored_key_that_expires_in_the_mailbox_gets_the_stored_outcome(
    tmp_path: Path,
) -> None:
    async def scenario(keyed: Keyed) -> None:
        await keyed.ask("k", "put", token="queued-1", value=1)
        slow = asyncio.ensure_future(keyed.ask("slow", "wait", token="queued-2", seconds=0.4))
        await asyncio.sleep(0.05)  # the slow op holds the actor
        assert await keyed.ask("k", "put", token="queued-1", value=1, timeout=0.1) == (1, True)
        expired = await keyed.error("new", "put", token="queued-3", timeout=0.1)
        assert isinstance(expired, PulsingTimeoutError)  # a new key: the usual answer
        assert await slow == ("queued-2", False)
        assert keyed.store.journal.ask_record("s", "new") is None
        assert runs("queued-1") == 1 and runs("queued-3") == 0

    run_keyed(tmp_path, scenario)


def test_stored_and_new_keys_queued_together_each_run_at_most_once(tmp_path: Path) -> None:
    """Claimed in one commit (handed over ahead): the stored keys are answered from
    their records, the new ones run once; and concurrent repeats share either answer."""

    async def scenario(keyed: Keyed) -> None:
        for i in range(0, 20, 2):
            await keyed.ask(f"k{i}", "put", token=f"mix-{i}", value=i)
        slow = asyncio.ensure_future(keyed.ask("slow", "wait", token="mix-slow", seconds=0.1))
        await asyncio.sleep(0.02)
        asks = [keyed.ask(f"k{i}", "put", token=f"mix-{i}", value=i) for i in range(20)]
        asks += [keyed.ask(f"k{i}", "put", token=f"mix-{i}", value=i) for i in range(20)]
        outcomes = await asyncio.gather(*asks)
        await slow
        for i in range(20):
            first, repeat = outcomes[i], outcomes[20 + i]
            assert first[0] == repeat[0] == i
            assert first[1] is (i % 2 == 0) and repeat[1] is True
            assert runs(f"mix-{i}") == 1
            record = keyed.store.journal.ask_record("s", f"k{i}")
            assert record is not None and record.done

    run_keyed(tmp_path, scenario)


def test_a_repeat_of_a_key_left_started_waits_its_turn_and_never_runs(tmp_path: Path) -> None:
    def died_while_running(journal: Journal) -> None:
        journal.claim_ask("s", "dead", fingerprint("put", [], {"token": "left-1"}))

    async def scenario(keyed: Keyed) -> None:
        repeats = (keyed.error("dead", "put", token="left-1") for _ in range(3))
        errors = await asyncio.gather(*repeats)
        for error in errors:
            assert isinstance(error, PulsingSystemError) and not error.recoverable
            assert "outcome unknown" in error.message
            assert "replayed" not in error.extra
        record = keyed.store.journal.ask_record("s", "dead")
        assert record is not None and not record.done  # left as it was
        assert runs("left-1") == 0

    run_keyed(tmp_path, scenario, before=died_while_running)


@pytest.mark.parametrize(
    ("op", "args", "kwargs"),
    [
        ("aecho", [], {"x": 1}),
        ("op", [1, 2.5, "é", None, True, [], {}], {"b": [1, {"z": 1, "a": -0.0}], "a": "\u2028"}),
        ("big", [10**30, 1e300, "\ud800"], {"nested": [[[{"k": "v"}]]]}),
    ],
)
def test_the_fingerprint_text_is_what_the_store_always_kept(
    op: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Built once for speed, its text must not change: stored records compare to it."""
    import json

    kept = json.dumps([op, args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    assert fingerprint(op, args, kwargs) == kept


def test_taking_back_a_claim_that_found_the_key_taken_never_deletes_the_record(
    tmp_path: Path,
) -> None:
    """revoke_waiting may reach an ask handed over ahead before hand_over has read its
    claim back (a loop turn longer than AHEAD_FOR): if that claim found an earlier
    ask's record, taking it back must leave that record alone, or a repeat would run."""
    from pulsing_daemon.idempotency import _Handover

    print_ = fingerprint("put", [], {"token": "kept-1"})

    def stored(journal: Journal) -> None:
        journal.claim_ask("s", "k", print_)
        journal.finish_ask("s", "k", stored_outcome(1, None))

    async def scenario(keyed: Keyed) -> None:
        store = keyed.store
        handover = _Handover(store, "s", "k", print_)
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handover.record(lambda error: committed.set_result(None))
        await committed
        assert handover.taken and handover.found is not None and handover.found.done
        handover.revoke()
        fresh = _Handover(store, "s", "fresh", print_)
        fresh.record()
        fresh.revoke()  # queued before the claim runs: the delete follows the insert
        found, handover.found = handover.found, None  # as if read before the claim ran:
        handover.revoke()  # the delete checks again
        handover.found = found
        assert await keyed.ask("k", "put", token="kept-1") == (1, True)
        record = store.journal.ask_record("s", "k")
        assert record is not None and record.done
        assert store.journal.ask_record("s", "fresh") is None
        assert runs("kept-1") == 0

    run_keyed(tmp_path, scenario, before=stored)
