"""Stop and Remove: durable stops, process groups killed, nothing left behind."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from fleetjobs import ArgumentError, Config, Fleet, JobState, JobStateError
from fleetjobs.embedded import LocalWorkers
from fleetjobs.lifecycle import JobSpec
from fleetjobs.records import Pending

from .conftest import INCLUDE, Layers, eventually, uniq

S = JobState


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(int(pid))
    return found


def test_stop_ends_a_running_command_and_its_whole_process_group(fleet: Fleet) -> None:
    # given a run job whose shell started a background child and a foreground child
    secs = random.randint(5000, 9000)
    job = fleet.start(
        "run", f"echo started; sleep {secs} & sleep {secs + 1}; echo never", locations="alpha"
    )
    eventually(lambda: len(processes_with(f"sleep {secs}")) >= 2)
    eventually(lambda: job.has_more_data and list(fleet.receive(job, keep=True)) == ["started"])
    # when it is stopped
    began = time.monotonic()
    fleet.stop(job)
    # then it is Stopped within 2 s, with no process of it left, and its output kept
    assert job.state is JobState.STOPPED
    assert time.monotonic() - began < 2.0
    assert processes_with(f"sleep {secs}") == []
    assert list(fleet.receive(job)) == ["started"]
    assert job.reason == "stopped by user"


def test_a_stop_given_the_moment_a_job_begins_running_is_not_missed(fleet: Fleet) -> None:
    # given jobs that sleep for a minute, each stopped the moment it shows Running (before
    # its worker listens on its channel: it does so once a job has run for 50 ms)
    for _ in range(3):
        job = fleet.start("sleep", 60, locations="alpha")
        eventually(lambda job=job: job.refresh().state is JobState.RUNNING, every=0.002)
        fleet.stop(job, timeout=0)
        # then each ends Stopped long before its minute is up
        assert fleet.wait([job], timeout=20), "the stop was missed"
        assert job.refresh().state is JobState.STOPPED


def test_stop_interrupts_an_action_that_ignores_the_stop_flag(fleet: Fleet) -> None:
    job = fleet.start("stubborn", 60, locations="beta")
    eventually(lambda: job.state is JobState.RUNNING)
    began = time.monotonic()
    fleet.stop(job)
    assert job.state is JobState.STOPPED
    assert time.monotonic() - began < 2.0


def test_a_queued_job_stopped_while_its_worker_is_down_never_runs(
    fleet: Fleet, tmp_path: Path
) -> None:
    # given a job queued for a host whose worker is down
    loc = uniq("down")
    marker = tmp_path / "ran"
    job = fleet.start("run", f"touch {marker}", locations=loc)
    # when it is stopped, and only then the worker comes up
    stopped = fleet.stop(job)[0]
    assert stopped.info.state is JobState.STOPPED
    with LocalWorkers(fleet.config, [[loc]], allow_shell=True, concurrency=1, extra_args=INCLUDE):
        after = fleet.start("echo", "the queue was drained", locations=loc)
        assert fleet.wait([after], timeout=20)
    # then the stopped job never ran
    assert not marker.exists()
    assert job.state is JobState.STOPPED
    assert job.refresh().info.children[0].begin_time is None


def test_a_revoke_from_celery_while_the_jobs_worker_is_down_holds(
    fleet: Fleet, tmp_path: Path, logs: Path
) -> None:
    logs_dir = logs
    # given a job queued for a host whose worker is down (alpha's and beta's are up)
    loc = uniq("down")
    marker = tmp_path / "ran"
    job = fleet.start("run", f"touch {marker}", locations=loc)
    child = fleet.info(job).children[0]
    # when Celery revokes its task, as Flower's Revoke button does (no terminate)
    from fleetjobs.celery_app import make_celery

    make_celery(fleet.config).control.revoke(child.instance_id)
    # then a worker that heard it records the stop: the job is Stopped, saying from where
    eventually(lambda: fleet.info(child.id).state is JobState.STOPPED, timeout=15)
    assert fleet.info(child.id).reason == "stopped from Celery before it started"
    # (and so is one Flower's Terminate names while its host is down)
    other = fleet.start("echo", "x", locations=uniq("down"))
    make_celery(fleet.config).control.revoke(
        fleet.info(other).children[0].instance_id, terminate=True
    )
    eventually(lambda: fleet.info(other).state is JobState.STOPPED, timeout=15)
    # and once its own worker comes up, it never runs (the revoke was lost with that worker
    # down: Celery keeps it in the memory of the workers that heard it, celery#8888)
    with LocalWorkers(
        fleet.config, [[loc]], allow_shell=True, concurrency=1, extra_args=INCLUDE, log_dir=logs
    ):
        after = fleet.start("echo", "the queue was drained", locations=loc)
        assert fleet.wait([after], timeout=20)
        fleet.stop(fleet.start("sleep", 30, locations=loc))  # a stop's revoke, heard by all
    assert not marker.exists() and fleet.info(child.id).begin_time is None
    # and no worker warns it could not mark the task revoked in a result backend: it has
    # none (it warned so at every stop anywhere in the fleet)
    logs = "".join(p.read_text(errors="replace") for p in logs_dir.glob("*.log"))
    assert "revoked in backend" not in logs
    # and a revoke of a running job's task leaves it running, as Celery's does
    running = fleet.start("sleep", 30, locations="alpha")
    eventually(lambda: fleet.info(running).state is JobState.RUNNING, timeout=15)
    make_celery(fleet.config).control.revoke(fleet.info(running).children[0].instance_id)
    time.sleep(1.0)
    assert fleet.info(running).state is JobState.RUNNING
    fleet.stop(running)


def test_stopping_a_finished_job_changes_nothing(fleet: Fleet) -> None:
    job = fleet.start("echo", "x", locations="alpha")
    fleet.wait([job], timeout=15)
    assert fleet.stop(job)[0].info.state is JobState.COMPLETED


def test_remove_refuses_an_unfinished_job_unless_forced(fleet: Fleet) -> None:
    job = fleet.start("sleep", 60, locations="alpha")
    with pytest.raises(JobStateError, match="stop it first"):
        fleet.remove(job)
    assert job.state in {JobState.NOT_STARTED, JobState.RUNNING}
    fleet.remove(job, force=True)
    with pytest.raises(Exception, match="no job"):
        fleet.get(job.id)


def test_remove_deletes_every_key_the_job_owns(fleet: Fleet) -> None:
    # given a finished two-host job with unread output
    job = fleet.start("echo", "left over", name=uniq("owned"), locations="alpha,beta")
    fleet.wait([job], timeout=15)
    r, p = fleet.registry.r, fleet.config.prefix
    iids = [job.instance_id, *(c.instance_id for c in job.refresh().info.children)]
    owned = [k for k in r.scan_iter(match=f"{p}*") if any(i in k for i in iids)]
    assert sorted(owned) == sorted(f"{p}out:{c.instance_id}" for c in job.info.children)
    # indexed in its bucket of each history index (get --action/--location/--since)
    bucket = int(r.hget(fleet.store.keys.job(job.id), "ix"))
    families = ("top", "action:echo", "loc:alpha", "loc:beta", "ended")
    indexed = [fleet.store.keys.ix(bucket, f) for f in families]
    assert all(r.zscore(key, job.id) is not None for key in indexed)
    # Celery keeps no result of its own: the registry is the one record of a job
    assert not [k for k in r.scan_iter(match=f"{p}celery-task-meta-*") if k[-36:] in iids]
    # when it is removed
    fleet.remove(job)
    # then no key that names it is left, and no index still lists it
    leftovers = [k for k in r.scan_iter(match=f"{p}*") if any(i in k for i in iids)]
    assert leftovers == []
    assert not any(r.hexists(f"{p}iids", i) for i in iids)
    assert not any(r.exists(fleet.store.keys.job(i)) for i in (job.id, *job.info.child_ids))
    assert not r.sismember(f"{p}names:{job.name}", job.id)
    # nor any history index (get --action/--location/--since/--failed)
    for index in (*indexed, fleet.store.keys.waves):
        assert r.zscore(index, job.id) is None, index


def test_remove_by_state_and_remove_all(private: tuple[object, Fleet]) -> None:
    _, fleet = private
    done = fleet.start("echo", 1, locations="solo")
    failed = fleet.start("fail_with", "no", locations="solo")
    running = fleet.start("sleep", 60, locations="solo")
    fleet.wait([done, failed], timeout=15)
    removed = fleet.remove(state="Completed")
    assert [j.id for j in removed] == [done.id]
    assert sorted(j.id for j in fleet.get()) == [failed.id, running.id]
    # every job is asked for by name: a None where a job was expected removes nothing
    skipped = None  # what schedules.run() returns for a run its overlap policy skipped
    with pytest.raises(ArgumentError, match="all_jobs=True"):
        fleet.remove(skipped)
    assert len(fleet.get()) == 2
    # without force, the finished ones go and the running one stays (Get-Job | Remove-Job)
    with pytest.raises(JobStateError, match=f"job {running.id} "):
        fleet.remove(all_jobs=True)
    assert [j.id for j in fleet.get()] == [running.id]
    fleet.remove(force=True, all_jobs=True)
    assert fleet.get() == []


def test_finished_jobs_are_purged_after_the_retention_period(
    private: tuple[Config, Fleet],
) -> None:
    cfg, _ = private
    with Fleet(config=cfg.with_(retention=1.0)) as fleet:
        old = fleet.start("echo", "old", locations="solo")
        running = fleet.start("sleep", 30, locations="solo")
        assert fleet.wait([old], timeout=15)
        time.sleep(1.5)
        fleet.start("echo", "new", locations="solo")  # a start purges what has expired
        ids = [j.id for j in fleet.get()]
        assert old.id not in ids and running.id in ids  # an unfinished job is never purged
        fleet.remove(running, force=True)


def test_a_bulk_remove_leaves_no_key_and_no_index_entry(layers: Layers) -> None:
    # given jobs in every phase of their life, on shared and distinct hosts, in one fleet
    w = layers
    made = [
        w.lifecycle.create(JobSpec("echo", [], {}, "echo", locs, name=name, throttle_limit=1))
        for locs, name in (
            (["h1", "h2", "h3"], "fan"),
            (["h1"], "one"),
            (["h2", "h4"], "fan"),
            (["h4"], "never"),
        )
    ]
    for _, _, children in made[:3]:
        w.lifecycle.claim(children[0].id, "a")
        w.lifecycle.finish(children[0].id, S.FAILED, "no")
    w.records.append(made[0][2][0].instance_id, None, [Pending("output", "x", 1, 1.0)])
    before = set(w.store.r.scan_iter(match=f"{w.store.config.prefix}*"))
    assert len(before) > 10
    # when they are removed at once
    w.lifecycle.remove(w.registry.load([pid for pid, _, _ in made]))
    # then the fleet holds nothing of them: its id and ordinal counters and the names of the
    # hosts that have had messages out (the redelivery's list of where to look) are all that
    # is left: no history index, no bucket, no list of buckets
    left = set(w.store.r.scan_iter(match=f"{w.store.config.prefix}*"))
    assert left == {w.keys.seq, w.keys.tseq, w.keys.inqlocs}
