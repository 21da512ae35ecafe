"""Notifications: ``[[notify]]`` hooks that run a command and/or POST to a URL on events.

::

    [[notify]]
    command = ["/usr/local/bin/page-me", "--team", "ops"]   # the event as JSON on stdin
    url = "https://hooks.example/pulsing"                     # POSTed as JSON
    events = ["failed", "failure"]                            # kinds (default ["failed"])
    actors = ["worker-*"]                                     # names/patterns (default all)
    timeout = 10.0
    min_interval = 1.0

Off the supervision path: the event log calls ``Notifier.offer`` synchronously from
``emit``, which only appends the event to the matching hooks' pending lists and
wakes their tasks. Each hook has one task that delivers; nothing the hook does (a
slow command, a hanging URL, a crash) is awaited by an ask, a restart or the event
log. A hook that fails, exits non-zero or outlives its timeout (its process group is
killed) is logged as ``event=notify_failed`` and the next delivery goes ahead.

Bursts are coalesced, never forked as a storm: a hook runs at most one delivery at
a time and starts the next no sooner than ``min_interval`` seconds after the
previous one started. Events arriving meanwhile are batched into the next delivery:
its JSON is the newest event of the batch with ``"coalesced": N`` (events it stands
for) and ``"events": [...]`` (the batch, oldest first, at most ``BATCH_KEEP``).
A lone event is delivered as it is. So a hook runs at most ``1 / min_interval``
times a second however many actors fail; the event log (``pulsing events``) keeps
every event.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulsing_daemon import __version__, log, spawn

EVENT_KINDS = ("state", "failure", "restart", "failed", "operator", "reload", "daemon")
BATCH_KEEP = 100  # events carried in one coalesced delivery (older ones only counted)
OUTPUT_KEEP = 400  # characters of a failed command's output kept for the log line
SHUTDOWN_GRACE = 2.0  # seconds deliveries in flight get when the daemon stops


@dataclass(frozen=True)
class NotifyConfig:
    """One ``[[notify]]`` table."""

    index: int  # 1-based, as the log names it: notify[1]
    command: tuple[str, ...] | None = None
    url: str | None = None
    events: tuple[str, ...] = ("failed",)
    actors: tuple[str, ...] = ()  # names or shell patterns; empty: every actor
    timeout: float = 10.0
    min_interval: float = 1.0
    headers: Mapping[str, str] | None = None

    @property
    def name(self) -> str:
        return f"notify[{self.index}]"

    def wants(self, event: Mapping[str, Any]) -> bool:
        if "*" not in self.events and event.get("kind") not in self.events:
            return False
        if not self.actors:
            return True
        actor = event.get("actor")
        return actor is not None and any(fnmatch.fnmatchcase(actor, p) for p in self.actors)


# --------------------------------------------------------------------------- config


def _command(value: Any) -> tuple[str, ...]:
    from pulsing_daemon.keyspec import Invalid

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid(
            'expected a non-empty array of strings, e.g. ["/usr/local/bin/page-me", "--urgent"]'
        )
    if not value[0].strip():
        raise Invalid("the program (first element) must not be empty")
    return tuple(value)


def _url(value: Any) -> str:
    from pulsing_daemon.keyspec import Invalid, string_key

    text = string_key(value).strip()
    if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise Invalid(f"expected an http:// or https:// URL, got {text[:60]!r}")
    return text


def _kinds(value: Any) -> tuple[str, ...]:
    from pulsing_daemon.keyspec import Invalid

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid(f"expected a non-empty array of event kinds ({', '.join(EVENT_KINDS)}, *)")
    unknown = [v for v in value if v != "*" and v not in EVENT_KINDS]
    if unknown:
        raise Invalid(
            f"unknown event kind {unknown[0]!r} (expected: {', '.join(EVENT_KINDS)}, or *)"
        )
    return tuple(value)


def _patterns(value: Any) -> tuple[str, ...]:
    from pulsing_daemon.keyspec import Invalid

    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Invalid("expected an array of actor names or shell patterns ('worker-*')")
    return tuple(value)


def _specs() -> tuple[Any, ...]:
    from pulsing_daemon.keyspec import KeySpec, number_key, string_table_key

    return (
        KeySpec("command", "array", None, _command,
                "program and arguments to run for each delivery, the event as JSON on "
                "stdin (not through a shell); set command, url or both", nullable=True),
        KeySpec("url", "string", None, _url,
                "http:// or https:// URL the event is POSTed to as JSON", nullable=True),
        KeySpec("events", "array", ["failed"], _kinds,
                "event kinds that trigger the hook: state, failure, restart, failed, "
                "operator, reload, daemon, or * for all"),
        KeySpec("actors", "array", None, _patterns,
                "only events of these actors (names or shell patterns); unset: every actor "
                "(daemon events have no actor and pass only when unset)", nullable=True),
        KeySpec("timeout", "float", 10.0, number_key(positive=True),
                "seconds a delivery may take; a command still running then is killed "
                "(its process group)"),
        KeySpec("min_interval", "float", 1.0, number_key(minimum=0),
                "seconds between the starts of two deliveries of this hook; events in "
                "between are coalesced into the next one"),
        KeySpec("headers", "table", None, string_table_key,
                "extra HTTP headers for url (e.g. Authorization)", nullable=True),
    )  # fmt: skip


NOTIFY_SPECS: tuple[Any, ...] = _specs()


def parse_notify(raw: Any, problems: Any) -> tuple[NotifyConfig, ...]:
    """The ``[[notify]]`` tables of a config file (problems are added to ``problems``)."""
    from pulsing_daemon.config_tables import INVALID, read_table
    from pulsing_daemon.keyspec import got

    if not isinstance(raw, list):
        problems.add(("notify",), f"expected [[notify]] tables, got {got(raw)}")
        return ()
    specs = {spec.name: spec for spec in NOTIFY_SPECS}
    hooks: list[NotifyConfig] = []
    for number, table in enumerate(raw, start=1):
        where = ("notify", str(number))
        if not isinstance(table, dict):
            problems.add(where, f"expected a table, got {got(table)}")
            continue
        values = read_table(table, specs, where, problems)
        if any(value is INVALID for value in values.values()):
            continue
        if values.get("command") is None and values.get("url") is None:
            problems.add(where, "set command, url or both")
            continue
        hooks.append(NotifyConfig(index=number, **values))
    return tuple(hooks)


# --------------------------------------------------------------------------- delivery


class _Hook:
    """One hook's pending events and the task that delivers them."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.pending: list[dict[str, Any]] = []
        self.skipped = 0  # events of the batch not carried (beyond BATCH_KEEP)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def offer(self, event: dict[str, Any]) -> None:
        if len(self.pending) >= BATCH_KEEP:
            self.pending.pop(0)
            self.skipped += 1
        self.pending.append(event)
        self.wakeup.set()

    def take(self) -> dict[str, Any]:
        """The next delivery's JSON: the lone event, or the newest with the batch."""
        batch, skipped = self.pending, self.skipped
        self.pending, self.skipped = [], 0
        if len(batch) == 1 and not skipped:
            return batch[0]
        return {**batch[-1], "coalesced": len(batch) + skipped, "events": batch}


class Notifier:
    """Runs the ``[[notify]]`` hooks for the events of an event log."""

    def __init__(self, hooks: Iterable[NotifyConfig] = ()) -> None:
        self._hooks: list[_Hook] = []
        self._session: Any = None  # aiohttp.ClientSession, made at the first URL delivery
        self._closed = False
        self.configure(hooks)

    def configure(self, hooks: Iterable[NotifyConfig]) -> None:
        """Use these hooks from now on (at start, and after a reload)."""
        old, self._hooks = self._hooks, [_Hook(config) for config in hooks]
        for hook in old:
            if hook.task is not None and not hook.pending:
                hook.task.cancel()

    @property
    def hooks(self) -> list[NotifyConfig]:
        return [hook.config for hook in self._hooks]

    def offer(self, event: dict[str, Any]) -> None:
        """The event log's listener: queue the event for the hooks that want it. Never
        blocks and never raises into the emitter."""
        if self._closed:
            return
        for hook in self._hooks:
            try:
                if not hook.config.wants(event):
                    continue
                hook.offer(event)
                if hook.task is None or hook.task.done():
                    hook.task = asyncio.get_running_loop().create_task(self._run(hook))
            except RuntimeError:  # no running loop (a synchronous emitter): nothing to run on
                return

    async def _run(self, hook: _Hook) -> None:
        loop = asyncio.get_running_loop()
        last_start: float | None = None
        while hook.pending:
            if last_start is not None:
                wait = last_start + hook.config.min_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # events arriving meanwhile join the batch
            last_start = loop.time()
            payload = hook.take()
            await self._deliver(hook, payload)
            if not hook.pending:
                # Stay for min_interval so a burst right after is coalesced, then end.
                hook.wakeup.clear()
                try:
                    await asyncio.wait_for(hook.wakeup.wait(), hook.config.min_interval)
                except asyncio.TimeoutError:
                    return

    async def _deliver(self, hook: _Hook, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=str, separators=(",", ":")).encode()
        config = hook.config
        if config.command is not None:
            await self._guarded(hook, payload, "command", self._run_command(config, payload, body))
        if config.url is not None:
            await self._guarded(hook, payload, "url", self._post(config, body))

    async def _guarded(self, hook: _Hook, payload: dict[str, Any], how: str, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            hook.failed += 1
            log.event(
                "notify_failed",
                level=30,
                category="runtime",
                hook=hook.config.name,
                via=how,
                actor=payload.get("actor"),
                kind=payload.get("kind"),
                event_id=payload.get("id"),
                reason=str(exc) or type(exc).__name__,
            )
        else:
            hook.delivered += 1

    async def _run_command(
        self, config: NotifyConfig, payload: dict[str, Any], body: bytes
    ) -> None:
        assert config.command is not None
        env = {
            **os.environ,
            "PULSING_EVENT_ID": str(payload.get("id", "")),
            "PULSING_EVENT_KIND": str(payload.get("kind", "")),
            "PULSING_EVENT_ACTOR": str(payload.get("actor") or ""),
        }
        try:
            # spawn.start, not the loop's subprocess_exec: no loop stall while it forks.
            proc = await spawn.start(
                config.command,
                stdin=spawn.PIPE,
                stdout=spawn.PIPE,
                stderr=spawn.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except OSError as exc:
            raise _HookError(f"cannot run {config.command[0]!r}: {exc.strerror or exc}") from None
        try:
            output = await asyncio.wait_for(_talk(proc, body + b"\n"), config.timeout)
        except asyncio.TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            raise _HookError(f"timed out after {config.timeout:g}s; killed") from None
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                await proc.wait()
        if proc.returncode != 0:
            text = output.decode(errors="replace").strip().replace("\n", " | ")[-OUTPUT_KEEP:]
            raise _HookError(f"exit status {proc.returncode}" + (f": {text}" if text else ""))

    async def _post(self, config: NotifyConfig, body: bytes) -> None:
        assert config.url is not None
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json", "User-Agent": f"pulsing/{__version__}"}
        headers.update(config.headers or {})
        try:
            async with self._session.post(
                config.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    raise _HookError(f"{config.url} answered HTTP {response.status}")
        except asyncio.TimeoutError:
            raise _HookError(f"{config.url}: no answer within {config.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise _HookError(f"{config.url}: {type(exc).__name__}: {exc}") from None

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Give deliveries in flight ``grace`` seconds (the daemon is stopping), then end."""
        self._closed = True
        tasks = [
            hook.task for hook in self._hooks if hook.task is not None and not hook.task.done()
        ]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        if self._session is not None:
            await self._session.close()


class _HookError(Exception):
    """A delivery that did not succeed: the reason goes to the log."""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _talk(proc: spawn.Child, data: bytes) -> bytes:
    """Give a hook the event on its stdin, then read its output until it exits. A hook
    that does not read its stdin (exits first) is fine: its exit status tells."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(data)  # one event: far below a pipe's buffer
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError, RuntimeError):
        # It exited without reading. (uvloop says so with a RuntimeError: "unable to
        # perform operation on <WriteUnixTransport closed=True ...>".)
        pass
    finally:
        try:
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass
    output = await proc.stdout.read()
    await proc.wait()
    return output
