"""All terminal output of the CLI. The only module that imports rich, and only on a TTY.

Results go to stdout, notices and errors to stderr. When stdout is not a terminal
(or ``NO_COLOR`` is set) output is plain text with no colour or boxes; ``--json``
prints machine-readable JSON on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from pulsing_daemon.exceptions import PulsingError

STATE_STYLES = {
    "running": "green",
    "starting": "cyan",
    "backoff": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}


def _dumps(value: Any, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def hint_for(error: PulsingError) -> str:
    """A one-line suggestion of what to do next."""
    given = error.extra.get("hint")
    if isinstance(given, str) and given:
        return given
    actor = error.actor or "ACTOR"
    if error.category == "business":
        return "fix the request; retrying will not help"
    if error.category == "unsupported":
        return f"check the op name; `pulsing status {actor}` shows the actor"
    if error.category == "timeout":
        if error.extra.get("executed") is False:
            return "it never ran: the actor was busy; retry or raise --timeout"
        return "raise --timeout, or retry with --retries (a key makes it run at most once)"
    if error.category == "system":
        if error.recoverable:
            return "the actor is recovering; retry, e.g. with --retries 3"
        if error.state == "failed":
            return f"the actor gave up; fix the cause, then `pulsing restart {actor}`"
        return f"not retryable; see `pulsing status {actor}` and the daemon log"
    if error.recoverable:
        return "transient; retry shortly"
    return "see `pulsing status` and the daemon log"


class Output:
    """Where and how the CLI prints; streams are injectable for tests."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        no_color = "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb"
        self.rich_out = _isatty(self.stdout) and not no_color
        self.rich_err = _isatty(self.stderr) and not no_color
        self._consoles: dict[str, Any] = {}

    def console(self, which: str = "out") -> Any:
        if which not in self._consoles:
            from rich.console import Console

            stream = self.stdout if which == "out" else self.stderr
            self._consoles[which] = Console(file=stream, highlight=False, soft_wrap=True)
        return self._consoles[which]

    # ------------------------------------------------------------------ basics
    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def notice(self, text: str) -> None:
        """A message for the human, never mixed into the data on stdout."""
        if self.rich_err:
            from rich.text import Text

            self.console("err").print(Text(text, style="dim"))
        else:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def json(self, value: Any) -> None:
        self.line(_dumps(value))

    # ------------------------------------------------------------------ results
    def result(self, value: Any, meta: dict[str, Any] | None = None) -> None:
        if self.json_mode:
            self.json({"result": value, **(meta or {})})
            return
        if isinstance(value, str):
            self.line(value)
        elif self.rich_out:
            from rich.pretty import Pretty

            self.console().print(Pretty(value))
        else:
            self.line(_dumps(value, pretty=not isinstance(value, (int, float, bool, type(None)))))
        if meta and meta.get("replayed"):
            self.notice("(replayed: the stored outcome of an earlier ask with this key)")

    # ------------------------------------------------------------------ errors
    def error(self, error: PulsingError) -> None:
        if self.json_mode:
            self.json(error.to_wire())
            return
        kind = f"{error.category} error"
        kind += " (recoverable)" if error.recoverable else " (not recoverable)"
        lines = [f"{kind}: {error.message}"]
        if error.actor:
            facts = [error.state or "?"]
            if error.restarts is not None and error.max_restarts is not None:
                facts.append(f"restarts {error.restarts}/{error.max_restarts}")
            lines.append(f"actor {error.actor}: " + ", ".join(facts))
        if error.retry_after is not None:
            lines.append(f"retry after: {error.retry_after:g}s")
        lines.append(f"hint: {hint_for(error)}")
        if self.rich_err:
            from rich.text import Text

            console = self.console("err")
            console.print(Text("error ", style="bold red") + Text(lines[0]))
            for extra in lines[1:]:
                console.print(Text("  " + extra, style="dim" if extra.startswith("hint") else ""))
        else:
            self.stderr.write("pulsing: " + lines[0] + "\n")
            for extra in lines[1:]:
                self.stderr.write("  " + extra + "\n")
            self.stderr.flush()

    def actor_error(self, actor: str, error: PulsingError) -> None:
        """One actor's error among several results: one line on stderr, and its hint."""
        kind = f"{error.category} error" + (" (recoverable)" if error.recoverable else "")
        self.stderr.write(f"{actor}: {kind}: {error.message}\n  hint: {hint_for(error)}\n")
        self.stderr.flush()

    def usage_error(self, message: str) -> None:
        if self.json_mode:
            self.json(
                {
                    "error": {
                        "category": "usage",
                        "type": "UsageError",
                        "message": message,
                        "recoverable": False,
                    }
                }
            )
        else:
            self.stderr.write(f"pulsing: {message}\n")
            self.stderr.flush()

    # ------------------------------------------------------------------ status
    def status(self, payload: dict[str, Any], *, traceback: bool = False) -> None:
        """The status table; for one actor its details, with ``traceback`` the last
        failure's traceback too (`pulsing status ACTOR`)."""
        if self.json_mode:
            self.json(payload)
            return
        rows = [status_row(actor) for actor in payload.get("actors", [])]
        headers = list(STATUS_COLUMNS)
        if self.rich_out:
            from rich.table import Table
            from rich.text import Text

            # A terminal is narrow: outcome counts share one column, the last error takes
            # the room left (cut with an ellipsis), and when even that does not fit whole
            # columns are left out (fit_columns) -- a cell is never cut, a state never.
            compact = [
                [*row[:4], f"{row[4]}/{row[5]}", "/".join(row[6:11]), *row[11:]] for row in rows
            ]
            widths = [
                max([len(header), *(len(row[index]) for row in compact)])
                for index, header in enumerate(TTY_COLUMNS)
            ]
            shown, room = fit_columns(widths, self.console().width)
            table = Table(box=None, pad_edge=False, header_style="bold")
            for index in shown:
                if index == LAST_ERROR:
                    table.add_column(
                        TTY_COLUMNS[index], no_wrap=True, overflow="ellipsis", width=room
                    )
                else:
                    # fold, not ellipsis: a cell wider than the terminal wraps, never cut
                    table.add_column(TTY_COLUMNS[index], overflow="fold", width=widths[index])
            for actor, row in zip(payload.get("actors", []), compact, strict=True):
                cells = [Text(row[index]) for index in shown]
                cells[1].stylize(STATE_STYLES.get(actor.get("state", ""), ""))
                table.add_row(*cells)
            self.console().print(table)
            hidden = [TTY_COLUMNS[i] for i in range(len(TTY_COLUMNS)) if i not in shown]
            if hidden and rows:
                self.notice(
                    f"(hidden at {self.console().width} columns: {', '.join(hidden)}; "
                    "use --json or a wider terminal)"
                )
        else:
            widths = [
                max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                for i, h in enumerate(headers)
            ]
            for row in [headers, *rows]:
                self.line("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        actors = payload.get("actors", [])
        if len(actors) == 1:  # one actor: the details the table had to cut
            error, failure = actors[0].get("last_error"), actors[0].get("last_failure")
            if error:
                self.line(
                    f"last error: {error.get('category')} {error.get('type')}: "
                    f"{error.get('message')} (op {error.get('op', '?')}, at {error.get('at')})"
                )
            if failure:
                self.line(
                    f"last failure: {failure.get('type')}: {failure.get('message')} "
                    f"(in {failure.get('where')}, at {failure.get('at')})"
                )
                if traceback and failure.get("traceback"):
                    for text in str(failure["traceback"]).splitlines():
                        self.line(f"  {text}")
            if actors[0].get("pid"):
                self.line(f"pid: {actors[0]['pid']}")
            host = actors[0].get("host")
            if isinstance(host, dict) and host.get("kind") == "ray":
                self.line(f"ray node: {host.get('node')}")
                self.line(f"ray actor: {host.get('actor_id')}")


TTY_COLUMNS = (
    "ACTOR",
    "STATE",
    "POLICY",
    "RESTARTS",
    "MBOX/RUN",
    "OK/BUS/SYS/TMO/UNS",
    "UPTIME",
    "LAST ERROR",
)

LAST_ERROR = len(TTY_COLUMNS) - 1
# Left out first when the terminal is too narrow (ACTOR and STATE never are).
DROP_ORDER = (5, 4, 2, 6, 3)  # OK/BUS/..., MBOX/RUN, POLICY, UPTIME, RESTARTS
MIN_LAST_ERROR = 16  # narrower than this, the last error column is left out


def fit_columns(widths: list[int], total: int) -> tuple[list[int], int]:
    """Which TTY status columns fit in ``total`` characters, and the last error's width.

    Every column but the last error is shown whole or not at all (in DROP_ORDER);
    the last error gets what is left, and is left out when that is under
    MIN_LAST_ERROR. Columns are separated by two spaces.
    """
    shown = list(range(len(widths) - 1))

    def used(columns: list[int]) -> int:
        return sum(widths[i] for i in columns) + 2 * len(columns)

    for index in DROP_ORDER:
        if used(shown) + MIN_LAST_ERROR <= total:
            break
        shown.remove(index)
    room = total - used(shown)
    if room >= MIN_LAST_ERROR:
        return [*shown, LAST_ERROR], room
    return shown, 0


STATUS_COLUMNS = (
    "ACTOR",
    "STATE",
    "POLICY",
    "RESTARTS",
    "MAILBOX",
    "INFLIGHT",
    "OK",
    "BUS",
    "SYS",
    "TMO",
    "UNS",
    "UPTIME",
    "LAST ERROR",
)


def status_row(actor: dict[str, Any]) -> list[str]:
    counts = actor.get("counts") or {}
    state = str(actor.get("state", "?"))
    if actor.get("backoff_remaining") is not None:
        state += f" ({actor['backoff_remaining']:.1f}s)"
    restarts = f"{actor.get('restarts', 0)}/{actor.get('max_restarts', '?')}"
    if actor.get("restart_window"):
        restarts += f" in {actor['restart_window']:g}s"
    if actor.get("operator_restarts"):
        restarts += f" +{actor['operator_restarts']} op"
    last = actor.get("last_error")
    last_text = "-"
    if last:
        last_text = (
            f"{last.get('category')} {last.get('type')}: {last.get('message')} @ {last.get('at')}"
        )
        if len(last_text) > 100:
            last_text = last_text[:97] + "..."
    return [
        str(actor.get("name", "?")),
        state,
        str(actor.get("policy", "?")),
        restarts,
        str(actor.get("mailbox", 0)),
        str(actor.get("in_flight", 0)),
        *(str(counts.get(k, 0)) for k in ("ok", "business", "system", "timeout", "unsupported")),
        format_duration(actor.get("uptime")),
        last_text,
    ]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------- events
_EVENT_HEAD = ("id", "at", "actor", "kind")


def event_line(event: dict[str, Any]) -> str:
    """One event as a line: ``at  #id  actor  kind  key=value ...`` (values as JSON)."""
    rest = " ".join(
        f"{key}={value if isinstance(value, str) and value and ' ' not in value else _dumps(value)}"
        for key, value in event.items()
        if key not in _EVENT_HEAD and key != "traceback" and value is not None
    )
    actor = event.get("actor") or "-"
    return f"{event.get('at')}  #{event.get('id')}  {actor}  {event.get('kind')}  {rest}".rstrip()


# ---------------------------------------------------------------------- logs
def log_line(record: dict[str, Any]) -> str:
    """One log record: ``at  actor[instance]  stream  text`` (continuation lines as written)."""
    at = str(record.get("at", ""))
    if len(at) == 27:  # microseconds: milliseconds are enough to read
        at = at[:23] + "Z"
    who = f"{record.get('actor')}[{record.get('instance')}]"
    return f"{at}  {who}  {record.get('stream')!s:<6}  {record.get('text')}"


# ---------------------------------------------------------------------- streams
STREAM_COLUMNS = ("ID", "ACTOR", "OP", "KEY", "STATE", "LAST", "STARTED", "ENDED")


def streams_table(rows: list[dict[str, Any]]) -> list[str]:
    """The streams listing as aligned plain lines (a header, then one line per stream)."""
    table = [list(STREAM_COLUMNS)]
    for row in rows:
        last = row.get("last_seq")
        table.append(
            [
                str(row.get("id")),
                str(row.get("actor")),
                str(row.get("op")),
                str(row.get("key") or "-"),
                str(row.get("state")),
                "-" if last is None else str(last),
                _short_time(row.get("started")),
                _short_time(row.get("ended")),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(STREAM_COLUMNS))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip() for line in table]


def _short_time(stamp: Any) -> str:
    """An ISO UTC stamp without the date's punctuation noise: ``2026-12-01 21:03:04``."""
    if not stamp:
        return "-"
    return str(stamp).replace("T", " ").split(".")[0]
