"""The job model as data: what the registry stores and every console reads.

:class:`JobInfo` is a snapshot of one job (a parent with its children, or a child),
:class:`Record` one entry of a job's streams, :class:`HostInfo` one worker's last heartbeat.
They are plain frozen values with a JSON form (``to_dict``) whose keys the CLI's ``--json``
promises; behaviour lives in :mod:`fleetjobs.job` and :mod:`fleetjobs.fleet`.
"""

from __future__ import annotations

import json
import shlex
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ArgumentError
from .routing import is_glob
from .states import JobState


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, or None."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # NaN, 1e300: a time no datetime can show
        return None


REASON_LIMIT = 2000  # characters of a job's Reason kept (a failure's whole text: its error record)


def reason_text(reason: str) -> str:
    """A Reason as a job keeps it: cut to :data:`REASON_LIMIT` characters."""
    return reason if len(reason) <= REASON_LIMIT else reason[:REASON_LIMIT] + "..."


def local_time(ts: float) -> str:
    """A Unix time as the console shows it, in local time (``2026-11-30 10:00:00``); ``?`` for
    a time no datetime can show (NaN, 1e300: Redis holds what anyone with its credential
    wrote)."""
    try:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def to_json(value: Any, what: str = "argument") -> str:
    """``value`` as JSON, refusing what JSON cannot carry instead of guessing.

    Raises:
        ArgumentError: ``value`` holds something that is not a JSON value (a set, an object,
            NaN, a non-string key), named in the message.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
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
class Rollout:
    """A rollout parent's waves (``start --batch``): where it is, and why it halted."""

    batch: int
    wave: int
    waves: int
    max_failures: int | None = None
    halt_running: bool = False
    batch_wait: float = 0.0
    next_wave_at: float | None = None
    failed_hosts: tuple[str, ...] = ()
    halted: str | None = None

    def describe(self, finished: bool) -> str:
        """One line: ``rollout wave 2 of 3 running (batch 2, max failures 0)``, or why it
        halted."""
        if self.halted:
            return self.halted
        limits = f"batch {self.batch}"
        if self.max_failures is not None:
            limits += f", max failures {self.max_failures}"
        if finished and self.wave < self.waves:  # ended before its last wave, not halted:
            # stopped (whatever the job's own state: one host Failed makes it Failed)
            return f"rollout stopped at wave {self.wave} of {self.waves} ({limits})"
        if finished:
            return f"rollout done: {self.wave} of {self.waves} waves ({limits})"
        if self.next_wave_at is not None:
            due = iso(self.next_wave_at)
            return f"rollout wave {self.wave + 1} of {self.waves} due at {due} ({limits})"
        return f"rollout wave {self.wave} of {self.waves} running ({limits})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "wave": self.wave,
            "waves": self.waves,
            "max_failures": self.max_failures,
            "halt_running": self.halt_running,
            "batch_wait": self.batch_wait,
            "next_wave_at": iso(self.next_wave_at),
            "failed_hosts": list(self.failed_hosts),
            "halted": self.halted,
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
    rollout: Rollout | None = None
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
            out["rollout"] = self.rollout.to_dict() if self.rollout else None
            if self.rollout:  # children go in waves, in location order
                for i, child in enumerate(out["children"]):
                    child["wave"] = i // self.rollout.batch + 1
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
    facts: dict[str, Any] = field(default_factory=dict)
    suspendable: tuple[str, ...] = ()
    signatures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    signed: bool = False  # its worker runs only signed jobs (FLEETJOBS_CERT_STORE)
    # a confined worker (FLEETJOBS_CONFINED_TO), and the version of the relay that wrote its
    # record ('' for one older than 0.2, which does not say)
    confined: bool = False
    relay_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "signed": self.signed,
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
            "facts": dict(self.facts),
            "suspendable": list(self.suspendable),
            "signatures": self.signatures,
        }


NAME_CHARS = 200


# how deep a job's argument may nest: a worker refuses a message nested more than 100 levels
# (workers.poison: Celery pickles it for its pool, which fails some 450 down), and a signed
# message carries the arguments 5 levels in
ARGUMENT_DEPTH = 64


def nested_too_deep(value: Any, limit: int) -> bool:
    """Whether lists and objects nest in ``value`` more than ``limit`` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        inner = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in inner:
            if type(child) is dict or type(child) is list:
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def check_arguments(args: Sequence[Any], kwargs: dict[str, Any], limit: int) -> None:
    """Refuse a job's arguments before anything is queued.

    Raises:
        ArgumentError: a value JSON cannot carry or nested more than
            :data:`ARGUMENT_DEPTH` levels, a keyword that is not an identifier, or more than
            ``limit`` bytes of JSON in all.
    """
    size = 0
    named = [(f"argument {i}", value) for i, value in enumerate(args, 1)]
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ArgumentError(f"keyword argument name {key!r} is not an identifier")
        named.append((f"keyword argument {key!r}", value))
    for what, value in named:
        size += len(to_json(value, what).encode())
        if nested_too_deep(value, ARGUMENT_DEPTH):
            raise ArgumentError(f"{what} is nested more than {ARGUMENT_DEPTH} levels deep")
    if size > limit:
        raise ArgumentError(
            f"the job's arguments take {size:,} bytes of JSON; the limit is {limit:,} "
            "(FLEETJOBS_MAX_ARGUMENTS): pass a path or a URL the hosts can read instead"
        )


def check_name(name: str) -> str:
    """``name`` if it can be a job's Name: printable, at most 200 characters, no glob.

    Raises:
        ArgumentError: it is empty, too long, begins or ends with white space (a reference
            is read without it), holds a control character (a newline or an
            escape code would rewrite a person's terminal when ``get`` prints it), or one of
            ``*?[`` (a reference to it would be a pattern).
    """
    if not isinstance(name, str) or not name.strip():
        raise ArgumentError(f"a job's name must be non-empty text, got {name!r}")
    if len(name) > NAME_CHARS:
        raise ArgumentError(f"a job's name has at most {NAME_CHARS} characters, got {len(name)}")
    if name != name.strip():
        # get, wait, receive, stop and remove read a reference without them: never found
        raise ArgumentError(f"a job's name must not begin or end with white space: {name!r}")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        raise ArgumentError(
            f"a job's name must not hold control characters: {name!r} has {''.join(bad)!r}"
        )
    if is_glob(name):
        raise ArgumentError(
            f"a job's name must not hold *, ? or [, as {name!r} does: get, stop and remove "
            "read a name with them as a pattern ('*' is every job)"
        )
    return name


def check_addressable(name: str) -> str:
    """``name`` if the verbs can find a job by it: not one that reads as an Id or an
    InstanceId (``stop 36`` finds the job with Id 36). Checked where a person names jobs (the
    command line's --name, a new schedule), not on the API's start: a schedule stored before
    this rule still fires under its name.

    Raises:
        ArgumentError: it reads as an Id or an InstanceId.
    """
    if check_name(name).strip().isdigit() or looks_like_uuid(name.strip()):
        raise ArgumentError(
            f"a job's name must not read as an Id or an InstanceId, as {name!r} does: "
            "stop, wait and receive would find that job instead"
        )
    return name


def default_name(job_id: int) -> str:
    """The Name a job gets when it is given none: ``Job<Id>``, as in PowerShell.

    A job named so is in no name index (the registry's ``names:<name>``): its Id finds it
    (:func:`default_name_id`), which keeps some 90 bytes per job out of Redis.
    """
    return f"Job{job_id}"


def default_name_id(name: str) -> int | None:
    """The Id whose default Name ``name`` is (``Job12`` -> 12), or None."""
    digits = name.removeprefix("Job")
    if digits == name or not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        return None
    return int(digits)


IID_ID_BITS = 48  # the Id's share of an InstanceId made by new_instance_id


def new_instance_id(job_id: int) -> str:
    """A new job's InstanceId: a UUID (RFC 9562, version 8) of 74 random bits with the job's
    Id in its last 48, so that an InstanceId finds its job with no index to keep (some 100 B
    of Redis per InstanceId). The Id read from it must be checked against the job's own
    InstanceId (:func:`id_in_instance_id`); an Id too large for it gets a version 4 UUID,
    which the registry's ``iids`` index keeps, as it keeps those made before.
    """
    if not 0 < job_id < 1 << IID_ID_BITS:
        return str(uuid.uuid4())
    h = uuid.uuid4().hex  # its variant bits (h[16]) are RFC 9562's, as a version 8 needs
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{h[16:20]}-{job_id:012x}"


def id_in_instance_id(iid: str) -> int | None:
    """The Id a :func:`new_instance_id` InstanceId carries; None for any other (look it up).

    Only a claim: anyone can write such a UUID, so the caller reads the job it names and
    takes it only if that job's InstanceId is ``iid``.
    """
    parts = iid.split("-")
    if len(parts) != 5 or len(parts[2]) != 4 or parts[2][0] != "8" or len(parts[4]) != 12:
        return None
    if not set(parts[4]) <= HEX_DIGITS:
        return None
    return int(parts[4], 16) or None


HEX_DIGITS = frozenset("0123456789abcdef")  # as a UUID is written (str(uuid.UUID(...)))


def looks_like_uuid(text: str) -> bool:
    """Whether ``text`` is written as an InstanceId (a UUID with its dashes)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return "-" in text


COMMAND_VALUE_CHARS = 80  # an argument longer than this shows shortened in Command


_YES = frozenset({"y", "yes", "true", "1"})
_NO = frozenset({"n", "no", "false", "0"})


def canonical_choice(choices: Sequence[str] | None, text: str) -> str | None:
    """``text`` as the choice it means (``Y`` -> ``yes``, ``SDA`` -> ``sda``); any text
    when there are no choices; None when it is none of them. One rule for an answer given
    (``fleetjobs answer``) and for a default answer a prompt timeout takes."""
    if not choices:
        return text
    wanted = text.strip().lower()
    for choice in choices:
        if str(choice).lower() == wanted:
            return str(choice)
    if set(choices) == {"yes", "no"}:
        if wanted in _YES:
            return "yes"
        if wanted in _NO:
            return "no"
    return None


def render_command(action: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """The job's Command as a person would type it: ``sleep 5``, ``run 'ls -l /tmp'``.

    It is for reading: each long value is shortened (``...`` and its size), so a job with a
    large argument carries that argument once, not again in its Command.
    """
    parts = [action]
    for value in args:
        parts.append(_shown(value))
    for key, value in kwargs.items():
        # as it is typed: --dry-run (an option's dashes are a parameter's underscores)
        parts.append(f"--{key.replace('_', '-')}={_shown(value)}")
    return " ".join(parts)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else to_json(value)
    if len(text) > COMMAND_VALUE_CHARS:
        text = f"{text[: COMMAND_VALUE_CHARS - 20]}...({len(text)} chars)"
    return shlex.quote(text) if isinstance(value, str) else text
