"""A worker runs only what is addressed to it: the claim checks that the job is a child, that
it belongs to the location whose queue delivered the message, and that the message is the one
the fleet sent; anything else is refused, kept as a dead letter, and nothing runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet, JobState
from fleetjobs import deadletters as letters
from fleetjobs.celery_app import make_celery
from fleetjobs.embedded import LocalWorkers
from fleetjobs.lifecycle import JobSpec
from fleetjobs.routing import TASK_NAME, queue_for

from ..conftest import FAST, INCLUDE, eventually, uniq


@pytest.fixture
def near(redis_url: str, logs: Path) -> Iterator[tuple[Config, Fleet]]:
    """A fleet of its own with one host, near (the location far has no worker yet)."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('ad')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(cfg, [["near"]], extra_args=INCLUDE, log_dir=logs),
        Fleet(config=cfg) as fleet,
    ):
        yield cfg, fleet


def forge(cfg: Config, job_id: int, location: str, task_id: str | None = None) -> None:
    """What a holder of Redis access could push: a job message on a location's queue."""
    app = make_celery(cfg)
    try:
        app.send_task(
            TASK_NAME,
            args=[job_id],
            queue=queue_for(location),
            task_id=task_id or str(uuid.uuid4()),
            ignore_result=True,
        )
    finally:
        app.close()


def refusals(fleet: Fleet, count: int) -> list[letters.DeadLetter]:
    found = eventually(
        lambda: len(letters.read(fleet.store)) >= count and letters.read(fleet.store)
    )
    return list(found)  # type: ignore[call-overload]


def test_a_message_naming_a_parent_job_runs_nothing(
    near: tuple[Config, Fleet], tmp_path: Path
) -> None:
    cfg, fleet = near
    # given a job whose child ran on near, once
    job = fleet.start("tally", str(tmp_path), locations="near")
    assert fleet.wait(job, timeout=20)
    # when a forged message names the parent's id on near's queue
    forge(cfg, job.id, "near")
    [letter] = refusals(fleet, 1)
    # then it is refused and kept, and nothing ran again
    assert "is a parent job" in letter.reason and letter.location == "near"
    assert (tmp_path / "near").read_text().splitlines() == [str(job.info.child_ids[0])]
    assert job.state is JobState.COMPLETED


def test_a_message_for_another_location_runs_nowhere_but_there(
    near: tuple[Config, Fleet], tmp_path: Path, logs: Path
) -> None:
    cfg, fleet = near
    # given a job for far, which no worker serves yet
    job = fleet.start("tally", str(tmp_path), locations="far")
    [child] = job.info.children
    # when its child's message is pushed onto near's queue (even with the right task id)
    forge(cfg, child.id, "near", child.instance_id)
    [letter] = refusals(fleet, 1)
    # then near refuses it: the job still waits for far, and near ran nothing
    assert "belongs to location far, not to near" in letter.reason
    assert job.refresh().info.children[0].state is JobState.NOT_STARTED
    assert not (tmp_path / "near").exists()
    # and once far has a worker, it runs there, once
    with LocalWorkers(cfg, [["far"]], extra_args=INCLUDE, log_dir=logs):
        assert fleet.wait(job, timeout=30)
    assert (tmp_path / "far").read_text().splitlines() == [str(child.id)]


def test_a_message_the_fleet_never_sent_is_refused(
    near: tuple[Config, Fleet], tmp_path: Path
) -> None:
    cfg, fleet = near
    # given a child of near recorded but not yet published
    _, _, [child] = fleet.lifecycle.create(JobSpec("tally", [str(tmp_path)], {}, "tally", ["near"]))
    # when a message names it on near's own queue, with a task id the fleet never used
    forge(cfg, child.id, "near", str(uuid.uuid4()))
    [letter] = refusals(fleet, 1)
    # then it is refused, and the child still waits for its own message
    assert "is not the one the fleet sent" in letter.reason
    assert fleet.get(child.id)[0].info.state is JobState.NOT_STARTED
    assert not (tmp_path / "near").exists()
    # and the message the fleet sends (the child's InstanceId as task id) runs it, once
    forge(cfg, child.id, "near", child.instance_id)
    eventually(lambda: fleet.get(child.id)[0].info.state is JobState.COMPLETED, timeout=20)
    assert (tmp_path / "near").read_text().splitlines() == [str(child.id)]
