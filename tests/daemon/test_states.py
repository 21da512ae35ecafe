"""pulsing_daemon.states: the actor state machine as one table."""

from __future__ import annotations

import itertools

import pytest

from pulsing_daemon.states import (
    ACCEPTING,
    TRANSITIONS,
    ActorState,
    IllegalTransition,
    check_transition,
)

S = ActorState

# CONTRACT §3 and the diagram in states.py, written out independently.
LEGAL = {
    (S.STOPPED, S.STARTING),  # start
    (S.STARTING, S.RUNNING),  # instance up
    (S.STARTING, S.BACKOFF),  # __init__/on_start crashed, restart scheduled
    (S.STARTING, S.FAILED),  # crashed, policy gives up
    (S.STARTING, S.STOPPED),  # manual stop
    (S.RUNNING, S.BACKOFF),  # failure / run() exit under always
    (S.RUNNING, S.FAILED),  # failure, policy gives up
    (S.RUNNING, S.STOPPED),  # manual stop, or run() returned without restart
    (S.BACKOFF, S.STARTING),  # backoff timer
    (S.BACKOFF, S.STOPPED),  # manual stop during backoff
    (S.FAILED, S.STARTING),  # operator restart/start
    (S.FAILED, S.STOPPED),  # manual stop of a failed actor
}
ALL_PAIRS = list(itertools.product(S, S))


def test_states_are_the_contract_states() -> None:
    assert {s.value for s in S} == {"starting", "running", "backoff", "stopped", "failed"}


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)


def test_table_matches_contract() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == LEGAL


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL, key=lambda p: (p[0].value, p[1].value)))
def test_legal_edges_pass(current: ActorState, new: ActorState) -> None:
    check_transition(current, new)  # does not raise


@pytest.mark.parametrize(
    ("current", "new"),
    [p for p in ALL_PAIRS if p not in LEGAL],
    ids=lambda s: s.value,
)
def test_other_pairs_raise(current: ActorState, new: ActorState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new)
    assert current.value in str(info.value)
    assert new.value in str(info.value)


def test_no_self_loops() -> None:
    for state in S:
        with pytest.raises(IllegalTransition):
            check_transition(state, state)


def test_stop_reachable_from_every_non_stopped_state() -> None:
    for state in S:
        if state is not S.STOPPED:
            check_transition(state, S.STOPPED)


def test_accepting_states() -> None:
    assert frozenset({S.STARTING, S.RUNNING, S.BACKOFF}) == ACCEPTING
    assert S.STOPPED not in ACCEPTING
    assert S.FAILED not in ACCEPTING


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)
