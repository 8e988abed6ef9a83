"""Checked by mypy only (``make lint``), never run: the public API's types as a user sees them.

Every verb takes one job reference or several; a timeout is ``timeout=`` seconds everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, assert_type

from fleetjobs import (
    ActionContext,
    Fleet,
    HostInfo,
    Job,
    JobInfo,
    JobState,
    Received,
    Record,
    parallel,
)
from fleetjobs.parallel import ItemResult
from fleetjobs.schedule_model import ScheduleInfo
from workers.context import JobContext


def api(fleet: Fleet) -> None:
    job = fleet.start("sleep", 5, "done", name="Nap", locations=["web01", "web02"])
    assert_type(job, Job)
    assert_type(job.state, JobState)
    assert_type(job.info, JobInfo)
    assert_type(job.has_more_data, bool)
    assert_type(job.wait(timeout=1.5), bool)
    assert_type(job.receive(keep=True, follow=False), Received)
    assert_type(job.stop(timeout=2.0), Job)
    assert_type(fleet.get(), list[Job])
    assert_type(fleet.get(3, name="Nap", state="Completed"), list[Job])
    assert_type(fleet.get(["Nap", 3, job, job.info]), list[Job])
    assert_type(fleet.each(action="sleep", since="2h"), Iterator[Job])
    # one reference or several, for every verb; a str is one reference
    assert_type(fleet.wait(job), list[Job])
    assert_type(fleet.wait("Nap", timeout=None, any=True), list[Job])
    assert_type(fleet.wait([job, 3, "Nap"], timeout=5.0), list[Job])
    got = fleet.receive(job, keep=True)
    assert_type(got, Received)
    assert_type(fleet.receive("Nap", follow=True, auto_remove=True), Received)
    assert_type(got.records, list[Record])
    assert_type(got.errors, list[Any])
    assert_type(fleet.stream([job], follow=True), Iterator[Record])
    assert_type(fleet.stop(job), list[Job])
    assert_type(fleet.stop(["Nap", 7], timeout=None), list[Job])
    assert_type(fleet.remove([job], force=True), list[Job])
    assert_type(fleet.remove(state="Completed"), list[Job])
    assert_type(fleet.hosts(), list[HostInfo])
    assert_type(fleet.start("processes", locations="web01", top=3), Job)
    assert_type(fleet.answer(job, "yes"), list[Job])
    assert_type(fleet.suspend([job, 3], timeout=None), list[Job])
    assert_type(fleet.resume("Nap"), list[Job])
    assert_type(fleet.wait(job, force=True), list[Job])
    assert_type(parallel(len, ["a", "bb"], throttle_limit=2), list[ItemResult[int]])
    assert_type(fleet.schedules.add("nightly", "echo", 1, cron="0 3 * * *"), ScheduleInfo)
    assert_type(fleet.schedules.list(), list[ScheduleInfo])
    assert_type(fleet.schedules.run("nightly"), Job | None)


def refused(fleet: Fleet, job: Job) -> None:
    fleet.wait(job, 5.0, True)  # type: ignore[call-arg]
    fleet.receive(job, wait=True)  # type: ignore[call-arg]
    fleet.stop(job, wait=5.0)  # type: ignore[call-arg]
    fleet.wait(3.5)  # type: ignore[arg-type]


def action_context(ctx: JobContext) -> None:
    # what an action module annotates its ctx with is what a worker hands it
    annotated: ActionContext = ctx
    annotated.verbose("checking /")
    assert_type(annotated.should_stop, bool)
    assert_type(annotated.ask("Reboot?", ["yes", "no"]), str)
