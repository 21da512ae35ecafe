"""pulsing_cli.exit: the category -> exit code table of CONTRACT §4."""

from __future__ import annotations

import pytest

from pulsing_cli.exit import CATEGORY_EXIT, ExitStatus, exit_for
from pulsing_daemon.exceptions import (
    CATEGORIES,
    PulsingBusinessError,
    PulsingError,
    PulsingRuntimeError,
    PulsingSystemError,
    PulsingTimeoutError,
    PulsingUnsupportedError,
)

CONTRACT_TABLE = {"business": 3, "system": 4, "unsupported": 5, "runtime": 6, "timeout": 124}


def test_table_is_exactly_the_contract() -> None:
    assert {k: int(v) for k, v in CATEGORY_EXIT.items()} == CONTRACT_TABLE


@pytest.mark.parametrize(("category", "code"), sorted(CONTRACT_TABLE.items()))
def test_exit_for(category: str, code: int) -> None:
    assert exit_for(category) == code
    assert int(exit_for(category)) == code


def test_every_error_category_has_an_exit_code() -> None:
    assert set(CATEGORIES) == set(CATEGORY_EXIT)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PulsingBusinessError("c", "m"), 3),
        (PulsingSystemError("m"), 4),
        (PulsingSystemError("m", recoverable=False), 4),
        (PulsingUnsupportedError("op"), 5),
        (PulsingRuntimeError("m"), 6),
        (PulsingTimeoutError("op", 1), 124),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, PulsingError) else str(v),
)
def test_exception_category_maps_to_exit_code(error: PulsingError, code: int) -> None:
    assert exit_for(error.category) == code


def test_fixed_statuses() -> None:
    assert ExitStatus.OK == 0
    assert ExitStatus.USAGE == 2
    assert ExitStatus.INTERRUPTED == 130
    assert ExitStatus.BUSINESS == 3
    assert ExitStatus.SYSTEM == 4
    assert ExitStatus.UNSUPPORTED == 5
    assert ExitStatus.RUNTIME == 6
    assert ExitStatus.TIMEOUT == 124


def test_codes_are_distinct() -> None:
    values = [int(s) for s in ExitStatus]
    assert len(values) == len(set(values))


def test_unknown_category_is_not_success() -> None:
    code = exit_for("martian")
    assert code != ExitStatus.OK
    assert code == ExitStatus.RUNTIME
