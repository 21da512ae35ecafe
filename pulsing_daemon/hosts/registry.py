"""Which host an ``isolation`` value selects, and the config keys the hosts bring.

A host module registers its class with :func:`register`; the class says its
``isolation`` value, a phrase for the docs, and its :class:`~pulsing_daemon.hosts.base.HostKeys`.
``config.py`` asks this module for the values ``isolation`` accepts and for the keys
to read; the supervisor makes every host through :func:`make_host`. Adding a kind of
host is one module, named in ``HOST_MODULES``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pulsing_daemon.hosts.base import ActorHost
from pulsing_daemon.keyspec import KeySpec, choice_key

if TYPE_CHECKING:
    from pulsing_daemon.config import ActorConfig, DaemonConfig

# The modules that register the hosts, in the order their isolation values are listed.
HOST_MODULES = (
    "pulsing_daemon.hosts.inline",
    "pulsing_daemon.hosts.process",
    "pulsing_daemon.hosts.ray",
)

_HOSTS: dict[str, type[ActorHost]] = {}
_loaded = False
# hosts() in its order, made again after a registration: a config reads it twice per
# actor (10,000 actors: sorting each time was ~10% of a reload's reading).
_ordered: dict[str, type[ActorHost]] | None = None


def register(host: type[ActorHost]) -> type[ActorHost]:
    """Class decorator: ``isolation = host.isolation`` selects ``host``."""
    global _ordered
    known = _HOSTS.get(host.isolation)
    if known is not None and known is not host:
        raise ValueError(f"isolation {host.isolation!r} is already {known.__qualname__}")
    _HOSTS[host.isolation] = host
    _ordered = None
    return host


def hosts() -> dict[str, type[ActorHost]]:
    """Every registered host by isolation value, ``HOST_MODULES`` order first."""
    global _loaded, _ordered
    if not _loaded:
        for module in HOST_MODULES:
            importlib.import_module(module)
        _loaded = True
    if _ordered is None:
        rank = {module: index for index, module in enumerate(HOST_MODULES)}
        ordered = sorted(_HOSTS.values(), key=lambda h: rank.get(h.__module__, len(rank)))
        _ordered = {host.isolation: host for host in ordered}
    return dict(_ordered)  # the caller's own copy


def host_class(isolation: str) -> type[ActorHost]:
    """The host of an ``isolation`` value (the config has checked that there is one)."""
    return hosts()[isolation]


def make_host(config: ActorConfig, daemon: DaemonConfig | None = None) -> ActorHost:
    """A host for one instance of the actor ``config`` describes (not started);
    ``daemon``: the daemon's config, whose ``hosts`` tables some hosts read."""
    if daemon is None:
        from pulsing_daemon.config import DaemonConfig

        daemon = DaemonConfig()
    return host_class(config.isolation).for_actor(config, daemon)


def isolation_spec() -> KeySpec:
    """The ``isolation`` key: one of the registered values."""
    known = hosts()
    return KeySpec(
        "isolation", "string", "inline", choice_key(*known),
        " | ".join(f"{name} ({host.summary})" for name, host in known.items()),
    )  # fmt: skip


def actor_keys() -> tuple[KeySpec, ...]:
    """Every host's actor keys, host by host."""
    return tuple(spec for host in hosts().values() for spec in host.keys.actor)


def default_host_keys() -> dict[str, Any]:
    """Every host's actor keys at their defaults (``ActorConfig.host_keys`` when unset)."""
    return {
        spec.name: dict(spec.default) if isinstance(spec.default, dict) else spec.default
        for spec in actor_keys()
    }


# Equal host_keys tables, shared: most actors leave every host key at its default, and
# a dict of them per actor costs ~0.3 KB. Nothing changes a config's tables once made.
_HOST_KEYS_SEEN: dict[str, dict[str, Any]] = {}


def shared_host_keys(host_keys: dict[str, Any]) -> dict[str, Any]:
    """``host_keys``, or an equal table made before (one per distinct table)."""
    key = repr(host_keys)
    if len(_HOST_KEYS_SEEN) > 1000:
        _HOST_KEYS_SEEN.clear()
    return _HOST_KEYS_SEEN.setdefault(key, host_keys)
