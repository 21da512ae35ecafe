"""Reading one actor's logs (``GET /v1/actors/{name}/logs``), riding through a daemon
restart when following."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pulsing_cli.transport import TransportError
from pulsing_daemon.exceptions import PulsingError

if TYPE_CHECKING:
    from pulsing_cli.client import Client

RECONNECT_CAP = 2.0  # seconds between attempts while the daemon is away


async def actor_logs(
    client: Client,
    actor: str,
    *,
    lines: int | None = None,
    since: str | None = None,
    follow: bool = False,
    on_gap: Callable[[str], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield log records, oldest first. Following, a dropped connection is resumed from
    the last record seen (records sharing its time are not printed twice);
    ``on_gap(message)`` is told when it drops and when it is back."""
    last_at: str | None = None
    seen_at_last: set[tuple[Any, ...]] = set()
    away_since: float | None = None
    delay = 0.1
    connected = False  # a daemon away at the start is an error; later, a gap to ride out
    while True:
        query: dict[str, Any] = {"follow": "1" if follow else "0"}
        if last_at is not None:
            query["since"] = last_at
        else:
            if lines is not None:
                query["lines"] = lines
            if since is not None:
                query["since"] = since
        try:
            response = await client.transport.stream(
                "GET",
                f"/v1/actors/{quote(actor, safe='')}/logs?" + urlencode(query),
                headers=client.headers({"Accept": "application/x-ndjson"}),
            )
            async with response:
                connected = True
                if response.status >= 400:
                    from pulsing_cli.client import decode_error

                    raise decode_error(await response.read_body(), response.status)
                if away_since is not None and on_gap is not None:
                    on_gap(f"{_clock()} daemon is back; resuming after {last_at}")
                away_since, delay = None, 0.1
                async for line in response.iter_lines():
                    if not line.strip():
                        continue  # keep-alive
                    record = json.loads(line)
                    at = record.get("at")
                    key = (record.get("instance"), record.get("stream"), record.get("text"))
                    if at == last_at:
                        if key in seen_at_last:
                            continue
                    else:
                        last_at, seen_at_last = at, set()
                    seen_at_last.add(key)
                    yield record
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
