"""The fault-injection soak, short: ~9 s of mixed load with two daemon SIGKILLs.

``benchmarks/soak.py`` is the long version (``--duration 600 --kills 20``); this runs
the same ``run_soak`` briefly and asserts its invariants: every ask answered exactly
once with a result or a categorised error, no keyed ask executed twice, no stream
chunk lost or duplicated across cuts and kills, restarts within the policies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("pulsing_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def soak():
    if not Path("/proc/self/status").exists():
        pytest.skip("the soak reads daemon memory from /proc")
    return _load_soak()


def test_soak_short(soak, tmp_path: Path) -> None:
    report = soak.run_soak(9.0, 2, clients=10, readers=4, workdir=tmp_path / "soak", verbose=False)
    text = soak.summary(report)
    print(text)
    asks, idem, streams = report["asks"], report["idempotency"], report["streams"]

    # load really happened, faults really were injected
    assert asks["sent"] > 50, text
    assert report["kills"]["done"] == 2, text
    assert asks["by_category"].get("ok", 0) > 0, text
    assert idem["keys"] > 0 and streams["readers"] > 0, text

    # every ask ended in exactly one result or one categorised error
    assert asks["sent"] == asks["answered"], text
    assert asks["hung"] == 0 and asks["uncategorised"] == 0, text
    assert asks["miscategorised"] == 0 and asks["wrong_results"] == 0, text

    # at most once per idempotency key, even across SIGKILL
    assert idem["executed_more_than_once"] == 0, text
    assert idem["answered_without_one_execution"] == 0, text
    assert idem["stream_producers_started_more_than_once"] == 0, text

    # streams: every reader saw 0..n-1 exactly once, in order
    for name in ("lost", "duplicated", "out_of_order", "seq_errors", "bad", "unfinished"):
        assert streams[name] == 0, f"{name}\n{text}"

    # restarts never beyond the policies
    for actor, info in report["restarts"].items():
        assert not info["violations"], f"{actor}\n{text}"
        assert info["max_restarts_observed"] <= info["max_restarts"], text

    assert report["daemon"]["final_exit_code"] == 0, text
    assert report["daemon"]["internal_errors"] == 0, text
    assert report["ok"], text
