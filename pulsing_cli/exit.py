"""Exit statuses of the ``pulsing`` command, and the category -> exit code table."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # the daemon could not start (address in use, bad state_dir, ...)
    USAGE = 2  # bad command line or invalid config file
    BUSINESS = 3
    SYSTEM = 4
    UNSUPPORTED = 5
    RUNTIME = 6
    TIMEOUT = 124
    INTERRUPTED = 130


CATEGORY_EXIT: dict[str, ExitStatus] = {
    "business": ExitStatus.BUSINESS,
    "system": ExitStatus.SYSTEM,
    "unsupported": ExitStatus.UNSUPPORTED,
    "runtime": ExitStatus.RUNTIME,
    "timeout": ExitStatus.TIMEOUT,
}


def exit_for(category: str) -> ExitStatus:
    return CATEGORY_EXIT.get(category, ExitStatus.RUNTIME)
