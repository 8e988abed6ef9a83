"""The job handle: one job as a person holds it, with PowerShell's verbs as methods.

A :class:`Job` is a snapshot (Id, Name, Command, Location...) plus the :class:`~fleetjobs.Fleet`
it came from; ``state`` and ``has_more_data`` are read fresh from Redis each time, because the
job lives there and not in this process. :class:`Received` is what a receive hands back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from .model import JobInfo, Record
from .states import JobState


class Received(list[Any]):
    """The output values of a receive, in order, with every other stream beside them.

    It is a list of the output values (what ``Receive-Job`` puts in the pipeline); the other
    streams are attributes, as ``-ErrorVariable``/``-WarningVariable`` gather them. Nothing a
    receive took is dropped: ``records`` has all of it, in the order it was written.
    """

    def __init__(self, records: list[Record]) -> None:
        super().__init__(r.data for r in records if r.stream == "output")
        self.records = records

    def _stream(self, name: str) -> list[Any]:
        return [r.data for r in self.records if r.stream == name]

    @property
    def errors(self) -> list[Any]:
        return self._stream("error")

    @property
    def warnings(self) -> list[Any]:
        return self._stream("warning")

    @property
    def verbose(self) -> list[Any]:
        return self._stream("verbose")

    @property
    def debug(self) -> list[Any]:
        return self._stream("debug")

    @property
    def information(self) -> list[Any]:
        return self._stream("information")

    @property
    def progress(self) -> list[Any]:
        return self._stream("progress")


class Verbs(Protocol):
    """What a handle needs of the facade that made it (:class:`fleetjobs.Fleet` is one)."""

    def info(self, ref: JobRef) -> JobInfo: ...

    def wait(
        self,
        jobs: JobRefs,
        timeout: float | None = None,
        *,
        any: bool = False,
        force: bool = False,
    ) -> list[Job]: ...

    def receive(
        self,
        jobs: JobRefs,
        *,
        keep: bool = False,
        follow: bool = False,
        auto_remove: bool = False,
        location: str | None = None,
    ) -> Received: ...

    def stop(self, jobs: JobRefs, *, timeout: float | None = 5.0) -> list[Job]: ...

    def remove(
        self,
        jobs: JobRefs | None = None,
        *,
        force: bool = False,
        state: JobState | str | None = None,
    ) -> list[Job]: ...


class Job:
    """A handle on one job, like a ``concurrent.futures.Future`` with PowerShell's verbs."""

    def __init__(self, fleet: Verbs, info: JobInfo, warnings: tuple[str, ...] = ()) -> None:
        self._fleet = fleet
        self.info = info
        self.warnings = warnings

    def __repr__(self) -> str:
        return (
            f"<Job Id={self.id} Name={self.name!r} State={self.info.state.value} "
            f"Location={self.location!r} Command={self.command!r}>"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.instance_id == self.instance_id

    def __hash__(self) -> int:
        return hash(self.instance_id)

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def instance_id(self) -> str:
        return self.info.instance_id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def command(self) -> str:
        return self.info.command

    @property
    def location(self) -> str:
        return self.info.location

    @property
    def reason(self) -> str | None:
        return self.refresh().info.reason

    @property
    def state(self) -> JobState:
        """The job's state now (read from Redis)."""
        return self.refresh().info.state

    @property
    def has_more_data(self) -> bool:
        """True while the job runs or records remain unread (read from Redis)."""
        return self.refresh().info.has_more_data

    @property
    def children(self) -> list[Job]:
        return [Job(self._fleet, c) for c in self.refresh().info.children]

    def refresh(self) -> Job:
        """Reload this handle's snapshot from the registry; returns ``self``."""
        self.info = self._fleet.info(self.id)
        return self

    def done(self) -> bool:
        """True once the job has finished (Completed, Failed or Stopped)."""
        return self.state.finished

    def wait(self, timeout: float | None = None, force: bool = False) -> bool:
        """Block until the job finishes or ``timeout`` seconds pass; True if it finished.

        As :meth:`Fleet.wait`, a job that waits on a person or its host (Suspended,
        Disconnected) ends the wait unless ``force``: then False, the job's ``state`` says
        which. A Blocked job raises :class:`~fleetjobs.errors.JobBlockedError`."""
        for job in self._fleet.wait(self, timeout=timeout, force=force):
            self.info = job.info
        return self.info.state.finished

    def receive(self, keep: bool = False, follow: bool = False) -> Received:
        """Take this job's records (see :meth:`Fleet.receive`)."""
        return self._fleet.receive(self, keep=keep, follow=follow)

    def stop(self, timeout: float | None = 5.0) -> Job:
        """Stop the job (see :meth:`Fleet.stop`)."""
        for job in self._fleet.stop(self, timeout=timeout):
            self.info = job.info
        return self

    def remove(self, force: bool = False) -> None:
        """Remove the job from the registry (see :meth:`Fleet.remove`)."""
        self._fleet.remove(self, force=force)

    def to_dict(self) -> dict[str, Any]:
        return self.info.to_dict()


JobRef = Job | JobInfo | int | str
"""One job: a handle, a snapshot, an Id, or a string (an Id, an InstanceId or a Name; globs
allowed). A string is always one reference, never a sequence of characters."""
JobRefs = JobRef | Iterable[JobRef]
"""One job reference or several."""
