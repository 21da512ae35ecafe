"""The Ray side of ``isolation = "ray"`` that is not one instance: the host's config keys
(the per-actor ``ray`` table and ``[daemon.ray]``) and the daemon's one connection to
Ray (:class:`RayRuntime`), made when the first Ray actor starts -- Ray is never
imported otherwise. With ``address = "local"`` the runtime starts a private instance
through ``hosts.ray_local`` and stops it at shutdown. The host itself: ``hosts/ray.py``.
"""

from __future__ import annotations

import asyncio
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulsing_daemon import log
from pulsing_daemon.exceptions import (
    PulsingRuntimeError,
)
from pulsing_daemon.keyspec import (
    Invalid,
    KeySpec,
    integer_key,
    number_key,
    string_key,
    table_key,
)

if TYPE_CHECKING:
    from pulsing_daemon.config import DaemonConfig

CONNECT_TIMEOUT = 90.0  # starting a local instance and connecting to it
STOP_GRACE = 5.0
NODE_PROBE_TIMEOUT = 1.0
SIGNALS_KEPT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
        from pulsing_daemon.hosts.ray_worker import remote_class

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
        self.worker_class = remote_class(ray)

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


