"""The stamps of log records: ISO 8601 UTC with microseconds, which sort as text, and
what ``--since`` becomes to compare with them."""

from __future__ import annotations

import re
import time
from typing import Any


def stamp(when: float) -> str:
    """ISO 8601 UTC with microseconds: sorts as text, so ``since`` compares strings."""
    second = int(when // 1)
    if second != _last_second[0]:  # strftime once per second, not once per record
        _last_second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_last_second[1]}.{int((when - second) * 1e6):06d}Z"


_last_second: list[Any] = [None, ""]  # [whole second, its strftime]


# ---------------------------------------------------------------------- since
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> str:
    """``10m``, ``30s``, ``2h``, ``1d`` (ago) or an ISO time -> the stamp to compare with.

    Raises ValueError with the reason.
    """
    raw = text.strip()
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        seconds = float(relative.group(1)) * _UNIT[relative.group(2).lower()]
        return stamp((time.time() if now is None else now) - seconds)
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected a duration like 10m, 30s, 2h, 1d or an ISO time, got {text[:60]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without a zone is local time
    return stamp(moment.astimezone(timezone.utc).timestamp())
