"""States: PowerShell's names, the parent rule, and the Lua mirror of it in the registry."""

from __future__ import annotations

import itertools

import pytest

from fleetjobs import JobState
from fleetjobs.lifecycle import JobSpec
from fleetjobs.states import FINISHED, parent_state

from .conftest import Layers


def test_states_are_spelled_as_powershell_spells_them() -> None:
    assert [
        s.value
        for s in (
            JobState.NOT_STARTED,
            JobState.RUNNING,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.STOPPED,
            JobState.BLOCKED,
            JobState.SUSPENDED,
            JobState.DISCONNECTED,
        )
    ] == [
        "NotStarted",
        "Running",
        "Completed",
        "Failed",
        "Stopped",
        "Blocked",
        "Suspended",
        "Disconnected",
    ]
    assert JobState.parse("not_started") is JobState.NOT_STARTED
    with pytest.raises(ValueError, match="unknown state 'Sleeping'"):
        JobState.parse("Sleeping")
    assert {JobState.COMPLETED, JobState.FAILED, JobState.STOPPED} == FINISHED


def test_the_parent_rule() -> None:
    S = JobState
    assert parent_state([S.COMPLETED, S.FAILED, S.STOPPED]) is S.FAILED
    assert parent_state([S.COMPLETED, S.STOPPED]) is S.STOPPED
    assert parent_state([S.COMPLETED, S.COMPLETED]) is S.COMPLETED
    assert parent_state([S.COMPLETED, S.RUNNING]) is S.RUNNING
    assert parent_state([S.COMPLETED, S.NOT_STARTED]) is S.RUNNING  # throttled: in progress
    assert parent_state([S.NOT_STARTED, S.NOT_STARTED]) is S.NOT_STARTED
    assert parent_state([S.DISCONNECTED, S.COMPLETED]) is S.DISCONNECTED


def _drive(w: Layers, child: int, state: JobState) -> None:
    """Bring a child into ``state`` through the scripts a worker and a console run."""
    if state is JobState.NOT_STARTED:
        return
    assert w.lifecycle.claim(child, "nobody")[0] == "Running"
    if state.finished:
        if state is JobState.STOPPED:
            w.store.r.hset(w.keys.job(child), "stop", "1")
        w.lifecycle.finish(child, JobState.COMPLETED if state is JobState.STOPPED else state, "why")


def force_state(w: Layers, child: int, state: JobState) -> None:
    """Put a child in any state as the scripts' move() does (its parent's counters too), for
    states no script of today produces on a child (Blocked, Suspending, Suspended)."""
    k = w.keys.job(child)
    old, parent = w.store.r.hmget(k, "state", "parent")
    pipe = w.store.r.pipeline()
    pipe.hset(k, "state", state.value)
    pipe.hincrby(w.keys.job(parent), f"c:{old}", -1)
    pipe.hincrby(w.keys.job(parent), f"c:{state.value}", 1)
    pipe.execute()


@pytest.mark.parametrize(
    "combo",
    list(
        itertools.product(
            [
                JobState.NOT_STARTED,
                JobState.RUNNING,
                JobState.COMPLETED,
                JobState.FAILED,
                JobState.STOPPED,
            ],
            repeat=2,
        )
    ),
)
def test_the_registry_derives_the_parent_state_by_the_same_rule(
    layers: Layers, combo: tuple[JobState, JobState]
) -> None:
    # given a parent with two children driven into these states by the worker's own scripts
    pid, _, children = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1", "h2"]))
    for child, state in zip(children, combo, strict=True):
        _drive(layers, child.id, state)
    # then the parent's stored state is what the Python rule says
    [parent] = layers.registry.load([pid])
    assert [c.state for c in parent.children] == list(combo)
    assert parent.state is parent_state(combo)
    assert (parent.end_time is not None) == parent.state.finished


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("other", [JobState.COMPLETED, JobState.FAILED])
def test_every_state_of_a_child_gives_its_parent_the_state_the_rule_says(
    layers: Layers, state: JobState, other: JobState
) -> None:
    # given a parent whose first child is in any of the ten states
    pid, _, (a, b) = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1", "h2"]))
    force_state(layers, a.id, state)
    # when the worker's scripts run and settle its second child
    _drive(layers, b.id, other)
    # then the parent's state, worked out in Lua from counters, is the Python rule's
    [parent] = layers.registry.load([pid])
    assert [c.state for c in parent.children] == [state, other]
    assert parent.state is parent_state([state, other])
    assert (parent.end_time is not None) == parent.state.finished
