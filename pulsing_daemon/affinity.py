"""``[daemon] cpu_affinity``: keep the daemon's threads on chosen CPUs (Linux).

Under load, sync ops already run on the event loop's CPU (``host.loop_cpu``: the loop
and the op threads hand the GIL over without cross-CPU wake-ups). Pinning the loop as well keeps
it from moving, which cut the p50 of sync asks by a further ~20% on a 2-vCPU machine;
the cost is that a pinned loop cannot leave a CPU that something else keeps busy.

Child processes of process-isolated actors are not confined: they get back the CPUs
the daemon had before it pinned itself (``released_cpus``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_before: frozenset[int] | None = None  # the daemon's CPUs before pin()


def pin(cpus: Iterable[int]) -> None:
    """Confine every thread of this process (and threads started later) to ``cpus``."""
    global _before
    wanted = set(cpus)
    if _before is None:
        _before = frozenset(os.sched_getaffinity(0))
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: this thread; threads started later inherit it
    for tid in threads:
        try:
            os.sched_setaffinity(tid, wanted)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that just ended


def released_cpus() -> frozenset[int] | None:
    """The CPUs to give a child process back; None when the daemon is not pinned."""
    return _before
