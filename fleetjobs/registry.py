"""The registry: reading jobs from Redis (which ids a reference means, and their snapshots).

The registry only reads; every write is the write path's (:mod:`fleetjobs.lifecycle` for
state changes, :mod:`fleetjobs.records` for stream records, :mod:`fleetjobs.hosts` for
heartbeats). A console never asks Celery for a job's state: an id with no record here is "not
found", never Celery's ambiguous PENDING. The key layout is :mod:`fleetjobs.keys`.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .errors import JobNotFoundError
from .indexes import Indexes
from .jobhash import flat_hash, ids_in, read_job
from .keys import Keys
from .model import (
    JobInfo,
    default_name,
    default_name_id,
    id_in_instance_id,
    looks_like_uuid,
)
from .routing import is_glob
from .states import JobState, state_read
from .store import Store, guarded


class Registry:
    """Reads of one fleet's jobs.

    Args:
        store: the fleet's Redis (client, keys, settings).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r = store.r
        self.indexes = Indexes(store)

    @guarded
    def resolve(self, ref: int | str) -> list[int]:
        """The ids a person means by ``ref``: an Id, an InstanceId, or a Name (globs allowed).

        As in PowerShell, a pattern (``Part*``) that matches no job gives none; an Id, an
        InstanceId or a plain Name that matches nothing is an error.

        Raises:
            JobNotFoundError: nothing matches, with the reference in the message.
        """
        text = str(ref).strip()
        if text.isdigit():
            if self.r.exists(self.keys.job(text)):
                return [int(text)]
            raise JobNotFoundError(f"no job with Id {text}")
        if looks_like_uuid(text):
            found = id_of_instance(self.r, self.keys, text.lower())
            if found is None:
                raise JobNotFoundError(f"no job with InstanceId {text}")
            return [found]
        ids = self.ids_named(text)
        if not ids and not is_glob(text):  # a pattern that matches nothing is no error
            # a schedule's runs are named after it: one that has not fired has none yet
            if self.r.exists(self.keys.schedules + text):
                raise JobNotFoundError(
                    f"no job named {text!r}: schedule {text!r} has not fired yet "
                    f"(fleetjobs schedule show {text})"
                )
            raise JobNotFoundError(f"no job named {text!r}")
        return ids

    @guarded
    def ids_named(self, pattern: str) -> list[int]:
        """Top-level ids whose Name matches ``pattern`` (exact, or a glob), oldest first.

        Names given at start are indexed (``names:<name>``); a default one (``Job<Id>``) is
        not: the Id it names is read instead, and, for a glob, every top-level Id whose
        default name matches it (jobs made before default names went unindexed are in both).
        """
        if not is_glob(pattern):
            own = default_name_id(pattern)
            pipe = self.r.pipeline(transaction=False)
            pipe.smembers(self.keys.names(pattern))
            if own is not None:
                pipe.hmget(self.keys.job(own), "name", "parent")
            found = pipe.execute()
            ids = {int(i) for i in found[0]}
            if own is not None and found[1][0] == pattern and not found[1][1]:
                ids.add(own)
            return sorted(ids)
        ids = set(self._default_named(pattern))
        base = self.keys.names_prefix
        for key in self.r.scan_iter(match=base + "*", count=500):
            if fnmatch.fnmatchcase(key[len(base) :], pattern):
                ids.update(int(i) for i in self.r.smembers(key))
        return sorted(ids)

    def _default_named(self, pattern: str, batch: int = 500) -> Iterator[int]:
        """Top-level ids whose default name matches the glob ``pattern`` and is their Name."""
        match = fnmatch.fnmatchcase
        candidates = [i for i in self.iter_top_ids() if match(default_name(i), pattern)]
        for at in range(0, len(candidates), batch):
            chunk = candidates[at : at + batch]
            pipe = self.r.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hget(self.keys.job(job_id), "name")
            for job_id, name in zip(chunk, pipe.execute(), strict=True):
                if name == default_name(job_id):
                    yield job_id

    @guarded
    def iter_top_ids(self, batch: int = 500, newest_first: bool = False) -> Iterator[int]:
        """Every top-level job id, oldest first (or newest first), read ``batch`` at a time.

        Bucket by bucket of the history index (:mod:`fleetjobs.indexes`), each read going on
        from the last bucket read, not from a position: jobs removed meanwhile (a purge,
        another console's remove) shift no later one out. In Id order (a start's place is
        given with its Id), but for jobs a 0.2 console started, listed below 0.3's.
        """
        yield from self.indexes.ids(newest_first=newest_first, batch=batch)

    @guarded
    def load(self, ids: Sequence[int], children: bool = True) -> list[JobInfo]:
        """Snapshots of the jobs with these ids, in order; ids with no record are left out.

        One script (``load.lua``) per ``LOAD_BATCH`` ids: one round trip, not three.
        """
        out: list[JobInfo] = []
        for at in range(0, len(ids), LOAD_BATCH):
            batch = ids[at : at + LOAD_BATCH]
            tops, kids = self.store.scripts("load", "1" if children else "0", *batch)
            out.extend(_parse(tops, kids, batch))
        return out

    @guarded
    def poll(
        self, ids: Sequence[int], ends: Iterable[JobState], any: bool, gone_ends: bool
    ) -> tuple[list[str | None], list[JobInfo] | None]:
        """A wait's look, in one round trip: the jobs' states (None: gone) and, once the
        wait is over (one of them in ``ends`` with ``any``, else all of them; a gone one
        counting with ``gone_ends``), the snapshots of those that ended it (None: not over)."""
        flags = ("1" if any else "0", ",".join(s.value for s in ends), "1" if gone_ends else "0")
        states, over, tops, kids = self.store.scripts("poll", *flags, *ids)
        return [s or None for s in states], _parse(tops, kids) if int(over) else None

    @guarded
    def states(self, ids: Sequence[int]) -> list[str | None]:
        """Just the states of these jobs (None for a job that is gone), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.keys.job(job_id), "state")
        return list(pipe.execute())

    @guarded
    def call(self, parent_id: int) -> tuple[list[Any], dict[str, Any], str] | None:
        """What a child's worker needs of its parent: the job's arguments (kept once, on the
        parent) and the parent's InstanceId (where records are announced); None if gone."""
        args, kwargs, iid = self.r.hmget(self.keys.job(parent_id), "args", "kwargs", "iid")
        if iid is None:
            return None
        return json.loads(args or "[]"), json.loads(kwargs or "{}"), str(iid)

    @guarded
    def should_end(self, job_id: int) -> bool:
        """Whether a running child must end now: a stop was asked, or it was settled without
        its worker (failed by the sweep while its host was cut off), or it was removed."""
        state, stop = self.r.hmget(self.keys.job(job_id), "state", "stop")
        return state is None or stop == "1" or state_read(state).finished

    @guarded
    def control(self, job_id: int) -> dict[str, str | None]:
        """What a running child's worker must know at a question or a checkpoint: its
        ``state``, ``answer``, ``stop`` and ``suspend`` flags, and ``pseq`` (its prompt number)."""
        names = ("state", "answer", "stop", "suspend", "pseq")
        return dict(zip(names, self.r.hmget(self.keys.job(job_id), *names), strict=True))

    @guarded
    def expired(self, limit: int = 200, migrate: bool = True) -> dict[int, int]:
        """Top-level ids that finished longer ago than the retention period, each with its
        bucket in the history indexes (``migrate``: :meth:`Indexes.ended_before`'s)."""
        cutoff = time.time() - self.store.config.retention
        return self.indexes.ended_before(cutoff, limit, migrate)


def id_of_instance(r: Any, keys: Keys, iid: str) -> int | None:
    """The Id of the job whose InstanceId is ``iid``, or None: read from ``iid`` when it
    carries one and that job's InstanceId is ``iid`` (model.new_instance_id), else from the
    ``iids`` index (InstanceIds made before). One round trip; common.lua's id_of in Python."""
    own = id_in_instance_id(iid)
    pipe = r.pipeline(transaction=False)
    if own is not None:
        pipe.hget(keys.job(own), "iid")
    pipe.hget(keys.iids, iid)
    found = pipe.execute()
    if own is not None and found[0] == iid:
        return own
    return int(found[-1]) if found[-1] is not None else None


# a child's parent's call, as its worker runs it: the parent's InstanceId, args, kwargs
Call = tuple[str, list[Any], dict[str, Any]]


def call_of(fields: Sequence[str | None]) -> Call | None:
    """The call from a parent's HMGET args, kwargs, iid (None: the parent is gone)."""
    if not fields or fields[2] is None:
        return None
    args, kwargs, iid = fields
    return (str(iid), json.loads(args or "[]"), json.loads(kwargs or "{}"))


def running_of(flat: list[str], call: Sequence[str | None]) -> tuple[JobInfo, Call | None]:
    """What a claim gives a worker: the child as it is now (its records not counted) and its
    parent's call."""
    info = read_job(flat_hash(flat), 0)
    if info is None:
        raise JobNotFoundError("a claimed child's record names no Id")
    return info, call_of(call)


LOAD_BATCH = 200  # ids per load script: one short Redis call each


def _parse(tops: list[Any], kids_raw: list[Any], ids: Sequence[int] | None = None) -> list[JobInfo]:
    """Snapshots from load_jobs' {HGETALL, unread} lists (common.lua), jobs gone left out;
    ``ids``: the ids ``tops`` were read by, in order, when the caller knows them (a damaged
    hash's own id then need not read). A damaged field is named in the job's Reason
    (fleetjobs.jobhash), not raised."""
    kids = {}
    for entry in kids_raw:  # {HGETALL, unread, the id it was read by}
        cid = str(entry[2])
        kid = read_job(
            flat_hash(entry[0]), int(entry[1]), job_id=int(cid) if cid.isdigit() else None
        )
        if kid is not None:
            kids[kid.id] = kid
    out = []
    for at, item in enumerate(tops):
        if not item:
            continue
        h = flat_hash(item[0])
        mine = tuple(kids[c] for c in ids_in(h.get("children", "")) if c in kids)
        info = read_job(h, int(item[1]), mine, ids[at] if ids is not None else None)
        if info is not None:
            out.append(info)
    return out


def snapshot(parent: dict[str, str], children: Sequence[dict[str, str]]) -> JobInfo:
    """The snapshot of a job from its hashes as just written (no record read yet)."""
    kids = tuple(k for c in children if (k := read_job(c, 0)) is not None)
    made = read_job(parent, 0, kids)
    assert made is not None  # lifecycle.create wrote its id
    return made


def num(value: float) -> str:
    """A number as the registry stores it: ``5`` or ``2.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
