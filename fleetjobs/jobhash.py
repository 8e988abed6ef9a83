"""A job's hash (``job:<id>``, fields in :mod:`fleetjobs.keys`) read into a :class:`JobInfo`.

Leniently: a field that does not read (a number that is not one, JSON that does not parse, a
state no version writes) is left at its default and named in the job's Reason, as ``damaged
job record: end unreadable``, so one damaged job is listed, waited on and removed like any
other instead of failing every ``get`` that meets it. A job whose state does not read is
taken as unfinished (a parent's worked out from its children's): nothing takes it for done,
and removing it asks for --force. A job read by its Id is that Id, whatever its ``id`` field
says.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from .model import JobInfo, Rollout
from .states import JobState, parent_state, state_read

LARGEST = 1e11  # seconds: no time or duration a job holds is larger (the year 5138)


class _Fields:
    """One job hash's fields, read with defaults; what did not read is in :attr:`bad`."""

    def __init__(self, h: dict[str, str]) -> None:
        self.h = h
        self.bad: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        return self.h.get(name, default)

    def number(self, name: str) -> float | None:
        value = self.h.get(name)
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or abs(number) > LARGEST:
            self.bad.append(name)
            return None
        return number

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.h.get(name)
        if not value:
            return default
        if value.isascii() and value.isdigit():
            return int(value)
        self.bad.append(name)
        return default

    def ids(self, name: str) -> tuple[int, ...]:
        text = self.h.get(name, "")
        ids = ids_in(text)
        if len(ids) != len([p for p in text.split(",") if p]):
            self.bad.append(name)
        return ids

    def json(self, name: str, kind: type, default: Any) -> Any:
        value = self.h.get(name)
        if not value:
            return default
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # the last: nested too deep to read
            parsed = None
        if not isinstance(parsed, kind):
            self.bad.append(name)
            return default
        return parsed

    def state(self, children: tuple[JobInfo, ...]) -> JobState:
        try:
            return JobState(self.h["state"])
        except (KeyError, ValueError):
            self.bad.append("state")
        if children:
            return parent_state(c.state for c in children)
        return state_read("")  # unfinished


def read_job(
    h: dict[str, str],
    unread: int,
    children: tuple[JobInfo, ...] = (),
    job_id: int | None = None,
) -> JobInfo | None:
    """The snapshot a job's hash gives, ``unread`` its records not taken yet (a leaf's); None
    when it names no Id (nor is one given: ``job_id``, the one it was read by)."""
    f = _Fields(h)
    own = f.integer("id", job_id)
    if job_id is not None and own != job_id:
        f.bad.append("id")  # a field that names another job: the Id it was read by counts
        own = job_id
    if own is None:
        return None
    state = f.state(children)
    if h.get("children"):
        more = any(c.has_more_data for c in children)
    else:
        more = not state.finished or unread > 0
    prompt = f.json("prompt", dict, None) if state is JobState.BLOCKED else None
    if prompt is not None and h.get("pseq"):
        # the question's number: what an answer names, so it cannot land on a later question
        prompt = {**prompt, "seq": f.integer("pseq", 0)}
    info = JobInfo(
        id=own,
        instance_id=f.text("iid"),
        name=f.text("name"),
        command=f.text("command"),
        action=f.text("action"),
        args=tuple(f.json("args", list, [])),
        kwargs=f.json("kwargs", dict, {}),
        location=f.text("location"),
        state=state,
        has_more_data=more,
        created=f.number("created") or 0.0,
        begin_time=f.number("begin"),
        end_time=f.number("end"),
        reason=h.get("reason") or None,
        parent_id=f.integer("parent"),
        child_ids=f.ids("children"),
        children=children,
        worker=h.get("worker") or None,
        progress=f.json("progress", dict, None),
        timeout=f.number("timeout"),
        rollout=_rollout(f),
        prompt=prompt,
        prompt_timeout=f.number("prompt_timeout"),
        default_answer=h.get("default_answer"),
    )
    if "iid" not in h:
        f.bad.append("iid")
    if not f.bad:
        return info
    damage = f"damaged job record: {', '.join(dict.fromkeys(f.bad))} unreadable"
    return dataclasses.replace(info, reason=f"{damage}; {info.reason}" if info.reason else damage)


def _rollout(f: _Fields) -> Rollout | None:
    batch = f.integer("batch")
    if not batch:
        return None
    n = f.integer("n", 0) or 0
    max_fail = f.integer("max_fail")
    return Rollout(
        batch=batch,
        wave=f.integer("wave", 1) or 1,
        waves=max(1, -(-n // batch)),
        max_failures=max_fail,
        halt_running=f.text("halt_running") == "1",
        batch_wait=f.number("batch_wait") or 0.0,
        next_wave_at=f.number("wave_due"),
        failed_hosts=tuple(x for x in f.text("failed_hosts").split(", ") if x),
        halted=f.text("halted") or None,
    )


def ids_in(text: str) -> tuple[int, ...]:
    """The Ids in a comma-separated list (a parent's ``children``), what is not one left out."""
    return tuple(int(p) for p in text.split(",") if p.isascii() and p.isdigit())


def flat_hash(flat: Sequence[str]) -> dict[str, str]:
    """A hash from HGETALL's flat list of names and values."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
