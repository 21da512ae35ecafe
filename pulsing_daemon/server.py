"""Run the daemon in the foreground: load config, serve HTTP, stop gracefully.

Signals (``SIGNALS``; pulsing-daemon(1) documents each): SIGTERM, SIGINT and SIGQUIT
stop gracefully -- no new work, accepted asks finish within ``grace_period``, the
actors stop (``on_stop``), durable state is flushed, exit 0. SIGHUP reloads the config
(``pulsing_daemon.reload``). SIGUSR1 and SIGUSR2 are logged and ignored; SIGPIPE is
ignored (Python's default). Every signal handled is logged (``event=signal``).

One daemon per ``state_dir``: the lock of ``pulsing_daemon.storage.lock`` is taken
before any durable state is opened, and held until the daemon exits.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import stat
import sys
from pathlib import Path

from aiohttp import web

from pulsing_daemon import __version__, affinity, eventloop, log
from pulsing_daemon.config import Config, ConfigError, load_config, with_listen
from pulsing_daemon.exceptions import PulsingError
from pulsing_daemon.http import AUTH, READINESS, Runner, build_app, expect_handler
from pulsing_daemon.idempotency import IdempotencyStore
from pulsing_daemon.journal import Journal
from pulsing_daemon.notify import Notifier
from pulsing_daemon.readiness import announce_ready, notify_systemd
from pulsing_daemon.reload import Reloader, ReloadRefused
from pulsing_daemon.reload import add_routes as add_reload_routes
from pulsing_daemon.storage import capture
from pulsing_daemon.storage import lock as state_lock
from pulsing_daemon.storage import logs as actor_logs
from pulsing_daemon.storage.events import EventLog
from pulsing_daemon.streams import StreamManager
from pulsing_daemon.supervisor import Supervisor

# A connection that sends no complete request for this long is closed (idle keep-alive
# connections and clients that never finish their headers alike).
IDLE_TIMEOUT = float(os.environ.get("PULSING_IDLE_TIMEOUT", "30"))  # env: for tests
MAX_HEADER = 8190  # bytes per header line; larger is 431
# The cyclic garbage collector's young generation is collected after this many net
# allocations of container objects (CPython's default: 700). Under load every ask in
# flight holds a few dozen of them for several loop turns (envelope, futures, frames;
# a keyed ask's claim and outcome wait for group commits), so at 700 a collection ran
# every few asks and walked every object in flight. Garbage without cycles is freed by
# reference counting as always; cyclic garbage waits for a few thousand more
# allocations. Measured with 64 connections: daemon CPU per keyed sync ask -10%, per
# keyed async and plain ask -1 to -3% (benchmarks/README.md, "Performance tricks").
GC_YOUNG_THRESHOLD = 10_000

# What each signal a service manager may send does (see the module docstring).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
IGNORED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class StartupError(Exception):
    """The daemon cannot start (bad state_dir, address in use, ...)."""


def prepare_state_dir(path: Path) -> None:
    """Create ``state_dir`` 0700; refuse one that others can write or that we do not own."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise StartupError(f"cannot create state_dir {path}: {exc.strerror}") from None
    if info.st_mode & stat.S_IWOTH:
        raise StartupError(f"state_dir {path} is world-writable; run: chmod o-w {path}")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise StartupError(f"state_dir {path} is owned by uid {info.st_uid}, not by us")


async def serve(
    config: Config, *, ready: asyncio.Event | None = None, listen_override: str | None = None
) -> None:
    daemon = config.daemon
    # Signals first: a SIGTERM that arrives while starting still means a clean stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    for signum in IGNORED_SIGNALS:
        loop.add_signal_handler(signum, _on_ignored_signal, signum)
    reloading = _SignalReload()
    loop.add_signal_handler(signal.SIGHUP, reloading.on_signal)
    if daemon.cpu_affinity:
        affinity.pin(daemon.cpu_affinity)
        log.event("cpu_affinity", cpus=",".join(map(str, daemon.cpu_affinity)))
    prepare_state_dir(daemon.state_dir)
    try:
        held = state_lock.acquire(daemon.state_dir)
    except state_lock.StateDirLocked as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot lock state_dir {daemon.state_dir}: {exc.strerror}") from None
    try:
        await _serve_locked(config, stop, reloading, ready, listen_override)
    finally:
        held.release()


async def _serve_locked(
    config: Config,
    stop: asyncio.Event,
    reloading: _SignalReload,
    ready: asyncio.Event | None,
    listen_override: str | None,
) -> None:
    daemon = config.daemon
    journal = Journal(daemon.state_dir)
    journal.checkpoint_in_background()
    events = EventLog(daemon.state_dir / "events.db", keep=daemon.events_keep)
    logs = actor_logs.LogStore(daemon.state_dir / "logs")
    if os.environ.get("PULSING_LOG_CAPTURE", "1") != "0":  # 0: a diagnostic switch
        capture.install()
    logs.start()
    supervisor = Supervisor(config, events, logs)
    notifier = Notifier(config.notify)
    events.add_listener(notifier.offer)
    streams = StreamManager(journal, supervisor, daemon)
    idempotency = IdempotencyStore(journal, daemon.idempotency_retention)
    orphaned = streams.recover()
    if orphaned:
        log.event("recovered", streams_orphaned=orphaned)
    app = build_app(
        supervisor,
        streams,
        idempotency,
        token=daemon.resolved_token(),
        max_body=daemon.max_body,
        max_readers=daemon.max_stream_readers,
    )
    reloader = Reloader(
        supervisor, streams, idempotency, app[AUTH], listen_override=listen_override,
        notifier=notifier,
    )
    add_reload_routes(app, reloader, expect_handler)
    runner = Runner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=IDLE_TIMEOUT,
        max_field_size=MAX_HEADER,
        max_line_size=MAX_HEADER,
    )
    readiness = app[READINESS]
    await runner.setup()
    try:
        if daemon.is_unix:
            sock_path = daemon.unix_path
            assert sock_path is not None
            if sock_path.exists() and sock_path.is_socket():
                sock_path.unlink()  # a stale socket from a previous run
            site: web.BaseSite = web.UnixSite(runner, str(sock_path))
            old_umask = os.umask(0o177)
            try:
                await site.start()
            finally:
                os.umask(old_umask)
            _share_socket(sock_path, daemon.socket_group, daemon.socket_mode)
            endpoint = f"unix:{sock_path}"
        else:
            site = web.TCPSite(runner, daemon.host, daemon.port, reuse_address=True)
            await site.start()
            endpoint = f"http://{daemon.listen}"
    except OSError as exc:
        await runner.cleanup()
        journal.close()
        events.close()
        logs.close()
        capture.uninstall()
        raise StartupError(f"cannot listen on {daemon.listen}: {exc.strerror or exc}") from None

    supervisor.start()
    reloading.reloader = reloader
    log.event(
        "listening",
        endpoint=endpoint,
        pid=os.getpid(),
        version=__version__,
        config=str(config.path),
        loop=eventloop.loop_name(asyncio.get_running_loop()),
    )
    if ready is not None:
        ready.set()
    housekeeping = asyncio.create_task(_housekeeping(streams, idempotency))
    announcing = asyncio.create_task(announce_ready(supervisor, readiness))
    await stop.wait()

    reloader.shutting_down = True
    daemon = supervisor.config.daemon  # a reload may have changed grace_period
    log.event("shutdown", grace=daemon.grace_period)
    announcing.cancel()
    notify_systemd("STOPPING=1")
    events.emit("daemon", None, event="stopping")
    housekeeping.cancel()
    streams.shutting_down = True
    await supervisor.shutdown(daemon.grace_period)
    if "pulsing_daemon.hosts.ray_runtime" in sys.modules:  # the Ray host's runtime: disconnect,
        await sys.modules["pulsing_daemon.hosts.ray_runtime"].shutdown()  # stop a local instance
    streams.shutdown()
    events.close()  # ends the followers' streams, so cleanup need not wait for them
    await notifier.close()
    logs.close()
    capture.uninstall()
    await runner.cleanup()
    journal.close()
    if daemon.is_unix and daemon.unix_path is not None:
        try:
            daemon.unix_path.unlink()
        except OSError:
            pass
    log.event("exited")


def _share_socket(path: Path, group: str | None, mode: int) -> None:
    """Give the Unix socket its group and mode (``socket_group``/``socket_mode``)."""
    if group is not None:
        import grp

        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            os.chown(path, -1, gid)
        except (KeyError, OSError) as exc:
            reason = "no such group" if isinstance(exc, KeyError) else exc.strerror
            raise StartupError(f"cannot give the socket {path} group {group!r}: {reason}") from None
    os.chmod(path, mode)


async def _housekeeping(
    streams: StreamManager, idempotency: IdempotencyStore, every: float = 60.0
) -> None:
    """Prune expired stream chunks and idempotency records, now and then every minute."""
    while True:
        dropped_streams = streams.prune()
        dropped_asks = idempotency.prune()
        if dropped_streams or dropped_asks:
            log.event("pruned", streams=dropped_streams, idempotency_records=dropped_asks)
        await asyncio.sleep(every)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    log.event("signal", signal=signal.Signals(signum).name, action="stop")
    stop.set()


def _on_ignored_signal(signum: int) -> None:
    log.event("signal", signal=signal.Signals(signum).name, action="ignored")


class _SignalReload:
    """SIGHUP: reload in a task; the outcome is logged (``event=reload`` or
    ``event=reload_failed``), as nobody waits for an answer."""

    def __init__(self) -> None:
        self.reloader: Reloader | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def on_signal(self) -> None:
        if self.reloader is None:
            log.event("signal", signal="SIGHUP", action="ignored", msg="still starting")
            return
        log.event("signal", signal="SIGHUP", action="reload")
        task = asyncio.ensure_future(self._reload(self.reloader))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _reload(reloader: Reloader) -> None:
        try:
            await reloader.reload(trigger="SIGHUP")
        except ReloadRefused:
            pass  # logged by the reloader, problem by problem
        except PulsingError as exc:
            log.event("reload_failed", category="runtime", trigger="SIGHUP", msg=exc.message)
        except Exception as exc:  # a bug in pulsing: the daemon keeps serving
            log.event(
                "reload_failed", category="runtime", trigger="SIGHUP",
                type=type(exc).__name__, msg=str(exc),
            )  # fmt: skip
            log.logger.debug("reload failed", exc_info=True)


def main(
    config_path: str,
    *,
    listen: str | None = None,
    log_level: str = "info",
    json_logs: bool = False,
) -> int:
    """Run until signalled. Returns the process exit code."""
    log.setup(log_level, json_lines=json_logs)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    os.umask(0o077)  # state files, WAL and sockets: owner only
    # Until serve() installs its handlers, these must not end the process silently.
    for signum in (signal.SIGHUP, *IGNORED_SIGNALS):
        signal.signal(signum, signal.SIG_IGN)
    try:
        config = load_config(config_path)
        if listen is not None:
            config = with_listen(config, listen)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"pulsing daemon: {problem}", file=sys.stderr)
        print(
            f"pulsing daemon: {len(exc.problems)} problem(s) in config; not starting",
            file=sys.stderr,
        )
        return 2
    try:
        choice = eventloop.choose()
    except eventloop.LoopChoiceError as exc:
        print(f"pulsing daemon: {exc}", file=sys.stderr)
        return 2
    try:
        eventloop.run(serve(config, listen_override=listen), choice)
    except StartupError as exc:
        print(f"pulsing daemon: {exc}", file=sys.stderr)
        return 1
    return 0
