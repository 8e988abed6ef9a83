"""References to jobs as the verbs take them: one or many, a state by name, ids in batches,
and the children a receive reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import JobNotFoundError
from .job import Job, JobRef, JobRefs
from .model import JobInfo
from .states import JobState

if TYPE_CHECKING:
    from .registry import Registry


def children_of(infos: Sequence[JobInfo], location: str | None) -> list[JobInfo]:
    """The children whose records a receive takes (a job's children never change)."""
    children: list[JobInfo] = []
    for info in infos:
        kids = list(info.children) if info.child_ids else [info]
        if location is not None:
            kids = [c for c in kids if c.location == location]
            if not kids:
                raise JobNotFoundError(f"job {info.id} has no child on location {location!r}")
        children.extend(kids)
    return children


def parse_state(state: JobState | str | None) -> JobState | None:
    return JobState.parse(state) if isinstance(state, str) else state


def as_list(jobs: JobRefs) -> list[JobRef]:
    """One job reference or many, as a list (a string is one reference)."""
    if isinstance(jobs, (str, int, Job, JobInfo)):
        return [jobs]
    return list(jobs)


def batches(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
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
            raise JobNotFoundError(f"no job with Id {job_id} (it was removed)")
        out.append(JobState(state) if state is not None else None)
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
