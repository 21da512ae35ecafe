"""N followers of a daemon's event log, for the ``event_followers`` benchmark.

``python -m benchmarks.event_followers PORT N`` opens N connections to
``GET /v1/events?follow=1`` (NDJSON, as ``pulsing events -f`` reads it), prints
``ready`` once every one has its response headers, reads until SIGTERM, then prints
one JSON line: ``{"followers": N, "events": total events read, "dropped": lost}``.

One process holds all N connections: from the daemon's side each is one follower,
exactly as N ``pulsing events -f`` processes would be, without the memory of N
Python interpreters on a small machine.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys


async def follow(port: int, counts: list[int], index: int, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/events?follow=1&limit=0 HTTP/1.1\r\nHost: bench\r\n"
        b"Accept: application/x-ndjson\r\n\r\n"
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    counts[index] = 0
    if all(count >= 0 for count in counts):
        ready.set()
    while True:
        line = await reader.readline()
        if not line:
            return
        if b'"id"' in line:
            counts[index] += 1


async def main(port: int, followers: int) -> None:
    counts = [-1] * followers
    ready = asyncio.Event()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(follow(port, counts, i, ready)) for i in range(followers)]
    await asyncio.wait_for(ready.wait(), 30)
    print("ready", flush=True)
    await stop.wait()
    lost = sum(1 for task in tasks if task.done())
    for task in tasks:
        task.cancel()
    print(json.dumps({"followers": followers, "events": sum(counts), "dropped": lost}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
