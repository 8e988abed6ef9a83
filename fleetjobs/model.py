"""The job model as data: what the registry stores and every console reads.

:class:`JobInfo` is a snapshot of one job (a parent with its children, or a child),
:class:`Record` one entry of a job's streams, :class:`HostInfo` one worker's last heartbeat.
They are plain frozen values with a JSON form (``to_dict``) whose keys the CLI's ``--json``
promises; behaviour lives in :mod:`fleetjobs.job` and :mod:`fleetjobs.fleet`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ArgumentError
from .states import JobState


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def to_json(value: Any, what: str = "argument") -> str:
    """``value`` as JSON, refusing what JSON cannot carry instead of guessing.

    Raises:
        ArgumentError: ``value`` holds something that is not a JSON value (a set, an object,
            NaN, a non-string key), named in the message.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"{what} {_short(value)} cannot be sent as JSON: {exc}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Record:
    """One record of a job's streams, tagged with the child job and host that wrote it."""

    job: int
    location: str
    stream: str
    data: Any
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "location": self.location,
            "stream": self.stream,
            "data": self.data,
            "time": iso(self.time),
        }


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job as the registry holds it."""

    id: int
    instance_id: str
    name: str
    command: str
    action: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    location: str
    state: JobState
    has_more_data: bool
    created: float
    begin_time: float | None = None
    end_time: float | None = None
    reason: str | None = None
    parent_id: int | None = None
    child_ids: tuple[int, ...] = ()
    children: tuple[JobInfo, ...] = ()
    worker: str | None = None
    progress: dict[str, Any] | None = None
    timeout: float | None = None
    prompt: dict[str, Any] | None = None
    prompt_timeout: float | None = None
    default_answer: str | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def asking(self) -> list[JobInfo]:
        """The Blocked children of a parent (or the job itself) with their questions."""
        return [c for c in (self.children if self.child_ids else (self,)) if c.prompt]

    def to_dict(self, children: bool = True) -> dict[str, Any]:
        """The JSON form promised by ``--json``."""
        out: dict[str, Any] = {
            "id": self.id,
            "instance_id": self.instance_id,
            "name": self.name,
            "state": self.state.value,
            "has_more_data": self.has_more_data,
            "location": self.location,
            "command": self.command,
            "begin_time": iso(self.begin_time),
            "end_time": iso(self.end_time),
            "reason": self.reason,
            "parent_id": self.parent_id,
            "prompt": self._prompt_dict(),
        }
        if children:
            out["children"] = [c.to_dict(children=False) for c in self.children]
        return out

    def _prompt_dict(self) -> dict[str, Any] | None:
        """The question a Blocked job waits on (a parent: its first asking child's), or None."""
        asking = self.asking
        if not asking:
            return None
        first = asking[0]
        assert first.prompt is not None
        return {**first.prompt, "job": first.id, "location": first.location}


@dataclass(frozen=True)
class HostInfo:
    """A worker's host as its heartbeats describe it."""

    location: str
    online: bool
    last_seen: float
    tags: dict[str, str] = field(default_factory=dict)
    running: int = 0
    concurrency: int = 0
    version: str = ""
    pid: int = 0
    hostname: str = ""
    actions: tuple[str, ...] = ()
    allow_shell: bool = False
    suspendable: tuple[str, ...] = ()
    signatures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "online": self.online,
            "tags": dict(self.tags),
            "running": self.running,
            "last_seen": iso(self.last_seen),
            "concurrency": self.concurrency,
            "version": self.version,
            "pid": self.pid,
            "hostname": self.hostname,
            "actions": list(self.actions),
            "allow_shell": self.allow_shell,
            "suspendable": list(self.suspendable),
            "signatures": self.signatures,
        }


def render_command(action: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """The job's Command as a person would type it: ``sleep 5``, ``run 'ls -l /tmp'``."""
    parts = [action]
    for value in args:
        parts.append(shlex.quote(value) if isinstance(value, str) else to_json(value))
    for key, value in kwargs.items():
        text = value if isinstance(value, str) else to_json(value)
        parts.append(f"--{key}={shlex.quote(text)}")
    return " ".join(parts)
