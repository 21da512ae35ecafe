"""The daemon's rooms built in-process for unit tests, as server.py builds them but
without HTTP: a config with actors from tests/daemon, a Supervisor, a Journal, the
StreamManager and the IdempotencyStore."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulsing_daemon.config import Config, parse_config
from pulsing_daemon.idempotency import IdempotencyStore
from pulsing_daemon.journal import Journal
from pulsing_daemon.streams import StreamManager
from pulsing_daemon.supervisor import Supervisor

HERE = Path(__file__).resolve().parent
BOUND = 3.0


def config_with(tmp_path: Path, actors: dict[str, str], **daemon: Any) -> Config:
    """A config whose ``[actors.NAME]`` have ``class = CLASS`` (modules of tests/daemon),
    with ``[daemon]`` keys from ``daemon``; state_dir under ``tmp_path``, created."""
    text = f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n"
    text += f"pythonpath = [{json.dumps(str(HERE))}]\n"
    text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in daemon.items())
    for name, cls in actors.items():
        text += f"\n[actors.{name}]\nclass = {json.dumps(cls)}\n"
    saved = list(sys.path)  # reading a config prepends its pythonpath
    try:
        config = parse_config(text, tmp_path / "pulsing.toml")
    finally:
        sys.path[:] = saved
    config.daemon.state_dir.mkdir(parents=True, exist_ok=True)
    return config


@dataclass
class Rooms:
    supervisor: Supervisor
    journal: Journal
    streams: StreamManager
    keys: IdempotencyStore


@contextlib.asynccontextmanager
async def rooms(
    config: Config, before: Callable[[Journal], None] | None = None
) -> AsyncIterator[Rooms]:
    """Build the rooms, start every actor and wait for it, then shut all down.
    ``before`` sees the journal before anything starts (to plant records)."""
    journal = Journal(config.daemon.state_dir)
    if before is not None:
        before(journal)
    supervisor = Supervisor(config)
    built = Rooms(
        supervisor,
        journal,
        StreamManager(journal, supervisor, config.daemon),
        IdempotencyStore(journal, config.daemon.idempotency_retention),
    )
    supervisor.start()
    try:
        for cell in supervisor.cells.values():
            await asyncio.wait_for(cell.wait_started(2.0), BOUND)
        yield built
    finally:
        await asyncio.wait_for(supervisor.shutdown(1.0), BOUND)
        journal.close()
