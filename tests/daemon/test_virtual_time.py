"""The virtual-time loop the cell tests run on (virtual_time.py) keeps its promises."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from virtual_time import gate, run_virtual

from pulsing_daemon.hosts.threads import run_sync, submit_sync


def test_the_clock_stands_still_while_an_op_thread_works() -> None:
    release = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timer = loop.create_future()
        loop.call_later(5.0, timer.set_result, None)  # pending all along
        job = submit_sync(release.wait, 2.0)  # real work on the op pool, ~50 ms
        loop.call_soon(threading.Timer(0.05, release.set).start)
        assert await job is True
        assert loop.time() == 0.0 and not timer.done()
        await timer  # nothing else left: time jumps to the timer
        assert loop.time() == pytest.approx(5.0)

    run_virtual(main())


def test_an_op_waiting_at_a_gate_lets_time_move_until_it_opens() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        held = gate("g")
        job = asyncio.ensure_future(run_sync(held.wait))
        while held.waiting == 0:
            await asyncio.sleep(0.001)  # virtual: moves only while no job runs
        started = loop.time()
        await asyncio.sleep(60.0)  # the parked op does not hold the clock
        assert loop.time() - started == pytest.approx(60.0) and not job.done()
        loop.call_later(1.0, held.open)
        await job
        assert loop.time() - started == pytest.approx(61.0)

    run_virtual(main())


def test_a_hung_run_fails_after_its_real_timeout() -> None:
    async def forever() -> None:
        await run_sync(gate("never").wait)  # a gate nobody opens, and no timer

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"still running after 0\.3 real seconds"):
        run_virtual(forever(), real_timeout=0.3)
    assert time.monotonic() - started < 3.0
