"""When the daemon is ready, and telling systemd so (``Type=notify``).

Ready means: the daemon listens and every autostart actor has had its first start
(it is ``running``, or its first start failed and the policy took over). Then the
daemon logs ``event=ready``, records a ``daemon`` event and, under systemd, sends
``READY=1``. The notify protocol is one datagram of ``KEY=VALUE`` lines to the Unix
socket named by ``$NOTIFY_SOCKET`` (``@name`` is an abstract socket), so no library
is needed.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pulsing_daemon import log
from pulsing_daemon.deadline import Deadline

if TYPE_CHECKING:
    from pulsing_daemon.supervisor import Supervisor

FIRST_START_WAIT = 86400.0  # no bound in practice: an on_start may take long


@dataclass
class Readiness:
    """Shared by the server (which sets it) and /v1/health (which reports it)."""

    ready: bool = False


def notify_systemd(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"RELOADING=1"``, ``"STOPPING=1"``) to systemd.

    False when not run by systemd with ``Type=notify`` (no ``$NOTIFY_SOCKET``) or the
    datagram could not be sent (logged); never raises.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.event("notify_systemd_failed", category="runtime", state=state, msg=str(exc))
        return False
    return True


async def announce_ready(supervisor: Supervisor, readiness: Readiness) -> None:
    """Once every autostart actor has had its first start: log, event, ``READY=1``."""
    cells = [cell for cell in supervisor.cells.values() if cell.config.autostart]
    # Polled, not awaited per cell: a waiting task per actor is ~3 KB that, freed once
    # the actor runs, leaves the allocator's pools fragmented (10,000 actors: ~4 KB of
    # resident memory each stayed). Each look visits the actors still starting only.
    pause = 0.005
    waiting = [cell for cell in cells if cell.starting()]
    deadline = Deadline.after(FIRST_START_WAIT)
    while waiting and not deadline.expired():
        await asyncio.sleep(min(pause, deadline.remaining()))
        pause = min(pause * 2, 0.1)
        waiting = [cell for cell in waiting if cell.starting()]
    running = sum(1 for cell in cells if cell.state.value == "running")
    readiness.ready = True
    log.event("ready", actors=len(supervisor.cells), running=running)
    supervisor.events.emit("daemon", None, event="ready", running=running)
    notify_systemd("READY=1")
