"""How a job's end reaches Celery, and so Flower: the task ends the way the registry ended.

Flower knows only what the task's own events say. A task body that returns normally is
SUCCESS there, whatever the registry recorded, so the body ends as the registry did, *after*
the registry is settled:

- Completed: the body returns (task-succeeded, SUCCESS);
- Failed: it raises :class:`JobFailed` with the Reason as its message (task-failed, FAILURE,
  the Reason as the exception text). It is one of the task's ``throws``: Celery logs it in
  one line, without a traceback, and the worker's ``task_failure`` handler leaves it alone;
- Stopped: it sends ``task-revoked`` itself and raises Celery's ``Ignore``, which ends the
  task with no further event (REVOKED);
- not run by this worker (a redelivered message of a job that runs or ran elsewhere, a job
  removed meanwhile): ``Ignore`` alone, so a duplicate message cannot overwrite what Flower
  shows for the real run.

It also turns a terminate from Celery (``celery control revoke --terminate``, Flower's
Terminate button) into a fleetjobs stop: see :func:`celery_terminate_stops`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from celery.exceptions import Ignore

from fleetjobs.errors import FleetJobsError
from fleetjobs.states import JobState

from .process import Layers

log = logging.getLogger("fleetjobs.worker")
STOPPED_FROM_CELERY = "stopped from Celery"


class JobEnded(Exception):
    """The root of the ends a job task raises on purpose; the registry already knows them."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class JobFailed(JobEnded):
    """The child job ended Failed; the message is its Reason (text only: JSON-safe)."""


def end_task(
    task: Any, registry: Callable[[], Layers], job_id: int, outcome: dict[str, Any]
) -> dict[str, Any]:
    """End the Celery task ``task`` as the registry ended child ``job_id``.

    Args:
        task: the bound task (its request carries the task id and the worker's node name).
        registry: gives this process's layers, to read a Reason the runtime did not return.
        outcome: what :meth:`fleetjobs.workers.runtime.Runtime.execute` returned.

    Returns:
        The task's result, for a Completed job.

    Raises:
        JobFailed: the job is Failed.
        Ignore: the job is Stopped (after sending task-revoked), or this run did not run it.
    """
    state = outcome.get("state")
    if state == JobState.COMPLETED.value and outcome.get("ran"):
        return outcome
    if state == JobState.FAILED.value:
        raise JobFailed(outcome.get("reason") or _reason(registry, job_id) or "failed")
    if state == JobState.STOPPED.value:
        reason = outcome.get("reason") or _reason(registry, job_id) or "stopped"
        with contextlib.suppress(Exception):  # an event lost is a display, not the job
            task.send_event(
                "task-revoked", terminated=False, signum=None, expired=False, reason=reason
            )
        raise Ignore(reason)
    raise Ignore(f"not run here: the job is {state}")


def _reason(registry: Callable[[], Layers], job_id: int) -> str:
    try:
        found = registry().registry.load([job_id], children=False)
    except FleetJobsError:
        return ""
    return (found[0].reason or "") if found else ""


@contextlib.contextmanager
def celery_terminate_stops(registry: Callable[[], Layers], job_id: int) -> Iterator[None]:
    """While a job runs in this pool process, SIGTERM (Celery's terminate) stops the job.

    Celery terminates a task by signalling the pool process that runs it; by default the
    process dies on the spot, the action's process group lives on, and the worker replaces the
    process. Here the signal becomes a durable fleetjobs stop instead (the Reason
    "stopped from Celery"): the runtime's watcher hears it, kills the whole process group and
    settles the job Stopped, and the process lives to run the next job. The stop is written
    from a thread: the signal may land while this thread is inside a Redis call.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        log.info("job %s: terminate from Celery: stopping it", job_id)
        threading.Thread(target=_stop, args=(registry, job_id), daemon=True).start()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(registry: Callable[[], Layers], job_id: int) -> None:
    try:
        registry().lifecycle.stop(job_id, STOPPED_FROM_CELERY)
    except FleetJobsError as exc:
        log.warning("job %s: could not record the stop from Celery: %s", job_id, exc)
