"""The daemon with its wall-clock timers of keyed asks stretched, for a server slowed down.

``python -m benchmarks.slowed FACTOR -- python -m pulsing_daemon ARGS...`` runs
``python -m pulsing_daemon ARGS...`` in this process with ``handover.AHEAD_FOR`` and the
checkpointer's ``INTERVAL`` and ``IDLE_AFTER`` multiplied by FACTOR (everything before
``pulsing_daemon`` on the command line is the harness's own command and is dropped).

Under callgrind (``benchmarks.instructions``) the daemon runs ~50x slower: with the
timers as they are, an ask handed over ahead would be taken back after what is, at full
speed, well under a millisecond, and a checkpoint pass would run every few asks. With
them stretched by the same factor, a keyed ask goes through the same hand-overs and
checkpoints per ask as at full speed, give or take the slowdown's own spread.
"""

from __future__ import annotations

import runpy
import sys

RUN = "python -m pulsing_daemon"


def main(argv: list[str]) -> None:
    usage = f"usage: python -m benchmarks.slowed FACTOR -- {RUN} ..."
    try:
        factor = float(argv[0])
    except (IndexError, ValueError):
        raise SystemExit(usage) from None
    if factor <= 0 or "pulsing_daemon" not in argv:
        raise SystemExit(usage)
    from pulsing_daemon import handover
    from pulsing_daemon.storage import checkpoint

    handover.AHEAD_FOR *= factor
    checkpoint.INTERVAL *= factor
    checkpoint.IDLE_AFTER *= factor
    sys.argv = ["pulsing_daemon", *argv[argv.index("pulsing_daemon") + 1 :]]
    runpy.run_module("pulsing_daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
