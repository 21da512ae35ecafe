"""The host registry: isolation values, the keys each host brings, make_host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pulsing_daemon.config import ACTOR_SPECS, ConfigError, parse_config
from pulsing_daemon.hosts import registry
from pulsing_daemon.hosts.base import ActorHost, Exit, HostFailure, failure_type, failure_where
from pulsing_daemon.hosts.inline import InlineHost
from pulsing_daemon.hosts.process import ChildError, ProcessDied, ProcessHost

ECHO = '[actors.w]\nclass = "pulsing_daemon.demo:Echo"\n'


def test_isolation_values_are_the_registered_hosts_in_order() -> None:
    assert list(registry.hosts()) == ["inline", "process", "ray"]
    assert registry.host_class("process") is ProcessHost
    spec = registry.isolation_spec()
    assert spec.description == (
        "inline (in the daemon) | process (own child process; survives hard crashes) | "
        "ray (a Ray actor on the cluster of [daemon.ray]; needs the [ray] extra)"
    )


def test_every_host_key_is_an_actor_key_right_after_isolation() -> None:
    names = [spec.name for spec in ACTOR_SPECS]
    at = names.index("isolation")
    assert names[at + 1 : at + 6] == ["kill_on_timeout", "memory_limit", "cpu_limit", "env", "cwd"]


def test_capabilities_are_declared() -> None:
    assert InlineHost.runs_sync_batches is True
    assert ProcessHost.runs_sync_batches is False
    assert ActorHost.runs_sync_batches is False


def test_a_host_key_reaches_the_host_by_name(tmp_path: Path) -> None:
    text = ECHO + 'isolation = "process"\nmemory_limit = 1000000\n'
    actor = parse_config(text, tmp_path / "p.toml").actors["w"]
    assert actor.host_keys["memory_limit"] == 1000000
    assert actor.host_keys["kill_on_timeout"] is False
    inline = parse_config(ECHO, tmp_path / "p.toml").actors["w"]
    assert inline.host_keys == registry.default_host_keys()


def test_an_exclusive_key_names_its_isolation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(ECHO + 'env = { A = "1" }\n', tmp_path / "p.toml")
    assert [p.reason for p in caught.value.problems] == ['only applies with isolation = "process"']


def test_make_host_picks_the_host_of_the_isolation(tmp_path: Path) -> None:
    config = parse_config(ECHO, tmp_path / "p.toml").actors["w"]

    async def main() -> ActorHost:
        return registry.make_host(config)

    assert isinstance(asyncio.run(main()), InlineHost)


def test_failures_say_where_and_under_which_type() -> None:
    assert failure_where(ValueError("x")) == "op" and failure_type(ValueError("x")) == "ValueError"
    died = ProcessDied("gone", where="timeout")
    assert isinstance(died, HostFailure)
    assert (failure_where(died), failure_type(died)) == ("timeout", "ProcessExit")
    child = ChildError("KeyError", "'k'")
    assert (failure_where(child), failure_type(child)) == ("op", "KeyError")
    assert Exit("run").failed is False and Exit("process", died).failed is True


def test_a_second_host_for_an_isolation_is_refused() -> None:
    class Other(InlineHost):
        isolation = "inline"

    with pytest.raises(ValueError, match="already InlineHost"):
        registry.register(Other)


def test_a_host_registered_later_is_listed() -> None:
    before = registry.hosts()

    class Elsewhere(InlineHost):
        isolation = "elsewhere-test"

    registry.register(Elsewhere)
    try:
        assert list(registry.hosts()) == [*before, "elsewhere-test"]
        registry.hosts().clear()  # each caller gets its own copy
        assert registry.host_class("elsewhere-test") is Elsewhere
    finally:
        del registry._HOSTS["elsewhere-test"]
        registry._ordered = None
    assert list(registry.hosts()) == list(before)
