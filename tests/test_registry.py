"""The registry's scripts on their own: what makes a job at-most-once and a record exactly-once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fleetjobs import Config, JobState
from fleetjobs.registry import JobSpec, Registry

from .conftest import uniq


@pytest.fixture
def registry(redis_url: str) -> Iterator[Registry]:
    reg = Registry.connect(Config(redis_url=redis_url, prefix=f"{uniq('rg')}:"))
    yield reg
    reg.close()


def test_a_child_is_claimed_by_one_worker_only(registry: Registry) -> None:
    _, _, [child] = registry.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    assert registry.claim(child.id, "worker-a")[0] == "Running"
    # the same worker asking again (its first answer was lost on the network) may go on
    assert registry.claim(child.id, "worker-a")[0] == "Running"
    # a redelivered message reaching another worker must not run the job a second time
    assert registry.claim(child.id, "worker-b")[0] == "Taken"
    registry.finish(child.id, JobState.COMPLETED)
    assert registry.claim(child.id, "worker-a")[0] == "Completed"


def test_a_retried_record_is_written_once(registry: Registry) -> None:
    _, piid, [child] = registry.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    now = time.time()
    for seq, value in ((1, "a"), (2, "b"), (2, "b"), (1, "a"), (3, "c")):
        assert registry.append(child.instance_id, piid, "output", value, seq, now)
    [info] = registry.load([child.id])
    assert [r.data for r in registry.take([info])] == ["a", "b", "c"]


def test_records_for_a_removed_job_are_refused(registry: Registry) -> None:
    pid, piid, [child] = registry.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    registry.remove(registry.load([pid]))
    assert not registry.append(child.instance_id, piid, "output", "late", 1, time.time())
    assert registry.r.exists(registry.out_key(child.instance_id)) == 0


def test_a_parent_of_many_children_is_settled_by_counts(registry: Registry) -> None:
    pid, _, children = registry.create(
        JobSpec("echo", [], {}, "echo", [f"h{i}" for i in range(500)])
    )
    for child in children:
        registry.claim(child.id, "w")
    for i, child in enumerate(children):
        state = JobState.FAILED if i % 100 == 0 else JobState.COMPLETED
        registry.finish(child.id, state, f"broke {i}")
    [parent] = registry.load([pid])
    assert parent.state is JobState.FAILED
    assert (
        parent.reason == "5 of 500 child jobs failed: h0: broke 0; h100: broke 100; h200: broke 200"
    )
