"""Actor states and the edges between them -- the whole state machine in one table.

::

    stopped --start--> starting --ok--> running
                          |                |  \\
                          |  failure       |   failure / run() exit (always)
                          v                v
    failed <--give up-- (decide) ---> backoff --timer--> starting
       \\--operator restart/start--> starting

A manual stop goes from any state to ``stopped`` and never triggers a restart.
"""

from __future__ import annotations

import enum


class ActorState(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"


S = ActorState
TRANSITIONS: dict[ActorState, frozenset[ActorState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.RUNNING: frozenset({S.BACKOFF, S.FAILED, S.STOPPED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED}),
}

# States in which new asks are accepted into the mailbox.
ACCEPTING = frozenset({S.STARTING, S.RUNNING, S.BACKOFF})


class IllegalTransition(RuntimeError):
    pass


def check_transition(current: ActorState, new: ActorState) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal actor state transition {current.value} -> {new.value}")
