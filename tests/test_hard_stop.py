"""A stop that always ends: a GIL-holding action killed after the grace with its pool process
replaced; run jobs end when their command does; --fresh-process isolates jobs."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetjobs import Config, Fleet, JobState
from fleetjobs.embedded import LocalWorkers

from .conftest import INCLUDE, eventually, uniq
from .test_stop_remove import processes_with


@pytest.fixture(scope="module")
def stuck(redis_url: str, logs: Path) -> Iterator[Fleet]:
    """A fleet of its own with one host, 'stuck', whose worker has one pool process."""
    cfg = Config(
        redis_url=redis_url,
        prefix=f"{uniq('hs')}:",
        heartbeat_interval=0.5,
        host_ttl=3.0,
        disconnect_grace=4.0,
        stop_grace=2.0,
    )
    with (
        LocalWorkers(cfg, [["stuck"]], concurrency=1, extra_args=INCLUDE, log_dir=logs),
        Fleet(config=cfg) as f,
    ):
        yield f


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_gil_holding_action_is_stopped_after_the_grace_and_its_process_replaced(
    stuck: Fleet,
) -> None:
    # given an action stuck in C code holding the GIL for a minute
    job = stuck.start("hog", 60, locations="stuck")
    [pid] = eventually(lambda: list(stuck.receive(job, keep=True)), timeout=30)  # type: ignore[misc]
    # when it is stopped
    began = time.monotonic()
    [stopped] = stuck.stop(job, timeout=30)
    took = time.monotonic() - began
    # then it is Stopped long before the action could end, its process is gone
    assert stopped.info.state is JobState.STOPPED
    assert took < 30, took
    eventually(lambda: not _alive(pid))
    # and nothing it would write after the stop point counts
    assert list(stuck.receive(job)) == [pid]
    # and the host runs the next job, in a new pool process
    nxt = stuck.start("where", locations="stuck")
    [done] = stuck.wait(nxt, timeout=30)
    assert done.info.state is JobState.COMPLETED
    assert stuck.receive(nxt)[0]["Pid"] != pid


def test_a_timeout_ends_a_gil_holding_action_too(stuck: Fleet) -> None:
    job = stuck.start("hog", 60, locations="stuck", timeout=1)
    [done] = stuck.wait(job, timeout=40)
    assert done.info.state is JobState.FAILED
    assert done.info.children[0].reason is not None
    assert done.info.children[0].reason.startswith("timed out after 1 s")


def test_a_run_job_ends_when_its_command_exits_and_its_leftovers_are_killed(
    fleet: Fleet,
) -> None:
    secs = random.randint(5000, 9000)
    job = fleet.start("run", f"echo hi; sleep {secs} & echo bye", locations="alpha")
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is JobState.COMPLETED
    assert list(fleet.receive(job)) == ["hi", "bye"]
    eventually(lambda: processes_with(f"sleep {secs}") == [])


def test_run_keep_children_leaves_the_background_child(fleet: Fleet) -> None:
    secs = random.randint(5000, 9000)
    job = fleet.start(
        "run",
        f"sleep {secs} >/dev/null 2>&1 & echo started",
        locations="alpha",
        kwargs={"keep_children": True},
    )
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is JobState.COMPLETED
    left = processes_with(f"sleep {secs}")
    assert left
    for pid in left:
        os.kill(pid, 9)


def test_fresh_process_gives_each_job_its_own_process(redis_url: str, logs: Path) -> None:
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fp')}:", heartbeat_interval=0.5)
    with (
        LocalWorkers(
            cfg,
            [["fresh"]],
            concurrency=1,
            extra_args=[*INCLUDE, "--fresh-process"],
            log_dir=logs,
        ),
        Fleet(config=cfg) as fleet,
    ):
        counts = []
        for _ in range(3):
            job = fleet.start("count_calls", locations="fresh")
            fleet.wait(job, timeout=30)
            counts.extend(fleet.receive(job))
        assert counts == [1, 1, 1]


@contextlib.contextmanager
def one_host(redis_url: str, logs: Path, concurrency: int) -> Iterator[tuple[Fleet, Any]]:
    """A fleet of its own with one host, ``held``, and its worker process (to signal)."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('ws')}:", heartbeat_interval=0.5)
    workers = LocalWorkers(
        cfg, [["held"]], concurrency=concurrency, extra_args=INCLUDE, log_dir=logs
    )
    workers.start()
    try:
        with Fleet(config=cfg) as fleet:
            yield fleet, workers.procs[0]
    finally:
        workers.stop()


def shut_down_warmly(worker: Any) -> None:
    """SIGTERM to the worker alone, and its exit: what waits on its running jobs."""
    os.kill(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)


def test_a_warm_shutdown_ends_a_suspended_job_instead_of_waiting_for_it(
    redis_url: str, logs: Path
) -> None:
    with one_host(redis_url, logs, concurrency=1) as (fleet, worker):
        job = fleet.start("sleep", 600, locations="held")
        eventually(lambda: fleet.info(job.id).state is JobState.RUNNING, timeout=30)
        assert fleet.suspend(job, timeout=15)[0].info.state is JobState.SUSPENDED
        # when its worker is asked to shut down warmly, then it exits instead of waiting for
        # a resume, and the job says why
        shut_down_warmly(worker)
        child = fleet.info(job.id).children[0]
        assert child.state is JobState.FAILED
        assert "shut down while the job was suspended" in (child.reason or "")


def test_a_warm_shutdown_ends_jobs_that_ask_or_suspend_once_it_began(
    redis_url: str, logs: Path
) -> None:
    with one_host(redis_url, logs, concurrency=2) as (fleet, worker):
        # given a job that asks (Blocked) and one asked to suspend, not yet at a checkpoint
        asks = fleet.start("confirm_delete", 3, locations="held")
        eventually(lambda: fleet.info(asks.id).state is JobState.BLOCKED, timeout=30)
        later = fleet.start("steps", 3, delay=4, locations="held")
        eventually(lambda: fleet.info(later.id).state is JobState.RUNNING, timeout=30)
        fleet.suspend(later, timeout=0)
        # when its worker is asked to shut down warmly: it waited on both for ever (an
        # answer, and a resume of the job that reached its checkpoint meanwhile)
        shut_down_warmly(worker)
        # then each ended, saying why, and what they wrote is kept
        blocked, suspended = (fleet.info(j.id).children[0] for j in (asks, later))
        assert blocked.state is JobState.FAILED
        assert "shut down while the job waited for an answer" in (blocked.reason or "")
        assert suspended.state is JobState.FAILED
        assert "shut down while the job was suspended" in (suspended.reason or "")
        assert list(fleet.receive(asks))[:1] == ["found the files"]


def test_a_command_line_that_starts_with_a_dash_is_the_command(fleet: Fleet) -> None:
    # sh -c '--version' took it for an option of sh ("Illegal option --"): it is the command
    job = fleet.start("run", "-n 2>/dev/null; echo ran", locations="alpha")
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is JobState.COMPLETED, done.info.reason
    assert list(fleet.receive(job)) == ["ran"]
