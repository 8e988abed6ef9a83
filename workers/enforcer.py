"""The stop that always ends: in a worker's main process, a thread that kills and replaces a
pool process whose action ignored its job's stop (or timeout) for longer than the grace.

An action stuck in C code that holds the GIL cannot be interrupted from inside its process:
its own watcher thread never gets to run. The main process can. It looks at the jobs its
pool processes run (Celery's active requests, each with its pool process's pid): at every
one each second, and each quarter second at those overdue or past their timeout. One whose
stop was asked or whose timeout passed, and that is still not settled, is given
``stop_grace`` seconds (default 2). Then the
enforcer settles it first — Stopped, or Failed "timed out" — so nothing the action might
still write counts (a finished job takes no more records), and kills the pool process with
SIGKILL; Celery's pool replaces it, and the job's Celery failure (WorkerLostError) finds the
job already settled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions

from fleetjobs.errors import FleetJobsError
from fleetjobs.routing import TASK_NAME
from fleetjobs.states import JobState

from .process import Layers

log = logging.getLogger("fleetjobs.worker")
POLL = 0.25  # seconds between looks at the jobs already overdue (waiting out the grace)
FULL_LOOK = 1.0  # seconds between looks at every job this worker runs (4 reads a second
# for each running job before: 10,000 running jobs were 40,000 Redis commands a second)


def _active_requests() -> list[Any]:
    from celery.worker import state as worker_state

    return list(worker_state.active_requests)


# what ends a job a person holds (Suspended, Blocked) when its worker shuts down warmly
HELD_AT_SHUTDOWN = {
    JobState.SUSPENDED.value: "its worker shut down while the job was suspended at a "
    "checkpoint; what it did and wrote before is kept",
    JobState.BLOCKED.value: "its worker shut down while the job waited for an answer; what it "
    "did and wrote before is kept",
}


class Enforcer(threading.Thread):
    """Ends for real the jobs whose actions outlive their stop or timeout by ``grace`` s."""

    def __init__(
        self,
        layers: Layers,
        grace: float,
        requests: Callable[[], list[Any]] = _active_requests,
    ) -> None:
        super().__init__(name="fleetjobs-enforcer", daemon=True)
        self.layers = layers
        self.grace = grace
        self._requests = requests
        self._overdue: dict[str, float] = {}  # task id -> when first seen overdue (monotonic)
        self._times: dict[int, tuple[str | None, str | None]] = {}  # job id -> begin, timeout
        self._last_full = 0.0
        self._closed = threading.Event()

    def run(self) -> None:
        away = False  # Redis is away: said once, not at every look
        while not self._closed.wait(POLL):
            try:
                self.check()
            except (
                FleetJobsError,
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
            ) as exc:
                if not away:
                    log.warning(
                        "the stop enforcer cannot look at its jobs (will keep trying): %s",
                        _line(exc),
                    )
                away = True
                continue
            except Exception:
                log.exception("the stop enforcer failed to look at its jobs")
            away = False

    def close(self) -> None:
        self._closed.set()

    def check(self) -> None:
        running = self._running()
        tasks, jobs = {r.id for r, _ in running}, {j for _, j in running}
        self._overdue = {k: v for k, v in self._overdue.items() if k in tasks}
        self._times = {j: t for j, t in self._times.items() if j in jobs}
        if not running:
            return
        now, mono = time.time(), time.monotonic()
        full = mono - self._last_full >= FULL_LOOK
        if full:
            self._last_full = mono
        # every job once a second; in between, those overdue and those whose timeout is due
        look = [
            (req, job_id)
            for req, job_id in running
            if full or req.id in self._overdue or self._timed_out(job_id, now)
        ]
        if not look:
            return
        r, keys = self.layers.store.r, self.layers.store.keys
        pipe = r.pipeline(transaction=False)
        for _, job_id in look:
            pipe.hmget(keys.job(job_id), "state", "stop", "begin", "timeout")
        pids = [req.worker_pid for req, _ in running]
        for (req, job_id), (state, stop, begin, timeout) in zip(look, pipe.execute(), strict=True):
            self._times[job_id] = (begin, timeout)
            if pids.count(req.worker_pid) > 1:
                continue  # its process already runs the next job: this one has ended
            # a job settled (or removed) is left alone: its runtime finished it, and its pool
            # process may be on to the next job before the main process hears of it
            if state is None or JobState(state).finished:
                continue
            timed_out = bool(timeout and begin and now > float(begin) + float(timeout))
            if not (stop == "1" or timed_out):
                continue
            first = self._overdue.setdefault(req.id, mono)
            if mono - first >= self.grace:
                self._end(req, job_id, stop == "1", timeout)
                self._overdue.pop(req.id, None)

    def _timed_out(self, job_id: int, now: float) -> bool:
        begin, timeout = self._times.get(job_id, (None, None))
        return bool(timeout and begin and now > float(begin) + float(timeout))

    def release_held(self) -> list[int]:
        """At a warm shutdown: end the jobs held in this worker's pool by a person, Suspended
        (until resumed) or Blocked (until answered), which would otherwise keep the shutdown
        waiting for them. Each is settled Failed with a Reason that says so (its records
        stay; it is not run again: at most once), then its pool process is killed.

        Returns:
            The ids of the jobs ended.
        """
        running = self._running()
        if not running:
            return []
        r, keys = self.layers.store.r, self.layers.store.keys
        pipe = r.pipeline(transaction=False)
        for _, job_id in running:
            pipe.hget(keys.job(job_id), "state")
        ended = []
        for (req, job_id), state in zip(running, pipe.execute(), strict=True):
            reason = HELD_AT_SHUTDOWN.get(state)
            if reason is None:
                continue
            _, due = self.layers.lifecycle.finish(job_id, JobState.FAILED, reason, iid=_iid(req))
            if due:
                self.layers.dispatcher.release(due)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(req.worker_pid), signal.SIGKILL)
            ended.append(job_id)
        return ended

    def release_held_until_idle(self, every: float = 1.0) -> None:
        """:meth:`release_held` now and then until this worker runs nothing (a warm shutdown
        waits on its running jobs): a job suspended or asking after the shutdown began would
        have kept it waiting too. Run in a daemon thread."""
        while True:
            try:
                ended = self.release_held()
                if ended:
                    log.warning("shutting down: ended held job(s) %s", ended)
                if not self._running():
                    return
            except (FleetJobsError, redis.exceptions.RedisError) as exc:  # away: try again
                log.warning("could not end the held jobs: %s", exc)
            time.sleep(every)

    def stop_running(self, reason: str) -> list[int]:
        """Stop every job this worker's pool runs, with ``reason`` (a cold shutdown: Celery
        terminates the pool next, and the terminate is a stop too, whose reason would say
        "stopped from Celery"; the first stop's reason stands). Returns their ids."""
        stopped = []
        for _, job_id in self._running():
            try:
                self.layers.lifecycle.stop(job_id, reason)
                stopped.append(job_id)
            except FleetJobsError as exc:
                log.warning("job %s: could not record the cold shutdown: %s", job_id, exc)
        return stopped

    def _running(self) -> list[tuple[Any, int]]:
        running: list[tuple[Any, int]] = []
        for req in self._requests():
            task = getattr(getattr(req, "task", None), "name", None)  # req.name is the shadow
            if task != TASK_NAME or not getattr(req, "worker_pid", None):
                continue
            with contextlib.suppress(IndexError, TypeError, ValueError):
                running.append((req, int(req.args[0])))
        return running

    def _end(self, req: Any, job_id: int, stopped: bool, timeout: str | None) -> None:
        lifecycle = self.layers.lifecycle
        if stopped:  # finish with a stop asked settles Stopped, with the stop's reason
            _, due = lifecycle.finish(job_id, JobState.STOPPED, "stopped", iid=_iid(req))
        else:
            reason = (
                f"timed out after {timeout} s (its action did not end within "
                f"{self.grace:g} s: its process was killed)"
            )
            _, due = lifecycle.finish(job_id, JobState.FAILED, reason, iid=_iid(req))
        if due:
            self.layers.dispatcher.release(due)
        log.warning(
            "job %s ignored its stop for %.1f s: killing pool process %s",
            job_id,
            self.grace,
            req.worker_pid,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(req.worker_pid), signal.SIGKILL)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _iid(req: Any) -> str | None:
    """The child's InstanceId a Celery request carries (its task id), if it has one."""
    task_id = getattr(req, "id", None)
    return task_id if isinstance(task_id, str) and task_id else None
