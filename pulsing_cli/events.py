"""Reading the daemon's event log (``GET /v1/events``), resuming by id across drops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from pulsing_cli.transport import TransportError
from pulsing_daemon.exceptions import PulsingError

if TYPE_CHECKING:
    from pulsing_cli.client import Client

RECONNECT_CAP = 2.0  # seconds between attempts while the daemon is away


async def events(
    client: Client,
    *,
    since: int | None = None,
    actor: str | None = None,
    limit: int | None = None,
    follow: bool = False,
    on_gap: Callable[[str], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield event objects. Following, a dropped connection (a daemon restart) is
    resumed after the last id seen; ``on_gap(message)`` is told when it drops and when
    it is back."""
    last = since
    away_since: float | None = None
    delay = 0.1
    connected = False  # a daemon away at the start is an error; later, a gap to ride out
    while True:
        query: dict[str, Any] = {"follow": "1" if follow else "0"}
        if last is not None:
            query["since"] = last
        elif limit is not None:
            query["limit"] = limit
        if actor:
            query["actor"] = actor
        try:
            response = await client.transport.stream(
                "GET",
                "/v1/events?" + urlencode(query),
                headers=client.headers({"Accept": "application/x-ndjson"}),
            )
            async with response:
                connected = True
                if response.status >= 400:
                    from pulsing_cli.client import decode_error

                    raise decode_error(await response.read_body(), response.status)
                if away_since is not None and on_gap is not None:
                    on_gap(f"{_clock()} daemon is back; resuming after event {last}")
                away_since, delay = None, 0.1
                async for line in response.iter_lines():
                    if not line.strip():
                        continue  # keep-alive
                    event = json.loads(line)
                    last = event["id"]
                    yield event
        except PulsingError:
            raise
        except (TransportError, OSError, ValueError) as exc:
            if not follow or not connected:
                raise client.unreachable(exc) from None
        if not follow:
            return
        if away_since is None:
            away_since = time.time()
            if on_gap is not None:
                on_gap(f"{_clock()} daemon unreachable at {client.endpoint}; waiting for it")
        await asyncio.sleep(delay)
        delay = min(RECONNECT_CAP, delay * 2)


def _clock() -> str:
    return time.strftime("%H:%M:%S")
