"""``isolation = "ray"``: the instance is a Ray actor on a cluster; the daemon supervises it.

Same interface as the other hosts (``hosts.base.ActorHost``), so supervision, deadlines,
streams, idempotency, logs and events do not know Ray exists. The worker side is
``hosts.ray_worker.PulsingRayWorker``; plain data crosses between the two (results as JSON
text, exceptions described as a process child describes them), so user errors arrive
with their category, code, details and ``recoverable``, and failures with the
worker's traceback.

The daemon is the only supervisor: Ray actors are created with ``max_restarts=0`` and
``max_task_retries=0``. An instance ends when

- its process dies, with a call in flight (that call fails with :class:`RayLost`, an
  ``InstanceLost``: a keyed ask's outcome is unknown) or idle (the ``watch`` call kept
  open for the instance's life fails) -- cause ``process``;
- its node is lost (the node is dead in the GCS, or its raylet refuses connections) --
  cause ``node_lost``;
- the daemon kills it at an op's deadline (``kill_on_timeout``) -- cause ``timeout``;
- ``run()`` returns or raises on the worker -- reported by ``watch``.

Each end is reported once, through ``exited`` or the failing call. Asks are refused
(unknown op, bad arguments) before anything is sent, from the class imported here.

Deadlines: the remaining budget travels with each call and the worker never starts a
call whose budget is spent (Ray's own cancel does not stop a queued sync call). At the
deadline an async op is cancelled on the worker; a sync op runs to its end (the actor
stays busy, as inline) unless ``kill_on_timeout`` kills the Ray actor.

The connection to Ray (:class:`RayRuntime`) is made when the first Ray actor starts:
Ray is never imported otherwise. With ``address = "local"`` the daemon starts a
private instance through ``hosts.ray_local`` and stops it at shutdown.

Registered as ``isolation = "ray"`` (hosts/registry.py), with its keys: the per-actor
``ray`` table and ``[daemon.ray]``. This module imports Ray only when a Ray actor starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulsing_daemon import log
from pulsing_daemon.exceptions import (
    PulsingBusinessError,
    PulsingRuntimeError,
)
from pulsing_daemon.hosts.base import (
    ActorHost,
    Exit,
    HostFailure,
    HostKeys,
    InstanceLost,
    NotStarted,
    call_deadline,
)
from pulsing_daemon.hosts.ops import OpKind, bind_arguments, resolve_op
from pulsing_daemon.hosts.process import ChildError, Unserializable, _exception
from pulsing_daemon.hosts.registry import register
from pulsing_daemon.hosts.threads import loop_post
from pulsing_daemon.keyspec import (
    Invalid,
    KeySpec,
    integer_key,
    number_key,
    string_key,
    table_key,
)
from pulsing_daemon.storage import logs

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig, DaemonConfig

START_TIMEOUT = 60.0  # creating the Ray actor and running the constructor
CONNECT_TIMEOUT = 90.0  # starting a local instance and connecting to it
STOP_GRACE = 5.0
CANCEL_GRACE = 1.0
STREAM_BACKPRESSURE = 4  # chunk batches produced ahead of the daemon's journal
NODE_PROBE_TIMEOUT = 1.0
SIGNALS_KEPT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class RayDied(HostFailure):
    """The Ray actor of an instance ended while it was supposed to run; ``where`` says
    why ("process", "node_lost", "timeout", "start")."""

    type_name = "RayActorDied"

    def __init__(self, message: str, *, cause: str = "process") -> None:
        super().__init__(message)
        self.where = cause


class RayLost(RayDied, InstanceLost):
    """The Ray actor died while a call sent to it had not answered: its outcome is unknown."""


class RayUnavailable(PulsingRuntimeError):
    """The daemon cannot reach Ray (not installed, cluster unreachable)."""


# --------------------------------------------------------------------------- config keys

RAY_INSTALL_HINT = "pip install 'pulsing-supervisor[ray]'"
_ADDRESS_FORMS = "expected 'local', 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"


def _ray_address(value: Any) -> str:
    address = string_key(value).strip()
    if address in ("local", "auto"):
        return address
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise Invalid(f"{_ADDRESS_FORMS} (got {address!r})")
    return address


def _ray_namespace(value: Any) -> str:
    namespace = string_key(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", namespace):
        raise Invalid("use letters, digits, '_', '.' and '-' (at most 128 characters)")
    return namespace


def _resources(value: Any) -> dict[str, float]:
    table = table_key(value)
    found: list[Invalid] = []
    for key, amount in table.items():
        if not key.strip():
            found.append(Invalid("a resource name must not be empty", (key,)))
        elif key in ("CPU", "GPU", "memory"):
            found.append(Invalid(f"set {key!r} with num_cpus, num_gpus or memory", (key,)))
        else:
            try:
                table[key] = number_key(minimum=0)(amount)
            except Invalid as exc:
                found.append(Invalid(str(exc), (key,)))
    if found:
        raise Invalid(str(found[0]), found[0].at, tuple(found[1:]))
    return table


def _runtime_env(value: Any) -> dict[str, Any]:
    table = table_key(value)
    try:
        json.dumps(table)
    except (TypeError, ValueError) as exc:  # pragma: no cover - TOML values always are
        raise Invalid(f"must be plain data: {exc}") from None
    return table


def _ray_options(value: Any) -> dict[str, Any]:
    """The per-actor ``ray = {...}`` table, every sub-key checked (a problem names it)."""
    table = table_key(value)
    specs = {spec.name: spec for spec in RAY_OPTION_SPECS}
    options: dict[str, Any] = {}
    found: list[Invalid] = []
    for key, raw in table.items():
        spec = specs.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(specs), n=1, cutoff=0.6)
            hint = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
            found.append(Invalid(hint, (key,)))
            continue
        if raw is None and spec.nullable:
            options[key] = None
            continue
        try:
            options[key] = spec.check(raw)
        except Invalid as exc:
            found.extend(Invalid(str(each), (key, *each.at)) for each in exc.each())
    if found:
        raise Invalid(str(found[0]), found[0].at, tuple(found[1:]))
    return options


# [daemon.ray]: the cluster isolation = "ray" actors live on.
RAY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("address", "string", "local", _ray_address,
            "'local': a private Ray instance the daemon starts and stops itself (no "
            "dashboard, no usage reporting, session files under state_dir/ray); 'auto', "
            "'HOST:PORT' or 'ray://HOST:PORT': join an existing cluster"),
    KeySpec("namespace", "string", "pulsing", _ray_namespace,
            "Ray namespace the daemon's actors are created in"),
)  # fmt: skip

# The per-actor ray = {...} table.
RAY_OPTION_SPECS: tuple[KeySpec, ...] = (
    KeySpec("num_cpus", "float", None, number_key(minimum=0),
            "CPUs the Ray actor reserves (unset: Ray's default for actors, 1 to be placed "
            "and 0 while it runs)", nullable=True),
    KeySpec("num_gpus", "float", None, number_key(minimum=0),
            "GPUs the Ray actor reserves; it lands on a node that has them", nullable=True),
    KeySpec("memory", "integer", None, integer_key(1),
            "bytes of memory the Ray actor reserves for scheduling", nullable=True),
    KeySpec("resources", "table", {}, _resources,
            "custom Ray resources to reserve, name = amount (places the actor on nodes "
            "started with them)"),
    KeySpec("runtime_env", "table", {}, _runtime_env,
            "Ray runtime_env of the actor (env_vars, working_dir, pip, ...)"),
)  # fmt: skip


def _settings(daemon: DaemonConfig) -> dict[str, Any]:
    """The [daemon.ray] values (defaults when the table is absent)."""
    values = {spec.name: spec.default for spec in RAY_SPECS}
    values.update(daemon.hosts.get("ray", {}))
    return values


# --------------------------------------------------------------------------- the runtime


class RayRuntime:
    """The daemon's one connection to Ray, made on first use."""

    def __init__(self, daemon: DaemonConfig) -> None:
        self.daemon = daemon
        self.address: str | None = None
        self.keeper: subprocess.Popen[str] | None = None
        self.worker_class: Any = None
        self._keeper_dir: Path | None = None
        self._spares: dict[str, tuple[str, Any]] = {}
        self._failed: set[str] = set()
        self._lock = asyncio.Lock()
        self._connected = False

    async def connect(self) -> None:
        async with self._lock:
            if self._connected:
                return
            started = time.monotonic()
            address = _settings(self.daemon)["address"]
            if address == "local":
                # Spawned from the loop's thread: the keeper's parent-death signal is tied
                # to the thread that forked it, and this one lives as long as the daemon.
                port = self._spawn_keeper()
                address = await asyncio.to_thread(self._await_keeper, port)
            saved = {signum: signal.getsignal(signum) for signum in SIGNALS_KEPT}
            try:
                await asyncio.to_thread(self._init, address)
            finally:  # ray.init must not take over the daemon's signals
                for signum, handler in saved.items():
                    if signal.getsignal(signum) is not handler and handler is not None:
                        signal.signal(signum, handler)
            self.address = address
            self._connected = True
            log.event(
                "ray_connected",
                address=address,
                namespace=_settings(self.daemon)["namespace"],
                seconds=round(time.monotonic() - started, 2),
            )

    def session_dir(self) -> Path:
        """Where a local instance keeps its files: state_dir/ray, or a short path under
        the temp dir linked from there when state_dir is too deep for Ray's sockets
        (AF_UNIX paths hold 107 bytes; Ray's go ~70 bytes below its temp dir)."""
        directory = self.daemon.state_dir / "ray"
        if len(str(directory)) <= 36:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            return directory
        link = directory
        if link.is_symlink() and link.resolve().is_dir():
            return link.resolve()
        if link.is_symlink():
            link.unlink()
        from pulsing_daemon.hosts.ray_local import TEMP_PREFIX

        short = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(short, target_is_directory=True)
        return short

    def _spawn_keeper(self) -> int:
        from pulsing_daemon.hosts.ray_local import private_env

        directory = self.session_dir()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # The daemon (Ray's driver here) gets the Ray settings; HOME and the rest of the
        # private environment are for the instance's own processes only.
        os.environ.update(
            {key: value for key, value in private_env(directory).items() if key.startswith("RAY_")}
        )
        self.keeper = subprocess.Popen(
            [sys.executable, "-m", "pulsing_daemon.hosts.ray_local", "--dir", str(directory),
             "--port", str(port), "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self._keeper_dir = directory
        return port

    def _await_keeper(self, port: int) -> str:
        assert self.keeper is not None and self.keeper.stdout is not None
        directory = self._keeper_dir
        line = _readline(self.keeper.stdout, CONNECT_TIMEOUT)
        if line != "ready":
            self._stop_keeper()
            raise RayUnavailable(
                f"could not start the local Ray instance: {line or 'no answer'}", status=503
            )
        log.event("ray_local_started", port=port, dir=str(directory), pid=self.keeper.pid)
        return f"127.0.0.1:{port}"

    def _init(self, address: str) -> None:
        # Usage stats stay off whatever the cluster; joining one, the token is the user's.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/")
        # Ray's C++ core installs a failure signal handler in its driver that catches
        # SIGTERM (dumps a stack, then aborts the process): the daemon's signals stay its own.
        os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                f'isolation = "ray" needs Ray, which is not installed: {RAY_INSTALL_HINT}',
                status=503,
            ) from None
        from pulsing_daemon.hosts.ray_worker import PulsingRayWorker

        logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            ray.init(
                address=address,
                namespace=_settings(self.daemon)["namespace"],
                log_to_driver=False,  # the worker sends the actor's output itself
                logging_level=logging.ERROR,
                ignore_reinit_error=True,
            )
        except Exception as exc:
            raise RayUnavailable(
                f"cannot connect to Ray at {address!r}: {type(exc).__name__}: {exc}", status=503
            ) from None
        self.worker_class = ray.remote(PulsingRayWorker)

    def _stop_keeper(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is None or keeper.poll() is not None:
            return
        keeper.terminate()
        try:
            keeper.wait(timeout=3 * STOP_GRACE)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()

    async def shutdown(self) -> None:
        """Disconnect; a local instance is stopped and its session files removed."""
        for name in list(self._spares):
            self.drop_spare(name)
        if self._connected:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._connected = False
        if self.keeper is not None:
            await asyncio.to_thread(self._stop_keeper)
            link = self.daemon.state_dir / "ray"
            if link.is_symlink():  # the short directory under the temp dir goes too
                shutil.rmtree(link.resolve(), ignore_errors=True)
                link.unlink()
            log.event("ray_local_stopped")

    # Warm spares. A new Ray actor takes 0.3-1 s to come up (a worker process, imports),
    # while the daemon's backoff may be 50 ms. An actor that has failed once keeps one
    # idle worker ready for its next restart -- only when it reserves nothing (no GPU,
    # custom resource or memory is held by a spare), and dropped when it is stopped.
    def has_failed(self, name: str) -> bool:
        return name in self._failed

    def note_failure(self, name: str) -> None:
        self._failed.add(name)

    def take_spare(self, name: str, options: dict[str, Any]) -> Any:
        spare = self._spares.pop(name, None)
        if spare is None:
            return None
        key, handle = spare
        if key != _options_key(options):  # the config changed: a spare of the old one
            _kill(handle)
            return None
        return handle

    def make_spare(self, name: str, options: dict[str, Any], create: Any) -> None:
        if name not in self._spares:
            self._spares[name] = (_options_key(options), create(options))

    def drop_spare(self, name: str) -> None:
        spare = self._spares.pop(name, None)
        if spare is not None:
            _kill(spare[1])
        self._failed.discard(name)

    def node_lost(self, node_id: str | None) -> bool:
        """Whether ``node_id`` is dead: marked so in the GCS, or its raylet refuses."""
        if not node_id:
            return False
        import ray

        try:
            nodes = ray.nodes()
        except Exception:
            return False
        for node in nodes:
            if node.get("NodeID") != node_id:
                continue
            if not node.get("Alive", False):
                return True
            address = (node.get("NodeManagerAddress"), node.get("NodeManagerPort"))
            try:
                socket.create_connection(address, timeout=NODE_PROBE_TIMEOUT).close()
            except OSError:
                return True
            return False
        return True  # no longer known to the cluster


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def _reserves_nothing(options: dict[str, Any]) -> bool:
    return (
        not options.get("num_gpus")
        and not options.get("resources")
        and not options.get("memory")
        and options.get("num_cpus") in (None, 0, 0.0)
    )


def _kill(handle: Any) -> None:
    import ray

    try:
        ray.kill(handle, no_restart=True)
    except Exception:
        pass


def _readline(stream: Any, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


_RUNTIME: RayRuntime | None = None


def runtime(daemon: DaemonConfig) -> RayRuntime:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = RayRuntime(daemon)
    return _RUNTIME


async def shutdown() -> None:
    """Daemon stop: disconnect from Ray and stop a local instance (no-op when unused)."""
    global _RUNTIME
    if _RUNTIME is not None:
        current, _RUNTIME = _RUNTIME, None
        await current.shutdown()


# --------------------------------------------------------------------------- the host


def _ray_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.RaySystemError)


def _unwrap(exc: BaseException) -> BaseException:
    """A Ray wrapper turned back into what it wraps (a RayTaskError's cause), or a
    system error naming it."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
        return ChildError(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    return exc


@register
class RayHost(ActorHost):
    """The instance is a Ray actor (``PulsingRayWorker``) on the cluster of [daemon.ray]."""

    isolation = "ray"
    summary = "a Ray actor on the cluster of [daemon.ray]; needs the [ray] extra"
    keys = HostKeys(
        actor=(
            KeySpec("ray", "table", {}, _ray_options,
                    "ray isolation: the Ray actor's resources and placement, a table of "
                    "the keys below (ray.num_cpus, ...)"),
        ),
        exclusive=("ray",),
        daemon=RAY_SPECS,
    )  # fmt: skip

    @classmethod
    def for_actor(cls, config: ActorConfig, daemon: DaemonConfig) -> RayHost:
        return cls(config, daemon)

    @classmethod
    def unavailable(cls) -> str | None:
        """Ray is looked up, not imported (slow to import, and only used when started)."""
        import importlib.util

        try:
            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"needs Ray, which is not installed: {RAY_INSTALL_HINT}"

    pipelines = True  # asks are sent ahead; the worker runs them in order (ray_worker)

    def __init__(self, config: ActorConfig, daemon: DaemonConfig) -> None:
        assert config.cls is not None
        self.config = config
        self.cls = config.cls
        self.name = config.name
        self.runtime = runtime(daemon)
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[Exit] = loop.create_future()
        self.handle: Any = None
        self.node: str | None = None
        self.actor_id: str | None = None
        self.pid: int | None = None
        self._next_id = 0
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._answers: dict[int, concurrent.futures.Future[Any]] = {}  # Ray's, by call id
        self._seq = 0  # asks in the order the worker must run them
        self._sync_calls: set[int] = set()
        self._streams: dict[int, Any] = {}
        self._death: asyncio.Future[RayDied] | None = None
        self._kill_cause: str | None = None
        self._stopping = False
        self._watcher: asyncio.Task[Any] | None = None
        self._settling: set[asyncio.Future[Any]] = set()
        self._log = logs.current()

    # ------------------------------------------------------------------ lifecycle
    def _options(self) -> dict[str, Any]:
        """Ray's options for this actor's worker (restarts and retries always off)."""
        options: dict[str, Any] = {
            "max_restarts": 0,
            "max_task_retries": 0,
            "max_concurrency": 64,
        }
        ray_options = self.config.host_keys["ray"]
        for key in ("num_cpus", "num_gpus", "memory"):
            if ray_options.get(key) is not None:
                options[key] = ray_options[key]
        if ray_options.get("resources"):
            options["resources"] = dict(ray_options["resources"])
        if ray_options.get("runtime_env"):
            options["runtime_env"] = dict(ray_options["runtime_env"])
        return options

    def _create(self, options: dict[str, Any]) -> Any:
        name = f"pulsing.{self.name}.{uuid.uuid4().hex[:8]}"
        sys_path = [p for p in sys.path if p]
        return self.runtime.worker_class.options(name=name, **options).remote(self.name, sys_path)

    async def start(self) -> None:
        await self.runtime.connect()
        options = self._options()
        spare = self.runtime.take_spare(self.name, options)
        try:
            answer = await self._start_on(spare if spare is not None else self._create(options))
        except RayDied:
            if spare is None:
                raise
            answer = await self._start_on(self._create(options))  # the spare was lost
        self.node, self.actor_id, self.pid = (
            answer.get("node"), answer.get("actor_id"), answer.get("pid"),
        )  # fmt: skip
        if "error" in answer:
            raise _exception(answer["error"])
        self._watcher = asyncio.create_task(self._watch(), name=f"pulsing-ray-watch-{self.name}")
        if self.runtime.has_failed(self.name) and _reserves_nothing(options):
            self.runtime.make_spare(self.name, options, self._create)

    async def _start_on(self, handle: Any) -> dict[str, Any]:
        self.handle = handle
        started = handle.start.remote(self.config.class_path, dict(self.config.args))
        try:
            return await asyncio.wait_for(_await(started), START_TIMEOUT)  # type: ignore[no-any-return]
        except asyncio.TimeoutError:
            raise RayDied(
                f"the Ray actor did not start within {START_TIMEOUT:g}s "
                f"(not enough free resources for {self.config.host_keys['ray'] or 'it'}?)",
                cause="start",
            ) from None
        except _ray_errors() as exc:
            raise RayDied(f"the Ray actor died while starting: {_first_line(exc)}") from None

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": {"kind": "ray", "node": self.node, "actor_id": self.actor_id},
        }

    async def _watch(self) -> None:
        """Keep the watch call open for the instance's life: its output lines, how run()
        ended, or -- when the call fails -- the death of the instance."""
        import ray

        generator = self.handle.watch.options(num_returns="streaming").remote()
        try:
            async for ref in generator:
                item = await _await(ref)
                for stream, text in item.get("lines", ()):
                    self._output(stream, text)
                if "exited" in item:
                    payload = item["exited"]
                    if not self.exited.done():
                        cause = None if payload is None else _exception(payload)
                        self.exited.set_result(Exit("run", cause))
                    return
        except asyncio.CancelledError:
            ray.cancel(generator, force=False)
            raise
        except BaseException as exc:
            await self._lost(exc)

    def _output(self, stream: str, text: str) -> None:
        if self._log is not None:
            self._log.write(stream, text)
            log.event("output", actor=self.name, stream=stream, level=logging.DEBUG, msg=text)
        else:
            log.event("output", actor=self.name, stream=stream, level=logging.INFO, msg=text)

    async def _lost(self, exc: BaseException) -> RayDied:
        """The Ray actor is gone (seen by any call): find out why, once, and fail every
        call in flight with the same error."""
        if self._death is None:
            self._death = asyncio.get_running_loop().create_future()
            cause = self._kill_cause
            if cause is None:
                lost = await asyncio.to_thread(self.runtime.node_lost, self.node)
                cause = "node_lost" if lost else "process"
            text = {
                "node_lost": f"the node of the Ray actor was lost (node {self.node})",
                "timeout": "killed at an op's deadline (kill_on_timeout)",
                "stop": "stopped",
            }.get(cause, f"the Ray actor's process died (pid {self.pid})")
            died = RayDied(f"{text}: {_first_line(exc)}", cause=cause)
            self._death.set_result(died)
            self._kill_quietly()  # an unavailable actor might come back: make sure it is gone
            # Asks run in order: only the first one not answered may have started.
            lost_error: BaseException = RayLost(str(died), cause=cause)
            for call_id, future in list(self._calls.items()):
                answer = self._answers.get(call_id)
                if future.done() or (
                    answer is not None and answer.done() and answer.exception() is None
                ):
                    continue  # answered; the answer is on its way to the loop
                future.set_exception(lost_error)
                lost_error = NotStarted(expired=False)
            if not self.exited.done():
                self.exited.set_result(Exit(cause, None if self._stopping else died))
            if not self._stopping and cause != "timeout":
                log.event(
                    "ray_actor_died", actor=self.name, category="system",
                    level=logging.WARNING, cause=cause, node=self.node, msg=str(died),
                )  # fmt: skip
        return await self._death

    def _kill_quietly(self) -> None:
        if self.handle is None:
            return
        import ray

        try:
            ray.kill(self.handle, no_restart=True)
        except Exception:
            pass

    # ------------------------------------------------------------------ ops
    def _next(self) -> int:
        self._next_id += 1
        return self._next_id

    def _budget(self) -> float:
        deadline = call_deadline.get()
        if deadline is None:
            return 3600.0
        return deadline - asyncio.get_running_loop().time()

    def invoke(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        info = resolve_op(self.cls, op, OpKind.ASK)  # refused here, before Ray sees it
        if info is not None:
            bind_arguments(info, args, kwargs)
        if self._death is not None or self.handle is None:
            raise RayDied("the Ray actor is gone")
        call_id = self._next()
        if info is None or not info.is_async:
            self._sync_calls.add(call_id)
        self._seq += 1
        request = {"id": call_id, "seq": self._seq, "op": op, "args": args, "kwargs": kwargs}
        request["budget"] = self._budget()
        try:
            body = _encode(request).encode()
        except ValueError as exc:  # NaN or infinity in the arguments
            raise PulsingBusinessError("bad_arguments", f"arguments of {op}: {exc}") from None
        ref = self.handle.call.remote(body)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls[call_id] = future
        # The answer is handed to the loop straight from Ray's callback (no task per call).
        answer = self._answers[call_id] = ref.future()
        post = loop_post(loop)  # answers finishing together wake the loop once
        answer.add_done_callback(lambda done: post.post(self._answered, call_id, done, future))
        return future

    def _answered(
        self, call_id: int, done: concurrent.futures.Future[Any], future: asyncio.Future[Any]
    ) -> None:
        self._sync_calls.discard(call_id)
        self._answers.pop(call_id, None)
        exc = done.exception()
        if exc is not None and isinstance(exc, _ray_errors()):
            lost = asyncio.ensure_future(self._lost(exc))  # fails this call too, with RayLost
            self._settling.add(lost)
            lost.add_done_callback(self._settling.discard)
            return
        self._calls.pop(call_id, None)
        if future.done():
            return
        if exc is not None:
            future.set_exception(_unwrap(exc))
            return
        answer = json.loads(done.result())
        if "value" in answer:
            future.set_result(answer["value"])
        elif "unserializable" in answer:
            future.set_result(Unserializable(answer["unserializable"]))
        elif "error" in answer:
            future.set_exception(_exception(answer["error"]))
        elif "expired" in answer:
            future.set_exception(NotStarted(expired=True))
        elif "not_started" in answer:
            future.set_exception(NotStarted(expired=False))
        else:  # cancelled at its deadline
            future.cancel()

    def produce(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        info = resolve_op(self.cls, op, OpKind.STREAM)
        if info is not None:
            bind_arguments(info, args, kwargs)
        if self._death is not None or self.handle is None:
            raise RayDied("the Ray actor is gone")
        call_id = self._next()
        generator = self.handle.stream.options(
            num_returns="streaming", _generator_backpressure_num_objects=STREAM_BACKPRESSURE
        ).remote(call_id, op, args, kwargs)
        return self._chunks(call_id, generator)

    async def _chunks(self, call_id: int, generator: Any) -> AsyncIterator[Any]:
        import ray

        finished = False
        try:
            async for ref in generator:
                try:
                    item = await _await(ref)
                except _ray_errors() as exc:
                    raise await self._lost(exc) from None
                for text in item.get("chunks", ()):
                    yield json.loads(text)
                if "error" in item:
                    finished = True
                    raise _exception(item["error"])
                if item.get("end"):
                    finished = True
                    return
        except _ray_errors() as exc:
            raise await self._lost(exc) from None
        finally:
            if not finished and self._death is None and self.handle is not None:
                # Abandoned (a stop, the daemon shutting down): the producer stops too.
                try:
                    self.handle.cancel.remote(call_id)
                    ray.cancel(generator, force=False)
                except Exception:
                    pass

    def withdraw(self, running: asyncio.Future[Any], expired: bool) -> None:
        if running.done() or self._death is not None or self.handle is None:
            return
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is not None:
            self.handle.cancel.remote(call_id, "expired" if expired else "not_started")

    async def interrupt(self, running: asyncio.Future[Any]) -> bool:
        if self.config.host_keys["kill_on_timeout"]:
            self._kill_cause = "timeout"
            self._kill_quietly()
            await asyncio.wait((self.exited,), timeout=STOP_GRACE)
            if running.done() and not running.cancelled():
                running.exception()  # RayLost; the caller already has its timeout
            return True
        call_id = next((k for k, v in self._calls.items() if v is running), None)
        if call_id is None:
            return running.done()
        if call_id in self._sync_calls:
            return False  # a sync op runs to its end: the actor stays busy until then
        try:
            self.handle.cancel.remote(call_id)
        except Exception:
            return True
        done, _ = await asyncio.wait((running,), timeout=CANCEL_GRACE)
        if done and not running.cancelled():
            running.exception()
        return bool(done)

    async def stop(self, graceful: bool = True) -> None:
        if graceful:  # an operator's stop, a reload, the daemon's shutdown: no spare
            self.runtime.drop_spare(self.name)
        else:  # after a failure (or a crashed start): keep a spare from now on
            self.runtime.note_failure(self.name)
        self._stopping = True
        if self._kill_cause is None:
            self._kill_cause = "stop"
        if self.handle is not None and self._death is None:
            if graceful:
                try:
                    await asyncio.wait_for(_await(self.handle.stop.remote()), STOP_GRACE)
                except BaseException:
                    pass
            self._kill_quietly()
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except BaseException:
                pass
        if not self.exited.done():
            self.exited.set_result(Exit("process"))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(RayLost("the Ray actor was stopped", cause="stop"))


async def _await(ref: Any) -> Any:
    """The value of an ObjectRef, awaited on this loop."""
    return await asyncio.wrap_future(ref.future())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
