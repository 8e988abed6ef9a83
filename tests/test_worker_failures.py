"""A worker dying mid-job: the job never stays Running for ever, and is never run twice."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from fleetjobs import Fleet, JobState
from fleetjobs.embedded import LocalWorkers

from .conftest import INCLUDE, eventually, uniq


def test_a_pool_process_killed_mid_job_fails_the_job_and_the_worker_goes_on(fleet: Fleet) -> None:
    job = fleet.start("die", locations="alpha")
    assert fleet.wait([job], timeout=20)
    assert job.state is JobState.FAILED
    assert "worker process running the job died" in (job.reason or "")
    assert "Job: " not in (job.reason or "")  # Celery's pool index, no Id of a job
    assert list(fleet.receive(job)) == ["about to die"]
    after = fleet.start("echo", "still serving", locations="alpha")
    assert fleet.wait([after], timeout=20) and list(fleet.receive(after)) == ["still serving"]


def test_a_worker_killed_mid_job_leaves_it_disconnected_then_failed_never_rerun(
    fleet: Fleet,
) -> None:
    # given a job running on a worker of its own
    loc = uniq("doomed")
    workers = LocalWorkers(fleet.config, [[loc]], concurrency=1, extra_args=INCLUDE)
    workers.start()
    try:
        job = fleet.start("produce", 1000, 0.1, locations=loc)
        eventually(lambda: fleet.receive(job, keep=True))  # it has written something
        # when the whole worker is killed (no warm shutdown, no goodbye)
        os.killpg(workers.procs[0].pid, signal.SIGKILL)
        # then the job turns Disconnected once its heartbeats expire, and Failed after grace
        eventually(lambda: fleet.get(job.id)[0].info.state is JobState.DISCONNECTED, timeout=20)
        assert fleet.wait([job], timeout=30, force=True)  # waits through Disconnected
        assert job.state is JobState.FAILED
        assert "stopped answering" in (job.reason or "")
        written = list(fleet.receive(job))
        assert written and written == list(range(1, len(written) + 1))
        # and a new worker on that host does not run it again (at-most-once)
        with LocalWorkers(fleet.config, [[loc]], concurrency=1, extra_args=INCLUDE):
            probe = fleet.start("echo", "fresh", locations=loc)
            assert fleet.wait([probe], timeout=20)
        assert job.state is JobState.FAILED and list(fleet.receive(job)) == []
    finally:
        workers.stop()


def test_local_workers_killed_at_their_stop_leave_no_temporary_files(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given local workers (the demo's) under a TMPDIR of the test's own
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with LocalWorkers(
        fleet.config, [[uniq("tmpdir")]], concurrency=1, extra_args=INCLUDE
    ) as workers:
        # their pool made its folder in their own temporary folder, inside the test's
        assert workers.tmp is not None and workers.tmp.parent == tmp_path
        assert list(workers.tmp.glob("pymp-*"))
        # when a worker dies without its clean exit (as one killed at the stop's timeout)
        os.killpg(workers.procs[0].pid, signal.SIGKILL)
        workers.procs[0].wait()
    # then nothing of it is left
    assert list(tmp_path.iterdir()) == []


def test_local_workers_started_then_entered_are_one_set(fleet: Fleet) -> None:
    # a fixture starts them with settings of the moment, then enters them: no second worker
    # (one started without those settings would take half the jobs)
    workers = LocalWorkers(fleet.config, [[uniq("once")]], concurrency=1, extra_args=INCLUDE)
    workers.start()
    with workers:
        assert len(workers.procs) == 1
    assert workers.procs == []


def _expired_copy(fleet: Fleet, iid: str) -> str:
    """The kept message of a child, as a stale copy past its expiry would come."""
    import json

    kept = fleet.store.r.get(fleet.store.keys.msg(iid))
    assert kept, "no kept message"
    doc = json.loads(kept)
    doc["headers"]["expires"] = "2000-01-01T00:00:00+00:00"
    return json.dumps(doc)


def test_an_expired_copy_changes_no_job_that_runs_or_is_another_hosts(fleet: Fleet) -> None:
    r, keys = fleet.store.r, fleet.store.keys
    # given a job queued for a host whose worker is down, and a copy of its message past
    # its expiry (a worker frozen with it prefetched while another took the job)
    loc = uniq("frozen")
    job = fleet.start("steps", 4, 0.5, locations=loc)
    child = fleet.info(job).children[0]
    stale = _expired_copy(fleet, child.instance_id)
    # when that copy reaches another host's queue, then the job is not changed
    r.lpush(keys.queue("alpha"), stale)
    time.sleep(1.5)
    assert fleet.info(child.id).state is JobState.NOT_STARTED
    # and when the job runs on its own host and the copy comes there, it runs on to its end
    with LocalWorkers(fleet.config, [[loc]], concurrency=2, extra_args=INCLUDE):
        eventually(lambda: fleet.info(child.id).state is JobState.RUNNING, timeout=20)
        r.lpush(keys.queue(loc), stale)
        [done] = fleet.wait([job], timeout=30)
    assert done.info.state is JobState.COMPLETED, fleet.info(child.id).reason
    assert list(fleet.receive(job)) == [1, 2, 3, 4]


def test_a_revoked_copy_changes_no_job_that_runs(fleet: Fleet) -> None:
    from fleetjobs.celery_app import make_celery

    r, keys = fleet.store.r, fleet.store.keys
    # given a job queued for a host whose worker is down, and a copy of its message
    loc = uniq("revoked")
    job = fleet.start("steps", 4, 0.5, locations=loc)
    child = fleet.info(job).children[0]
    copy = r.get(keys.msg(child.instance_id))
    assert copy
    with LocalWorkers(fleet.config, [[loc]], concurrency=2, extra_args=INCLUDE):
        # when it runs, its task is revoked from Celery (which leaves a running task be), and
        # the copy reaches its worker, which discards it as revoked
        eventually(lambda: fleet.info(child.id).state is JobState.RUNNING, timeout=20)
        make_celery(fleet.config).control.revoke(child.instance_id)
        time.sleep(0.5)
        r.lpush(keys.queue(loc), copy)
        # then the job runs on to its end (the discarded copy stopped it)
        [done] = fleet.wait([job], timeout=30)
    assert done.info.state is JobState.COMPLETED, fleet.info(child.id).reason
    assert list(fleet.receive(job)) == [1, 2, 3, 4]


def test_a_cold_shutdown_says_so_as_its_running_jobs_reason(config: object, fleet: Fleet) -> None:
    # given a job running on a host of its own
    loc = uniq("cold")
    with LocalWorkers(fleet.config, [[loc]], concurrency=1, extra_args=INCLUDE) as workers:
        job = fleet.start("sleep", 30, locations=loc)
        eventually(lambda: fleet.info(job).state is JobState.RUNNING, timeout=20)
        # when its worker is shut down cold (SIGQUIT)
        os.kill(workers.procs[0].pid, signal.SIGQUIT)
        # then the job is Stopped saying why, not "stopped from Celery" (nobody stopped it)
        [done] = fleet.wait([job], timeout=30)
    child = done.info.children[0]
    assert child.state is JobState.STOPPED, child
    assert (child.reason or "").startswith("its worker was shut down cold (SIGQUIT)"), child.reason


def test_a_location_two_workers_serve_stays_online_when_one_shuts_down(fleet: Fleet) -> None:
    # given a location two workers serve, beating every 10 s (the other's next beat would
    # put it online again: a window this wide shows it)
    loc = uniq("twice")
    slow = fleet.config.with_(heartbeat_interval=10.0, host_ttl=30.0)
    with LocalWorkers(slow, [[loc], [loc]], concurrency=1, extra_args=INCLUDE) as two:
        eventually(lambda: [h.online for h in fleet.hosts() if h.location == loc] == [True])
        # when one of them shuts down cleanly
        first = two.procs[0]
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        # then the location is still online (it went offline until the other's next beat,
        # and a start warned that no worker served it)
        assert [h.online for h in fleet.hosts() if h.location == loc] == [True]
        job = fleet.start("echo", "still served", locations=loc)
        assert job.warnings == ()
        assert fleet.wait([job], timeout=20) and list(fleet.receive(job)) == ["still served"]
