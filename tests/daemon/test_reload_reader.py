"""The reload's reader child (reload.Reloader._read_in_child) when it does not finish:
killed at READ_TIMEOUT, the reload refused, no child left behind."""

from __future__ import annotations

import asyncio
import json
import os
import types
from pathlib import Path

import pytest

from pulsing_daemon import reload
from pulsing_daemon.config import ConfigError, parse_config


def _children() -> set[int]:
    """The live processes whose parent is this one."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_reader_past_its_time_is_killed_and_the_reload_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "quick_mod.py").write_text("class Quick:\n    pass\n")
    (tmp_path / "slow_mod.py").write_text("import time\ntime.sleep(60)\n\nclass Slow:\n    pass\n")
    head = f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n"
    head += f"pythonpath = [{json.dumps(str(tmp_path))}]\n"
    path = tmp_path / "pulsing.toml"
    (tmp_path / "state").mkdir()
    old = parse_config(head + '[actors.a]\nclass = "quick_mod:Quick"\n', path, import_classes=False)
    path.write_text(head + '[actors.a]\nclass = "slow_mod:Slow"\n')  # its import never ends
    monkeypatch.setattr(reload, "READ_TIMEOUT", 1.0)
    reloader = types.SimpleNamespace(token=None, listen_override=None)
    before = _children()

    async def main() -> None:
        with pytest.raises(ConfigError) as refused:
            await asyncio.wait_for(reload.Reloader._read_in_child(reloader, old), 10.0)  # type: ignore[arg-type]
        assert "reading took over 1s" in str(refused.value.problems[0])

    asyncio.run(main())
    assert _children() <= before  # killed and reaped
