"""References to jobs as the verbs take them: one or many, a state by name, ids in batches,
and the children a receive reads."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeGuard, TypeVar

from .errors import ArgumentError, JobNotFoundError
from .job import Job, JobRef, JobRefs
from .model import JobInfo
from .states import JobState, state_read

if TYPE_CHECKING:
    from .registry import Registry


def children_of(infos: Sequence[JobInfo], location: str | None) -> list[JobInfo]:
    """The children whose records a receive takes (a job's children never change), each once
    (``receive PARENT CHILD`` names a child twice: its records are taken once)."""
    children: dict[int, JobInfo] = {}
    for info in infos:
        kids = list(info.children) if info.child_ids else [info]
        if location is not None:  # a glob too (web*), as get --location takes it
            kids = [c for c in kids if fnmatch.fnmatchcase(c.location, location)]
            if not kids:
                raise JobNotFoundError(f"job {info.id} has no child on location {location!r}")
        children.update((c.id, c) for c in kids if c.id not in children)
    return list(children.values())


def parse_state(state: JobState | str | None) -> JobState | None:
    """A state by its name (``"Completed"``), or as given."""
    if state is None or isinstance(state, JobState):
        return state
    if not isinstance(state, str):
        raise ArgumentError(f"a state is a JobState or its name, got {state!r}")
    try:
        return JobState.parse(state)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None


def as_list(jobs: JobRefs) -> list[JobRef]:
    """One job reference or many, as a list (a string is one reference).

    Raises:
        ArgumentError: something that is no job reference (None, a float, bytes...).
    """
    if _is_ref(jobs):
        return [jobs]
    if isinstance(jobs, (bytes, dict)) or not isinstance(jobs, Iterable):
        raise ArgumentError(f"{_REF}, or a list of them; got {jobs!r}")
    refs = list(jobs)
    for ref in refs:
        if not _is_ref(ref):
            raise ArgumentError(f"{_REF}; got {ref!r} in {refs!r}")
    return refs


_REF = "a job is named by a Job, its Id (int), its Name or its InstanceId (str)"


def check_ref(ref: object) -> JobRef:
    """``ref`` if it names one job (a list, None or a float does not)."""
    if not _is_ref(ref):
        raise ArgumentError(f"{_REF}; got {ref!r}")
    return ref


def _is_ref(value: object) -> TypeGuard[JobRef]:
    return isinstance(value, (str, Job, JobInfo)) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


T = TypeVar("T")


def batches(ids: Iterable[T], size: int) -> Iterator[list[T]]:
    """``ids`` in lists of ``size`` (the last one shorter)."""
    batch: list[T] = []
    for i in ids:
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def checked(
    ids: Sequence[int], states: Sequence[str | None], gone_ok: bool
) -> list[JobState | None]:
    """The jobs' states read from Redis; a job gone (None) is an error unless ``gone_ok``."""
    out: list[JobState | None] = []
    for job_id, state in zip(ids, states, strict=True):
        if state is None and not gone_ok:
            raise JobNotFoundError(f"no job with Id {job_id} (it was removed, or Redis lost it)")
        out.append(state_read(state) if state is not None else None)
    return out


def ids_of(registry: Registry, refs: Iterable[JobRef]) -> list[int]:
    """The Ids these references name, each once, in the order given."""
    seen: dict[int, None] = {}
    for ref in refs:
        if isinstance(ref, (Job, JobInfo)):
            seen[ref.id] = None
        else:
            seen.update(dict.fromkeys(registry.resolve(ref)))
    return list(seen)


def snapshots(registry: Registry, jobs: JobRefs, fresh: bool = False) -> list[JobInfo]:
    """The jobs' snapshots, each job once, in the order given: a handle's own snapshot
    unless ``fresh``, the rest read in one go (jobs removed meanwhile left out)."""
    refs = as_list(jobs)
    given: dict[int, JobInfo] = {}
    if not fresh:
        for ref in refs:
            if isinstance(ref, (Job, JobInfo)):
                given[ref.id] = ref.info if isinstance(ref, Job) else ref
    ids = ids_of(registry, refs)
    loaded = {i.id: i for i in registry.load([i for i in ids if i not in given])}
    return [given.get(i) or loaded[i] for i in ids if i in given or i in loaded]
