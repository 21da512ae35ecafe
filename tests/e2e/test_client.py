"""The async client library ``pulsing_cli.client`` against a real daemon (CONTRACT §4,
"Python client"): refs and ops by attribute, ``ask``/``ask_with_timeout``, one exception
type per error category with its attributes, streams as ``Chunk``s, and ``retry``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from pulsing_cli.client import Chunk, ask, ask_with_timeout, connect, retry
from pulsing_daemon.exceptions import (
    PulsingActorError,
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)

T = TypeVar("T")

ACTORS = """
[actors.k]
class = "stream_actors:Kinds"
min_backoff = 0.05
max_backoff = 0.05
max_restarts = 5

[actors.never]
class = "stream_actors:Kinds"
restart_policy = "never"

[actors.idle]
class = "stream_actors:Kinds"
autostart = false
"""


@pytest.fixture
def d(daemon_factory) -> Any:
    return daemon_factory(ACTORS, "grace_period = 1.0\n")


def run(d: Any, body: Callable[[Any], Awaitable[T]], timeout: float = 20.0) -> T:
    """Run ``body(client)`` in a fresh event loop with a bounded wait."""

    async def main() -> T:
        async with connect(d.endpoint) as client:
            return await asyncio.wait_for(body(client), timeout)

    return asyncio.run(main())


async def raises(cls: type[PulsingError], call: Awaitable[Any]) -> Any:
    try:
        await call
    except PulsingError as error:
        assert isinstance(error, cls), (type(error), error.to_wire())
        return error
    raise AssertionError(f"expected {cls.__name__}")


def test_refs_ops_asks_keys_and_streams(d) -> None:
    async def body(client: Any) -> None:
        ref = client.actor("k")
        assert await ref.add(x=1, y=2) == 3
        assert await ref.add(1, 2) == 3
        assert await ask(ref, {"op": "add", "args": {"x": 4, "y": 5}}) == 9
        assert await ask(ref, {"op": "add", "args": [4, 6]}) == 10
        assert (
            await ask_with_timeout(ref, {"op": "slow", "args": {"seconds": 0.05}}, timeout=5.0)
            == 0.05
        )
        error = await raises(
            PulsingTimeoutError,
            ask_with_timeout(ref, {"op": "slow", "args": {"seconds": 3.0}}, timeout=0.3),
        )
        assert error.category == "timeout"
        assert error.operation == "slow"
        assert error.duration_ms == pytest.approx(300, rel=0.01)
        assert error.recoverable is True
        assert error.actor == "k"
        # The actor still answers after the timeout.
        assert await ref.add(x=2) == 2
        # Keyed asks: the repeat is the stored outcome, marked replayed.
        first = await client.ask("k", "add", kwargs={"x": 7}, idempotency_key="c-1")
        again = await client.ask("k", "add", kwargs={"x": 7}, idempotency_key="c-1")
        assert (first.value, first.replayed) == (7, False)
        assert (again.value, again.replayed) == (7, True)
        assert await ask(ref, {"op": "add", "args": {"x": 7}}, idempotency_key="c-1") == 7
        conflict = await raises(
            PulsingBusinessError, ask(ref, {"op": "add", "args": {"x": 8}}, idempotency_key="c-1")
        )
        assert conflict.code == "idempotency_conflict"
        # Streams: Chunk(seq, data) in order; keyed attach; resume.
        got = [chunk async for chunk in ref.stream("count", n=5)]
        assert got == [Chunk(i, i * 10) for i in range(5)]
        keyed = [chunk async for chunk in ref.stream("count", n=5, key="job-1")]
        assert keyed == got
        resumed = [chunk async for chunk in ref.stream("count", n=5, key="job-1", resume=3)]
        assert resumed == [Chunk(3, 30), Chunk(4, 40)]
        error = await raises(PulsingUnsupportedError, _drain(ref.stream("nope")))
        assert error.category == "unsupported"

    run(d, body)


def test_each_error_category_maps_to_its_exception(d) -> None:
    async def body(client: Any) -> None:
        ref = client.actor("k")
        business = await raises(PulsingBusinessError, ref.business())
        assert isinstance(business, PulsingActorError)
        assert business.category == "business"
        assert business.code == "bad_input"
        assert business.details == {"field": "x"}
        assert business.message == "that input is wrong"
        assert business.recoverable is False
        assert business.actor == "k" and business.state == "running"
        assert business.restarts == 0 and business.max_restarts == 5

        recoverable = await raises(PulsingSystemError, ref.recoverable())
        assert recoverable.category == "system"
        assert recoverable.recoverable is True
        assert "try again later" in recoverable.message

        # recoverable=False, but the instance failed and on_failure schedules a restart:
        # retrying can succeed, so the error is recoverable (CONTRACT §4).
        fatal = await raises(PulsingSystemError, ref.fatal())
        assert fatal.recoverable is True, fatal.to_wire()
        assert fatal.message == "state corrupted"
        assert fatal.restarts == 1 and fatal.state in ("backoff", "starting", "running")
        # Under restart_policy = "never" nothing follows: not recoverable.
        final = await raises(PulsingSystemError, client.actor("never").fatal())
        assert final.recoverable is False and final.state == "failed", final.to_wire()

        unsupported = await raises(PulsingUnsupportedError, ref.no_such_op())
        assert unsupported.category == "unsupported"
        assert unsupported.operation == "no_such_op"
        assert unsupported.actor == "k"

        unknown = await raises(PulsingRuntimeError, client.actor("ghost").add(x=1))
        assert unknown.category == "runtime"
        assert "ghost" in unknown.message
        assert unknown.recoverable is False

        stopped = await raises(PulsingRuntimeError, client.actor("idle").add(x=1))
        assert stopped.actor == "idle" and stopped.state == "stopped", stopped.to_wire()

    run(d, body)


def test_crash_sets_actor_state_and_restarts(d) -> None:
    async def body(client: Any) -> None:
        crashed = await raises(PulsingSystemError, client.actor("k").crash())
        assert crashed.recoverable is True  # on_failure: a restart is scheduled
        assert crashed.actor == "k"
        assert crashed.restarts == 1 and crashed.max_restarts == 5, crashed.to_wire()
        assert crashed.state in ("backoff", "starting", "running"), crashed.to_wire()

        gone = await raises(PulsingSystemError, client.actor("never").crash())
        assert gone.recoverable is False, gone.to_wire()
        assert gone.actor == "never" and gone.state == "failed", gone.to_wire()
        after = await raises(PulsingRuntimeError, client.actor("never").add(x=1))
        assert after.state == "failed", after.to_wire()

    run(d, body)


async def _drain(chunks: Any) -> list[Any]:
    return [chunk async for chunk in chunks]


def test_retry_recovers_from_recoverable_system_errors(d) -> None:
    seen: list[tuple[int, str]] = []

    async def body(client: Any) -> Any:
        ref = client.actor("k")
        value = await retry(
            lambda: ref.flaky(failures=2),
            retries=3,
            base_delay=0.01,
            max_delay=0.05,
            on_retry=lambda attempt, error, delay: seen.append((attempt, error.category)),
        )
        assert value == 3
        assert seen == [(1, "system"), (2, "system")]
        # Business errors are never retried.
        calls = 0

        async def business() -> Any:
            nonlocal calls
            calls += 1
            return await ref.business()

        await raises(PulsingBusinessError, retry(business, retries=3, base_delay=0.01))
        assert calls == 1
        # Too few retries: the last recoverable error surfaces.
        await raises(
            PulsingSystemError,
            retry(lambda: client.actor("never").recoverable(), retries=1, base_delay=0.01),
        )

    run(d, body)


def test_unreachable_daemon_is_a_recoverable_runtime_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        async with connect(f"http://127.0.0.1:{port}") as client:
            error = await raises(PulsingRuntimeError, client.actor("k").add(x=1))
            assert error.recoverable is True

    asyncio.run(main())
