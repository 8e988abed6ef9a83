"""What a schedule is, as every console reads it: :class:`ScheduleInfo` (its definition and
what it has done) and :class:`RunInfo` (one firing). Plain frozen values with a JSON form whose
keys ``schedule ... --json`` promises; the verbs live in :mod:`fleetjobs.schedules`, and
need of a fleet what :class:`FleetVerbs` says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config, default_location
from .errors import ScheduleUnreadableError
from .model import HostInfo, iso, local_time, render_command
from .triggers import FleetEntry, Trigger

if TYPE_CHECKING:
    from .job import Job
    from .lifecycle import Lifecycle
    from .registry import Registry


@dataclass(frozen=True)
class RunInfo:
    """One run of a schedule: its job's Id, the job's state now, and when it was fired."""

    id: int
    state: str  # a JobState's value, or "Removed" for a run removed by hand
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "time": iso(self.time)}

    @property
    def text(self) -> str:
        return f"{self.id} {self.state} {local_time(self.time)}"


@dataclass(frozen=True)
class ScheduleInfo:
    """A snapshot of one schedule: its definition, and what it has done."""

    name: str
    trigger: Trigger
    action: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    locations: tuple[str, ...]
    target: tuple[str, ...]
    all_hosts: bool
    throttle_limit: int
    start_timeout: float | None
    timeout: float | None
    max_results: int
    overlap: str
    enabled: bool
    created: float
    next_run: float | None
    runs: tuple[RunInfo, ...] = ()
    skipped: int = 0
    skips: tuple[dict[str, Any], ...] = field(default=())
    # what the add said of its hosts (a location no worker serves now), as start says it
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def command(self) -> str:
        return render_command(self.action, self.args, self.kwargs)

    @property
    def target_text(self) -> str:
        """The targeting as the Target column shows it."""
        parts = []
        if self.all_hosts:
            parts.append("--all")
        parts.extend(self.locations)
        parts.extend(self.target)
        # none: a schedule added before the default was kept with it fires where it is fired
        return ",".join(parts) or f"{default_location()} (the beat's machine)"

    @property
    def last_run(self) -> RunInfo | None:
        return self.runs[-1] if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        last = self.last_run
        return {
            "name": self.name,
            "trigger": self.trigger.to_dict() | {"text": self.trigger.text},
            "command": self.command,
            "action": self.action,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "locations": list(self.locations),
            "target": list(self.target),
            "all": self.all_hosts,
            "throttle_limit": self.throttle_limit,
            "start_timeout": self.start_timeout,
            "timeout": self.timeout,
            "max_results": self.max_results,
            "overlap": self.overlap,
            "enabled": self.enabled,
            "created": iso(self.created),
            "next_run": iso(self.next_run),
            "last_run": last.to_dict() if last else None,
            "runs": [r.to_dict() for r in self.runs],
            "skipped": self.skipped,
            "skips": [dict(s, time=iso(s["time"])) for s in self.skips],
        }


# what reading a damaged definition raises (RedBeat's JSON decoding, its entry's arguments)
UNREADABLE: tuple[type[Exception], ...] = (ValueError, TypeError, AttributeError, IndexError)
# and reading what it holds (a field missing from it)
UNREADABLE_FIELDS: tuple[type[Exception], ...] = (KeyError, *UNREADABLE)


def unreadable(name: str, why: str | BaseException) -> ScheduleUnreadableError:
    """The error for a schedule whose stored definition cannot be read, saying what to do;
    ``why`` as text, or the exception reading it raised."""
    if isinstance(why, BaseException):
        why = f"{type(why).__name__}: {why}"
    why = why.strip().splitlines()[0] if why.strip() else "unknown"
    return ScheduleUnreadableError(
        f"schedule {name!r} cannot be read ({why}): it does not fire; "
        f"'fleetjobs schedule remove {name}' deletes it"
    )


class FleetVerbs(Protocol):
    """What schedules need of a :class:`~fleetjobs.Fleet` (kept apart so neither imports the
    other)."""

    config: Config
    registry: Registry
    lifecycle: Lifecycle

    def start(
        self,
        action: str,
        *args: Any,
        name: str | None = ...,
        locations: str | Iterable[str] | None = ...,
        target: Sequence[str] = ...,
        all_hosts: bool = ...,
        kwargs: dict[str, Any] | None = ...,
        throttle_limit: int = ...,
        start_timeout: float | None = ...,
        timeout: float | None = ...,
    ) -> Job: ...

    def job(self, ref: int) -> Job: ...

    def stop(self, jobs: list[int], *, timeout: float | None = ...) -> list[Job]: ...

    def remove(self, jobs: list[int], *, force: bool = ...) -> list[Job]: ...

    def hosts(self) -> list[HostInfo]: ...


def info_of(
    entry: FleetEntry,
    runs: tuple[RunInfo, ...],
    skipped: int,
    skips: tuple[dict[str, Any], ...],
) -> ScheduleInfo:
    """A schedule as its RedBeat entry holds it, with its runs and skips (read beside it)."""
    spec = dict(entry.kwargs)
    next_run = None
    if entry.enabled:
        # remaining_estimate counts from now (RedBeat's due_at adds it to the last run,
        # which is right only at the moment of a firing)
        last = entry.last_run_at
        left = entry.schedule.remaining_estimate(last) if last is not None else None
        now = time.time()  # read after the estimate's own now: never a hair early
        if last is None:
            next_run = now
        elif left is not None:
            # past: when it was due and no beat has fired it yet (none runs, or it is late)
            next_run = round(now + left.total_seconds(), 3)
    return ScheduleInfo(
        name=str(entry.name),
        trigger=Trigger.from_dict(spec["trigger"]),
        action=spec["action"],
        args=tuple(spec["args"]),
        kwargs=dict(spec["kwargs"]),
        locations=tuple(spec["locations"]),
        target=tuple(spec["target"]),
        all_hosts=bool(spec["all"]),
        throttle_limit=int(spec["throttle_limit"]),
        start_timeout=spec["start_timeout"],
        timeout=spec["timeout"],
        max_results=int(spec["max_results"]),
        overlap=str(spec["overlap"]),
        enabled=bool(entry.enabled),
        created=float(spec.get("created", 0.0)),
        next_run=next_run,
        runs=runs,
        skipped=skipped,
        skips=skips,
    )


def fireable(definition: str | None, manual: bool) -> bool:
    """Whether a schedule whose RedBeat entry holds ``definition`` (None: gone) may fire now:
    it is there and, but for a manual run, enabled. One damaged fires, to say so."""
    if definition is None:
        return False
    try:
        doc = json.loads(definition)
    except (ValueError, RecursionError):
        return True
    return manual or not isinstance(doc, dict) or doc.get("enabled") is not False
