"""States: PowerShell's names, the parent rule, and the Lua mirror of it in the registry."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from fleetjobs import Config, JobState
from fleetjobs.registry import JobSpec, Registry
from fleetjobs.states import FINISHED, parent_state

from .conftest import uniq


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


@pytest.fixture
def registry(redis_url: str) -> Iterator[Registry]:
    reg = Registry.connect(Config(redis_url=redis_url, prefix=f"{uniq('st')}:"))
    yield reg
    reg.close()


def _drive(reg: Registry, child: int, state: JobState) -> None:
    if state is JobState.NOT_STARTED:
        return
    assert reg.claim(child, "nobody")[0] == "Running"
    if state.finished:
        if state is JobState.STOPPED:
            reg.r.hset(reg.jk(child), "stop", "1")
        reg.finish(child, JobState.COMPLETED if state is JobState.STOPPED else state, "why")


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
    registry: Registry, combo: tuple[JobState, JobState]
) -> None:
    # given a parent with two children driven into these states by the worker's own scripts
    pid, _, children = registry.create(JobSpec("echo", [], {}, "echo", ["h1", "h2"]))
    for child, state in zip(children, combo, strict=True):
        _drive(registry, child.id, state)
    # then the parent's stored state is what the Python rule says
    [parent] = registry.load([pid])
    assert [c.state for c in parent.children] == list(combo)
    assert parent.state is parent_state(combo)
    assert (parent.end_time is not None) == parent.state.finished
