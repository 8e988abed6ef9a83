"""The facade: PowerShell's job verbs over the fleet (start, get, wait, receive, stop, remove).

A :class:`Fleet` is a console's view of the jobs in one Redis. Any number of consoles may hold
one at once; they all see the same jobs, because nothing about a job lives in the process.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .actions import check_action_name
from .config import Config, default_location
from .errors import (
    ArgumentError,
    JobNotFoundError,
    JobStateError,
    NoHostError,
    RedisUnavailableError,
    ShellNotAllowedError,
    UnknownActionError,
)
from .events import JobEvents
from .job import Job, Received
from .model import HostInfo, JobInfo, Record, render_command, to_json
from .monitor import announce_lost
from .registry import JobSpec, NewChild, Registry
from .routing import TASK_NAME, is_glob, queue_for, select_locations, split_locations
from .states import JobState

if TYPE_CHECKING:
    from celery import Celery

JobRef = Job | JobInfo | int | str
SHELL_ACTIONS = frozenset({"run"})
_SWEEP_EVERY = 1.0


class Fleet:
    """The jobs of one fleet, as seen from a console.

    Args:
        redis_url: where the fleet lives; default ``FLEETJOBS_REDIS_URL``, then
            ``redis://127.0.0.1:6379/0``.
        config: every setting at once (``redis_url`` then overrides its URL).
        celery: a Celery app to publish with (a worker passes its own).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        config: Config | None = None,
        celery: Celery | None = None,
    ) -> None:
        base = config or Config.from_env()
        self.config = base.with_(redis_url=redis_url) if redis_url else base
        self.registry = Registry.connect(self.config)
        self._celery = celery
        self._own_celery = celery is None
        self._last_sweep = 0.0

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release this console's connections (the jobs go on)."""
        self.registry.close()
        if self._celery is not None and self._own_celery:
            self._celery.close()

    @property
    def celery(self) -> Celery:
        """The Celery app this console publishes with (imported on first use: the read-only
        verbs never need it, and Celery takes a good part of a second to import)."""
        if self._celery is None:
            from .celery_app import make_celery

            self._celery = make_celery(self.config)
        return self._celery

    # ---- start --------------------------------------------------------------------------

    def start(
        self,
        action: str,
        *args: Any,
        name: str | None = None,
        locations: str | Iterable[str] | None = None,
        target: Sequence[str] = (),
        all_hosts: bool = False,
        kwargs: dict[str, Any] | None = None,
        throttle_limit: int = 32,
        start_timeout: float | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Start a job and return at once: one parent, one child per location.

        Args:
            action: the registered action to run (``echo``, ``sleep``, ``run``, ...).
            args: its positional arguments, JSON values (``-ArgumentList``).
            name: the job's Name (default ``Job<Id>``; names need not be unique).
            locations: host names or globs, a list or a comma-separated string (default:
                this machine's hostname, PowerShell's localhost).
            target: ``key=value`` tags a host must carry to be selected.
            all_hosts: select every online host.
            kwargs: keyword arguments, JSON values.
            throttle_limit: at most this many children run at once.
            start_timeout: fail a child that no worker started within this many seconds.
            timeout: stop a child (Failed, "timed out") that runs longer than this.

        Returns:
            The parent job; ``job.warnings`` says which locations no live worker serves.

        Raises:
            ArgumentError: an argument JSON cannot carry; nothing was queued.
            UnknownActionError: live hosts serve the locations and none of them offers it.
            ShellNotAllowedError: ``run`` on a host whose operator did not allow it.
            NoHostError: the locations, target or ``all_hosts`` selected no host.
            RedisUnavailableError: Redis cannot be reached.
        """
        try:
            check_action_name(action)
        except ValueError as exc:
            raise UnknownActionError(str(exc)) from None
        kwargs = dict(kwargs or {})
        for i, value in enumerate(args, 1):
            to_json(value, f"argument {i}")
        for key, value in kwargs.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ArgumentError(f"keyword argument name {key!r} is not an identifier")
            to_json(value, f"keyword argument {key!r}")
        if throttle_limit < 1:
            raise ArgumentError(f"throttle limit must be at least 1, got {throttle_limit}")
        for what, value in (("start timeout", start_timeout), ("timeout", timeout)):
            if value is not None and value <= 0:
                raise ArgumentError(f"{what} must be positive, got {value}")
        named = split_locations([locations] if isinstance(locations, str) else locations or [])
        # plain names need only their own hosts' records; globs, tags and --all need them all
        everything = bool(target) or all_hosts or any(is_glob(n) for n in named)
        hosts = {
            h.location: h
            for h in self.registry.hosts(None if everything else named or [default_location()])
        }
        locs = self._select(named, target, all_hosts, hosts)
        warnings = self._check_hosts(action, locs, hosts)
        spec = JobSpec(
            action=action,
            args=list(args),
            kwargs=kwargs,
            command=render_command(action, args, kwargs),
            locations=locs,
            name=name,
            throttle_limit=throttle_limit,
            start_timeout=start_timeout,
            timeout=timeout,
        )
        pid, _, children = self.registry.create(spec)
        self._dispatch(
            [c for c in children if c.queued], name or f"Job{pid}", start_timeout, action
        )
        self._purge_expired()
        return Job(self, self.info(pid), tuple(warnings))

    def _select(
        self,
        wanted: list[str],
        target: Sequence[str],
        all_hosts: bool,
        hosts: dict[str, HostInfo],
    ) -> list[str]:
        online = {loc: h for loc, h in hosts.items() if h.online}
        if all_hosts:
            if not online:
                raise NoHostError("--all selected no host: no worker is online")
            wanted = [*wanted, *sorted(online)]
        if not wanted and not target:
            wanted = [default_location()]
        tags = {loc: h.tags for loc, h in online.items()}
        return select_locations(wanted, online, tags, target)

    def _check_hosts(self, action: str, locs: list[str], hosts: dict[str, HostInfo]) -> list[str]:
        warnings = []
        for loc in locs:
            host = hosts.get(loc)
            if host is None or not host.online:
                warnings.append(
                    f"no worker serves location {loc!r} now; its job waits as NotStarted "
                    f"until one does (start one with: fleetjobs worker --location {loc})"
                )
                continue
            if action in SHELL_ACTIONS and not host.allow_shell:
                raise ShellNotAllowedError(
                    f"the worker on {loc} does not allow {action!r}: its operator must start it "
                    "with --allow-shell"
                )
            if action not in host.actions:
                offers = ", ".join(sorted(host.actions)) or "nothing"
                raise UnknownActionError(
                    f"unknown action {action!r}: the worker on {loc} offers {offers}"
                )
        return warnings

    def _dispatch(
        self,
        children: Sequence[NewChild],
        name: str,
        start_timeout: float | None,
        action: str = "",
    ) -> None:
        """Publish one Celery task per child, on its location's queue, over one connection.

        Celery's results are not kept (``ignore_result``): the registry is the one record of a
        job, and a console never waits on a result channel per child.
        """
        if not children:
            return
        sent = 0
        try:
            with self.celery.producer_or_acquire() as producer:
                for child in children:
                    self.celery.send_task(
                        TASK_NAME,
                        args=[child.id],
                        queue=queue_for(child.location),
                        task_id=child.instance_id,
                        shadow=f"{name}@{child.location}",
                        # Flower shows it; its metrics label a task by action (flower_app.py)
                        kwargsrepr=json.dumps({"action": action, "job": child.id}),
                        expires=start_timeout,
                        ignore_result=True,
                        producer=producer,
                    )
                    sent += 1
        except Exception as exc:  # kombu raises many types for a broker it cannot reach
            # fail what was not queued, and what their ends release (a throttle's next ones):
            # nothing may wait for ever for a publish that did not happen
            left = [c.id for c in children[sent:]]
            while left:
                left = (
                    self.registry.finish(left.pop(), JobState.FAILED, f"not queued: {exc}")[1]
                    + left
                )
            raise RedisUnavailableError(
                f"cannot queue the job on {self.config.safe_url}: {exc}"
            ) from None

    def dispatch_ids(self, ids: Sequence[int]) -> None:
        """Publish children the registry released (a throttled parent's next ones)."""
        for info in self.registry.load(ids, children=False):
            child = NewChild(info.id, info.instance_id, info.location, True)
            self._dispatch([child], info.name, None, info.action)

    def _purge_expired(self) -> None:
        expired = self.registry.expired()
        if expired:
            self._remove_infos(self.registry.load(expired))

    # ---- get ----------------------------------------------------------------------------

    def info(self, ref: JobRef) -> JobInfo:
        """The current snapshot of one job.

        Raises:
            JobNotFoundError: no job has that reference (or it was removed).
        """
        if isinstance(ref, (Job, JobInfo)):
            job_id = ref.id
        elif isinstance(ref, int):
            job_id = ref  # load() tells a missing one: no need to ask first
        else:
            job_id = self._ids(ref)[0]
        found = self.registry.load([job_id])
        if not found:
            raise JobNotFoundError(f"no job with Id {job_id} (it was removed)")
        return found[0]

    def job(self, ref: JobRef) -> Job:
        """The one job a reference names (an Id, an InstanceId or a unique Name)."""
        ids = self._ids(ref)
        if len(ids) > 1:
            raise JobNotFoundError(f"{ref!r} names {len(ids)} jobs: use an Id")
        return Job(self, self.info(ids[0]))

    def get(
        self,
        *refs: JobRef,
        name: str | None = None,
        state: JobState | str | None = None,
        include_children: bool = False,
    ) -> list[Job]:
        """The jobs named, or every top-level job, oldest first (``Get-Job``).

        Args:
            refs: Ids, InstanceIds, Names or handles; none means every job.
            name: only jobs with this Name (globs allowed).
            state: only jobs in this state.
            include_children: list each parent's children after it.

        Raises:
            JobNotFoundError: a reference matched no job.
        """
        self._sweep()
        want = JobState.parse(state) if isinstance(state, str) else state
        ids: Iterable[int]
        if refs:
            ids = self._many_ids(refs)
        elif name is not None:
            ids = self.registry.ids_named(name)
        else:
            ids = self.registry.iter_top_ids()
        out: list[Job] = []
        for batch in _batches(ids, 500):
            for info in self.registry.load(batch):
                if name is not None and refs and not fnmatch.fnmatchcase(info.name, name):
                    continue
                if want is not None and info.state is not want:
                    continue
                out.append(Job(self, info))
                if include_children:
                    out.extend(Job(self, c) for c in info.children)
        return out

    def hosts(self) -> list[HostInfo]:
        """Every host that has heartbeated, online or not."""
        return self.registry.hosts()

    # ---- wait ---------------------------------------------------------------------------

    def wait(
        self, jobs: Iterable[JobRef], timeout: float | None = None, any: bool = False
    ) -> list[Job]:
        """Block until the jobs finish (``Wait-Job``).

        Args:
            jobs: the jobs to wait for.
            timeout: seconds; None waits for ever, 0 checks once.
            any: return as soon as one has finished.

        Returns:
            The finished jobs in the order given; ``[]`` if the timeout passed first (no
            exception, as ``Wait-Job -Timeout`` returns nothing).
        """
        handles = self._handles(jobs)
        if not handles:
            return []
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._events(handles) as events:
            while True:
                self._sweep()
                states = self._states([h.id for h in handles])
                done = [h for h, s in zip(handles, states, strict=True) if s.finished]
                if done and (any or len(done) == len(handles)):
                    return [h.refresh() for h in done]
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                events.next(min(_SWEEP_EVERY, remaining or _SWEEP_EVERY))

    # ---- receive ------------------------------------------------------------------------

    def receive(
        self,
        jobs: Iterable[JobRef] | JobRef,
        keep: bool = False,
        wait: bool = False,
        auto_remove: bool = False,
        location: str | None = None,
    ) -> Received:
        """Take the jobs' records (``Receive-Job``): output values, with every stream beside.

        Args:
            jobs: the jobs (a parent gives every child's records, tagged with its location).
            keep: leave the records for the next receive (``-Keep``).
            wait: keep receiving until the jobs finish (``-Wait``).
            auto_remove: with ``wait``, remove the jobs once all is received.
            location: only the child on this location.
        """
        return Received(
            list(
                self.stream(jobs, keep=keep, wait=wait, auto_remove=auto_remove, location=location)
            )
        )

    def stream(
        self,
        jobs: Iterable[JobRef] | JobRef,
        keep: bool = False,
        wait: bool = False,
        auto_remove: bool = False,
        location: str | None = None,
    ) -> Iterator[Record]:
        """Records as they are taken; with ``wait``, as they arrive until the jobs finish."""
        if auto_remove and not wait:
            raise ArgumentError("auto_remove needs wait: a job is removed once it has finished")
        handles = self._handles(_as_list(jobs))
        if not wait:
            yield from self._take(handles, keep, location)
            return
        shown: dict[int, int] = {}  # with keep, every take returns all: skip what was shown
        with self._events(handles) as events:
            while True:
                self._sweep()
                finished = all(s.finished for s in self._states([h.id for h in handles]))
                taken: dict[int, int] = {}
                for rec in self._take(handles, keep, location):
                    index = taken[rec.job] = taken.get(rec.job, 0) + 1
                    if keep and index <= shown.get(rec.job, 0):
                        continue
                    yield rec
                if keep:
                    shown.update(taken)
                if finished:
                    break
                events.next(_SWEEP_EVERY)
        if auto_remove:
            self.remove(handles)

    def _take(self, handles: list[Job], keep: bool, location: str | None) -> list[Record]:
        # a job's children never change, so the snapshots _handles() just read name them all;
        # a job removed meanwhile has no records left to take (and _states() reports it)
        children: list[JobInfo] = []
        for info in (h.info for h in handles):
            kids = list(info.children) if info.child_ids else [info]
            if location is not None:
                kids = [c for c in kids if c.location == location]
                if not kids:
                    raise JobNotFoundError(f"job {info.id} has no child on location {location!r}")
            children.extend(kids)
        return self.registry.take(children, keep=keep)

    # ---- stop and remove ----------------------------------------------------------------

    def stop(self, jobs: Iterable[JobRef] | JobRef, wait: float | None = 5.0) -> list[Job]:
        """Stop the jobs (``Stop-Job``): queued ones never run, running ones end (within 2 s).

        The stop is a durable flag in the registry, so it holds even for a job whose worker is
        down now and picks it up later.

        Args:
            wait: seconds to wait for the jobs to reach Stopped (None: as long as it takes,
                0: do not wait).

        Returns:
            The jobs, refreshed.
        """
        handles = self._handles(_as_list(jobs))
        due: list[int] = []
        unstarted: list[str] = []
        for h in handles:
            due.extend(self.registry.stop(h.id)[1])
            for child in h.refresh().info.children or (h.info,):
                if child.state is JobState.STOPPED and child.begin_time is None:
                    unstarted.append(child.instance_id)
        if unstarted:
            # lets a live worker drop the messages unseen; the registry's flag holds regardless
            with contextlib.suppress(Exception):
                self.celery.control.revoke(unstarted)
        if due:
            self.dispatch_ids(due)
        if wait != 0:
            self.wait(handles, timeout=wait)
        return [h.refresh() for h in handles]

    def remove(
        self,
        jobs: Iterable[JobRef] | JobRef | None = None,
        force: bool = False,
        state: JobState | str | None = None,
    ) -> list[Job]:
        """Remove jobs and everything they own (``Remove-Job``).

        Args:
            jobs: the jobs; None with ``state`` removes every job in that state, None alone
                removes every job.
            force: stop unfinished jobs first instead of refusing them.
            state: only jobs in this state.

        Returns:
            The jobs removed.

        Raises:
            JobStateError: a job has not finished and ``force`` is off; nothing was removed.
        """
        if jobs is None:
            handles = self.get(state=state)
        else:
            handles = self._handles(_as_list(jobs))
            if state is not None:
                want = JobState.parse(state) if isinstance(state, str) else state
                handles = [h for h in handles if h.info.state is want]
        infos = [h.info for h in handles]  # just read, by get() or _handles()
        running = [i for i in infos if not i.finished]
        if running and not force:
            first = running[0]
            more = f" and {len(running) - 1} more" if len(running) > 1 else ""
            raise JobStateError(
                f"job {first.id} ({first.name}) is {first.state.value}{more}: stop it first, "
                "or remove with force"
            )
        if running:
            self.stop([Job(self, i) for i in running], wait=5.0)
            infos = self.registry.load([i.id for i in infos])
        self._remove_infos(infos)
        return [Job(self, i) for i in infos]

    def _remove_infos(self, infos: Sequence[JobInfo]) -> None:
        backend = self.celery.backend
        keys = []
        for info in infos:
            for child in info.children:
                key = backend.get_key_for_task(child.instance_id)  # carries the prefix
                keys.append(key.decode() if isinstance(key, bytes) else str(key))
        self.registry.remove(infos, keys)

    # ---- helpers ------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Apply deadlines and host liveness now and then, so no state waits for a worker."""
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_EVERY:
            return
        self._last_sweep = now
        changed, due = self.registry.sweep()
        if due:
            self.dispatch_ids(due)
        if changed:
            announce_lost(self.registry, self.celery)

    def _states(self, ids: Sequence[int]) -> list[JobState]:
        out = []
        for job_id, state in zip(ids, self.registry.states(ids), strict=True):
            if state is None:
                raise JobNotFoundError(f"no job with Id {job_id} (it was removed)")
            out.append(JobState(state))
        return out

    def _ids(self, ref: JobRef) -> list[int]:
        if isinstance(ref, (Job, JobInfo)):
            return [ref.id]
        return self.registry.resolve(ref)

    def _many_ids(self, refs: Iterable[JobRef]) -> list[int]:
        seen: dict[int, None] = {}
        for ref in refs:
            seen.update(dict.fromkeys(self._ids(ref)))
        return list(seen)

    def _handles(self, refs: Iterable[JobRef]) -> list[Job]:
        ids = self._many_ids(refs)
        infos = {i.id: i for i in self.registry.load(ids)}
        return [Job(self, infos[i]) for i in ids if i in infos]

    def _events(self, handles: Sequence[Job]) -> JobEvents:
        return JobEvents(self.registry, [h.instance_id for h in handles])


def _as_list(value: Iterable[JobRef] | JobRef) -> list[JobRef]:
    """One job reference or many, as a list."""
    if isinstance(value, (str, bytes, int, Job, JobInfo)):
        return [value]  # type: ignore[list-item]
    return list(value)


def _batches(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for i in ids:
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
