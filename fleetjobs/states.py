"""Job states: the one state model of fleetjobs, PowerShell's, with its frozen groups.

Celery's task states never reach a user: the registry, kept by the worker runtime, is the one
record of a job (Celery says PENDING for an id it has never seen). A parent job's state is
derived from its children's by :func:`parent_state`, mirrored by the registry's Lua code,
which the tests check against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobState(StrEnum):
    """The state of a job, spelled as PowerShell spells it."""

    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    BLOCKED = "Blocked"
    SUSPENDED = "Suspended"
    DISCONNECTED = "Disconnected"
    STOPPING = "Stopping"
    SUSPENDING = "Suspending"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """True once the job can no longer change (Completed, Failed, Stopped)."""
        return self in FINISHED

    @classmethod
    def parse(cls, text: str) -> JobState:
        """The state named by ``text``, case-insensitively (``completed``, ``Not_Started``).

        Raises:
            ValueError: no state has that name; the message lists the valid ones.
        """
        wanted = text.replace("_", "").replace("-", "").lower()
        for state in cls:
            if state.value.lower() == wanted:
                return state
        names = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown state {text!r} (one of: {names})")


FINISHED: frozenset[JobState] = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED})
ACTIVE: frozenset[JobState] = frozenset(
    {
        JobState.RUNNING,
        JobState.BLOCKED,
        JobState.SUSPENDED,
        JobState.DISCONNECTED,
        JobState.STOPPING,
        JobState.SUSPENDING,
    }
)


def state_read(text: str) -> JobState:
    """A state as Redis holds it; one no version writes (a damaged record) is read as Running:
    unfinished, so nothing takes the job for done (a remove asks for --force, a wait waits)."""
    try:
        return JobState(text)
    except ValueError:
        return JobState.RUNNING


def parent_state(children: Iterable[JobState], stop_requested: bool = False) -> JobState:
    """A parent job's state from its children's, by PowerShell's rules.

    Blocked while any child asks a question; else Running while any child is active or some
    have finished and others wait; when all have finished: Failed if any failed, else Stopped
    if any was stopped, else Completed.
    """
    states = list(children)
    if not states:
        return JobState.COMPLETED
    if all(s.finished for s in states):
        if JobState.FAILED in states:
            return JobState.FAILED
        if JobState.STOPPED in states:
            return JobState.STOPPED
        return JobState.COMPLETED
    if stop_requested:
        return JobState.STOPPING
    # a child that asks holds the whole job: Blocked wins over Running (PowerShell's rule)
    for state in (JobState.BLOCKED, JobState.RUNNING, JobState.STOPPING, JobState.SUSPENDING):
        if state in states:
            return state
    if JobState.DISCONNECTED in states:
        return JobState.DISCONNECTED
    if JobState.SUSPENDED in states:
        return JobState.SUSPENDED
    if all(s is JobState.NOT_STARTED for s in states):
        return JobState.NOT_STARTED
    return JobState.RUNNING
