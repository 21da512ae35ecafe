"""``[daemon] cpu_affinity``: the daemon's threads stay on the chosen CPUs; the child
processes of process-isolated actors do not."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least two CPUs",
)


def cpus_of(pid: int, tid: int | None = None) -> set[int]:
    return set(os.sched_getaffinity(tid if tid is not None else pid))


def thread_ids(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def test_the_daemon_is_pinned_and_its_children_are_not(daemon_factory) -> None:
    everywhere = set(os.sched_getaffinity(0))
    cpu = min(everywhere)
    d = daemon_factory(
        """
        [actors.inline]
        class = "proc_actors:Worker"

        [actors.child]
        class = "proc_actors:Worker"
        isolation = "process"
        """,
        daemon=f"cpu_affinity = [{cpu}]\n",
    )
    assert d.ask("inline", "hello")[0] == 200  # a sync op: an op thread exists now
    status, _, payload = d.ask("child", "pid")
    assert status == 200
    child = payload["result"]
    pid = d.status()["daemon"]["pid"]
    threads = thread_ids(pid)
    assert len(threads) > 1
    for tid in threads:
        assert cpus_of(pid, tid) == {cpu}, tid
    assert cpus_of(child) == everywhere
    assert f"cpus={cpu}" in d.log()


def test_a_cpu_this_machine_lacks_is_a_config_error(daemon_factory) -> None:
    d = daemon_factory(daemon="cpu_affinity = [4096]\n", start=False)
    result = d.cli("config", "check", str(d.config_path))
    assert result.code == 2
    assert "daemon.cpu_affinity: CPU 4096 not available here" in result.stderr
