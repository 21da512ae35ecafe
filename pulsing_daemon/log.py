"""One log line per event on stderr, logfmt style, always naming the actor and category.

    2026-11-27T23:14:03.120Z level=warning actor=worker event=failed category=system \
        type=ZeroDivisionError msg="integer division or modulo by zero" restarts=1/5
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

logger = logging.getLogger("pulsing")


def _quote(value: Any) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_./:@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        head = f"{stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()}"
        fields = getattr(record, "fields", None)
        if fields is None:
            return f"{head} msg={_quote(record.getMessage())}"
        parts = [f"{key}={_quote(value)}" for key, value in fields.items() if value is not None]
        return head + " " + " ".join(parts)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: the same fields as logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
        }
        fields = getattr(record, "fields", None)
        if fields is None:
            line["msg"] = record.getMessage()
        else:
            line.update({key: value for key, value in fields.items() if value is not None})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=True)


def setup(level: str = "info", *, json_lines: bool = False) -> None:
    """Log to stderr: logfmt lines, or JSON lines with ``json_lines``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _LogfmtFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def event(
    event: str,
    *,
    actor: str | None = None,
    category: str | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one event. ``msg`` is conventionally the human sentence; never pass secrets."""
    if not logger.isEnabledFor(level):
        return
    record_fields = {"actor": actor, "event": event, "category": category, **fields}
    logger.log(level, event, extra={"fields": record_fields})
