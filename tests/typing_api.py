"""Checked by mypy only (``make lint``), never run: the public API's types as a user sees them."""

from __future__ import annotations

from typing import Any, assert_type

from fleetjobs import Fleet, HostInfo, Job, JobInfo, JobState, Received, Record, parallel
from fleetjobs.parallel import ItemResult
from fleetjobs.schedule_model import ScheduleInfo


def api(fleet: Fleet) -> None:
    job = fleet.start("sleep", 5, "done", name="Nap", locations=["web01", "web02"])
    assert_type(job, Job)
    assert_type(job.state, JobState)
    assert_type(job.info, JobInfo)
    assert_type(job.has_more_data, bool)
    assert_type(job.wait(timeout=1.5), bool)
    assert_type(fleet.get(), list[Job])
    assert_type(fleet.get(3, name="Nap", state="Completed"), list[Job])
    assert_type(fleet.wait([job], timeout=None, any=True), list[Job])
    got = fleet.receive(job, keep=True)
    assert_type(got, Received)
    assert_type(got.records, list[Record])
    assert_type(got.errors, list[Any])
    assert_type(fleet.stop(job), list[Job])
    assert_type(fleet.remove([job], force=True), list[Job])
    assert_type(fleet.hosts(), list[HostInfo])
    assert_type(parallel(len, ["a", "bb"], throttle_limit=2), list[ItemResult[int]])
    assert_type(fleet.schedules.add("nightly", "echo", 1, cron="0 3 * * *"), ScheduleInfo)
    assert_type(fleet.schedules.list(), list[ScheduleInfo])
    assert_type(fleet.schedules.run("nightly"), Job | None)
