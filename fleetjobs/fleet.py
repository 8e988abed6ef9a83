"""The facade: PowerShell's job verbs over the fleet (start, get, wait, receive, stop, remove).

A :class:`Fleet` is a console's view of the jobs in one Redis. Any number of consoles may hold
one at once; they all see the same jobs, because nothing about a job lives in the process.

Every verb takes one job reference or several (:data:`~fleetjobs.job.JobRefs`: a
:class:`Job`, a :class:`JobInfo`, an Id, or a string that is an Id, an InstanceId or a Name;
a string is always one reference), resolves them once, and works on the snapshots it read. A
timeout is ``timeout=`` seconds everywhere (None: for ever).
"""

from __future__ import annotations

import fnmatch
import functools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import options, placement, rollouts
from .actions import check_action_name
from .config import Config, default_location
from .control import HELD, Control, ControlVerbs, deadlocked
from .dispatch import Dispatcher
from .errors import ArgumentError, JobNotFoundError, UnknownActionError
from .events import JobEvents, ride_out, ride_out_iter
from .history import History, parse_time
from .hosts import Hosts
from .housekeeping import Housekeeping
from .job import Job, JobRef, JobRefs, Received
from .keys import EVENT_END
from .lifecycle import JobSpec, Lifecycle
from .model import HostInfo, JobInfo, Record, check_arguments, check_name, render_command
from .records import Records, Shown
from .refs import as_list, batches, check_ref, checked, children_of, ids_of, parse_state, snapshots
from .registry import Registry
from .routing import is_glob, named_locations
from .states import JobState
from .store import Store

if TYPE_CHECKING:
    from celery import Celery

    from .schedules import Schedules

_SWEEP_EVERY = 1.0


class Fleet(ControlVerbs):
    """The jobs of one fleet, as seen from a console.

    Args:
        redis_url: where the fleet lives; default ``FLEETJOBS_REDIS_URL``, then
            ``redis://127.0.0.1:6379/0``.
        config: every setting at once (``redis_url`` then overrides its URL).
        celery: a Celery app for revokes, lost jobs' Flower events and a signed fleet's
            messages (made on first use otherwise; an unsigned start needs none).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        config: Config | None = None,
        celery: Celery | None = None,
    ) -> None:
        base = config or Config.from_env()
        self.config = base.with_(redis_url=redis_url) if redis_url is not None else base
        self.store = Store.connect(self.config)
        self.registry = Registry(self.store)
        self.history = History(self.store)
        self.lifecycle = Lifecycle(self.store)
        self.records = Records(self.store)
        self.host_list = Hosts(self.store)
        self.dispatcher = Dispatcher(self.config, self.registry, self.lifecycle, celery)
        self.housekeeping = Housekeeping(
            self.registry, self.lifecycle, self.dispatcher, _SWEEP_EVERY
        )
        self.control = Control(self.lifecycle, self.host_list)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release this console's connections (the jobs go on)."""
        self.store.close()
        self.dispatcher.close()

    @functools.cached_property
    def schedules(self) -> Schedules:
        """This fleet's schedules (``Register-ScheduledJob``): add, list, show, remove, enable,
        disable, run; ``fleetjobs beat`` fires them."""
        from .schedules import Schedules

        return Schedules(self)

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
        batch: int | str | None = None,
        batch_wait: float = 0.0,
        max_failures: int | None = None,
        halt_running: bool = False,
        where: Sequence[str] = (),
        prompt_timeout: float | None = None,
        default_answer: str | None = None,
        **action_kwargs: Any,
    ) -> Job:
        """Start a job and return at once: one parent, one child per location.

        ``fleet.start("processes", top=3)``: a keyword that is not one of start's own options
        goes to the action. An action parameter named like one of start's options (``name``,
        ``timeout``...) goes in ``kwargs={...}``, which is merged with the rest.

        Args:
            action: the registered action to run (``echo``, ``sleep``, ``run``, ...).
            args: its positional arguments, JSON values (``-ArgumentList``).
            name: the job's Name (default ``Job<Id>``; names need not be unique).
            locations: host names or globs, a list or a comma-separated string (default:
                this machine's hostname, PowerShell's localhost).
            target: ``key=value`` tags a host must carry to be selected.
            all_hosts: select every online host.
            kwargs: keyword arguments, JSON values (also: as keywords of this call).
            throttle_limit: at most this many children run at once.
            start_timeout: fail a child that no worker started within this many seconds.
            timeout: stop a child (Failed, "timed out") that runs longer than this.
            batch, batch_wait, max_failures, halt_running: a rollout in waves of ``batch``
                hosts (or ``"10%"``), ``batch_wait`` s apart, halted once more than
                ``max_failures`` failed (:mod:`fleetjobs.rollouts`).
            where: fact filters (``os=debian``, ``memory_gb>=8``; :mod:`fleetjobs.facts`).
            prompt_timeout: a question (``ctx.ask``) nobody answers within this many seconds
                takes ``default_answer``, else the question's own default, else fails the child.
            default_answer: the answer a prompt timeout gives.

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
        kwargs = {**options.mapping("kwargs", kwargs), **action_kwargs}
        check_arguments(args, kwargs, self.config.max_arguments)
        if name is not None:
            check_name(name)
        throttle_limit = options.count("throttle limit", throttle_limit, 1)
        start_timeout, timeout, prompt_timeout = options.durations(
            start_timeout=start_timeout, timeout=timeout, prompt_timeout=prompt_timeout
        )
        if default_answer is not None and prompt_timeout is None:
            raise ArgumentError(
                "--default-answer needs --prompt-timeout: it is what a question nobody "
                "answers in time takes"
            )
        target, where = options.texts("target", target), options.texts("where", where)
        options.flags(all_hosts=all_hosts, halt_running=halt_running)
        named = named_locations(options.texts("locations", locations))
        # plain names need only their own hosts' records; globs, tags and --all need them all
        everything = bool(target) or all_hosts or bool(where) or any(is_glob(n) for n in named)
        scope = None if everything else named or [default_location()]

        def lookup(fresh: bool) -> dict[str, HostInfo]:  # fresh, or as read a moment ago
            return {h.location: h for h in self.host_list.recent(scope, fresh)}

        near = placement.nearest_in(lambda: self.host_list.recent(None))
        locs, warnings, hosts = placement.place(
            action, named, target, all_hosts, where, lookup, near, self.config.can_sign
        )
        size = rollouts.batch_size(
            batch,
            len(locs),
            batch_wait=batch_wait,
            max_failures=max_failures,
            halt_running=halt_running,
            throttle=throttle_limit,
        )
        # refused here, before anything is queued, not on the worker
        placement.check_arguments(action, hosts, locs, args, kwargs)
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
            batch=size,
            batch_wait=batch_wait,
            max_failures=max_failures,
            halt_running=halt_running,
            prompt_timeout=prompt_timeout,
            default_answer=default_answer,
            index_iids=placement.needs_iid_index(locs, hosts),
        )
        # one script writes the job and queues its messages; its snapshot as written, no re-read
        info, _ = self.lifecycle.create_job(spec, self.dispatcher.compose)
        self.housekeeping.purge_expired()
        return Job(self, info, tuple(warnings))

    # ---- get ----------------------------------------------------------------------------

    def info(self, ref: JobRef) -> JobInfo:
        """The current snapshot of one job.

        Raises:
            JobNotFoundError: no job has that reference (or it was removed).
        """
        if isinstance(ref := check_ref(ref), (Job, JobInfo)):
            job_id = ref.id
        elif isinstance(ref, int):
            job_id = ref  # load() tells a missing one: no need to ask first
        else:
            ids = self.registry.resolve(ref)
            if len(ids) > 1:
                raise JobNotFoundError(f"{ref!r} names {len(ids)} jobs: use an Id")
            job_id = ids[0]
        found = self.registry.load([job_id])
        if not found:
            raise JobNotFoundError(f"no job with Id {job_id} (it was removed, or Redis lost it)")
        return found[0]

    def job(self, ref: JobRef) -> Job:
        """The one job a reference names (an Id, an InstanceId or a unique Name)."""
        return Job(self, self.info(ref))

    def get(
        self,
        jobs: JobRefs | None = None,
        *,
        name: str | None = None,
        state: JobState | str | None = None,
        include_children: bool = False,
        action: str | None = None,
        location: str | None = None,
        since: float | str | None = None,
        until: float | str | None = None,
        failed: bool = False,
        newest: int | None = None,
    ) -> list[Job]:
        """The jobs named, or every top-level job, oldest first (``Get-Job``).

        Args:
            jobs: one reference or several; None means every job.
            name: only jobs with this Name (globs allowed).
            state: only jobs in this state.
            include_children: list each parent's children after it.
            action, location, since, until, failed: only jobs of this action, that had a
                child on this host (globs allowed), started in this span (Unix seconds, ``2h``
                or an ISO date), that ended Failed: from indexes (:mod:`fleetjobs.history`).
            newest: only the newest N of the jobs selected (``-Newest``; by creation),
                read newest first: what it costs does not grow with the jobs kept.

        Raises:
            JobNotFoundError: a reference matched no job.
        """
        given = {k: v for k, v in locals().items() if k not in ("self", "jobs")}  # by name
        return list(self.each(jobs, **given))

    def each(
        self,
        jobs: JobRefs | None = None,
        *,
        name: str | None = None,
        state: JobState | str | None = None,
        include_children: bool = False,
        action: str | None = None,
        location: str | None = None,
        since: float | str | None = None,
        until: float | str | None = None,
        failed: bool = False,
        newest: int | None = None,
    ) -> Iterator[Job]:
        """The jobs :meth:`get` lists (the same arguments), one at a time, read 500 at a time
        as they are taken: memory does not grow with the jobs kept (``get --all --json``)."""
        refs = None if jobs is None else as_list(jobs)  # checked before Redis is asked
        options.filters(name=name, action=action, location=location, newest=newest)
        want = parse_state(state)  # a state not known is an error, with failed too
        want = JobState.FAILED if failed else want
        start, end = (
            parse_time(t) if isinstance(t, str) else options.instant(t) for t in (since, until)
        )
        self.housekeeping.sweep()
        indexed = action is not None or location is not None or (start, end) != (None, None)
        ids: Iterable[int]
        if refs is not None:
            ids = ids_of(self.registry, refs)
        elif indexed or want is JobState.FAILED:
            ids = self.history.find(action, location, start, end, want is JobState.FAILED)
        elif name is not None:
            ids = self.registry.ids_named(name)
        else:
            ids = self.registry.iter_top_ids(newest_first=newest is not None)
        if newest is not None and not isinstance(ids, Iterator):
            ids = sorted(ids, reverse=True)  # a list read whole: newest (highest Id) first
        by_name = name is not None and (jobs is not None or indexed or want is JobState.FAILED)
        kept: list[Job] = []  # the newest N, newest first, to be given oldest first
        for batch in batches(ids, 500):
            for info in self.registry.load(batch):
                if by_name and not fnmatch.fnmatchcase(info.name, name or ""):
                    continue
                if want is not None and info.state is not want:
                    continue
                if newest is None:
                    yield from self._with_children(Job(self, info), include_children)
                else:
                    kept.append(Job(self, info))
            if newest is not None and len(kept) >= newest:
                break
        for job in kept[:newest][::-1]:
            yield from self._with_children(job, include_children)

    def _with_children(self, job: Job, children: bool) -> Iterator[Job]:
        yield job
        if children:
            yield from (Job(self, c) for c in job.info.children)

    def hosts(self) -> list[HostInfo]:
        """Every host that has heartbeated, online or not."""
        return self.host_list.list()

    # ---- wait ---------------------------------------------------------------------------

    def wait(
        self,
        jobs: JobRefs,
        timeout: float | None = None,
        *,
        any: bool = False,
        force: bool = False,
    ) -> list[Job]:
        """Block until the jobs finish (``Wait-Job``).

        Args:
            jobs: one reference or several.
            timeout: seconds; None waits for ever, 0 checks once.
            any: return as soon as one has finished.
            force: keep waiting through Suspended and Disconnected (``-Force``); without it
                a job in either state ends the wait as if finished (it has not).

        Returns:
            The finished (or held) jobs in the order given, as they are now; ``[]`` if the
            timeout passed first (no exception, as ``Wait-Job -Timeout`` returns nothing).

        Raises:
            JobBlockedError: a job can only go on with an answer (it is Blocked); the
                message names the job and its question.
        """
        timeout = options.seconds("timeout", timeout, zero=True)  # None: for ever; 0: once
        options.flags(any=any, force=force)
        until = None if timeout is None else time.monotonic() + timeout
        infos = ride_out(lambda: self._snapshots(jobs), until)
        return self._wait(infos, timeout, any, force=force, until=until)

    def _wait(
        self,
        infos: list[JobInfo],
        timeout: float | None,
        any: bool,
        gone_ok: bool = False,
        force: bool = False,
        until: float | None = None,
    ) -> list[Job]:
        """Wait for these jobs; with ``gone_ok`` one removed meanwhile (a stop or remove
        racing another console's) counts as finished, else it is an error. ``until``: when
        the timeout runs out (``time.monotonic()``), if the caller's clock started before."""
        if not infos:
            return []
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if until is not None:
            deadline = until if deadline is None else min(deadline, until)
        ids = [i.id for i in infos]
        ends = {s for s in JobState if s.finished or (not force and s in HELD)}

        def look() -> tuple[list[str | None], list[JobInfo] | None]:
            self.housekeeping.sweep()
            return self.registry.poll(ids, ends, any, gone_ok)  # once over, the snapshots too

        if all(i.state.finished for i in infos):  # read finished (wait after get): final
            return [Job(self, i) for i in infos]
        with self._events(infos, only=EVENT_END) as events:
            while True:
                raw, ended = ride_out(look, deadline)
                states = checked(ids, raw, gone_ok)
                if ended is not None:
                    return [Job(self, i) for i in ended]
                stuck = [i for i, s in zip(ids, states, strict=True) if s is JobState.BLOCKED]
                if stuck and (not any or len(stuck) == len(infos)):
                    deadlocked(self.registry.load(stuck), len(infos) if any else 1)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                events.next(min(_SWEEP_EVERY, remaining or _SWEEP_EVERY))

    # ---- receive ------------------------------------------------------------------------

    def receive(
        self,
        jobs: JobRefs,
        *,
        keep: bool = False,
        follow: bool = False,
        auto_remove: bool = False,
        location: str | None = None,
    ) -> Received:
        """Take the jobs' records (``Receive-Job``): output values, with every stream beside.

        Args:
            jobs: one reference or several (a parent gives every child's records, tagged
                with its location).
            keep: leave the records for the next receive (``-Keep``).
            follow: keep receiving as records arrive until the jobs finish (``-Wait``).
            auto_remove: with ``follow``, remove the jobs once all is received.
            location: only the child on this location.

        The records leave Redis a batch (1,000) at a time as the list is made: interrupted
        (Ctrl-C) before it returns, the batch in hand goes back, but those already taken
        are lost with the list. To receive a large output safely, iterate :meth:`stream`
        (a record leaves Redis once handed on), as the ``receive`` verb does.
        """
        if not (follow or auto_remove):  # handed over whole: no Redis call after the last take
            kids = children_of(self._snapshots(jobs), location)
            return Received(list(self.records.drain(kids, keep=keep, whole=True)))
        got = self.stream(
            jobs, keep=keep, follow=follow, auto_remove=auto_remove, location=location
        )
        return Received(list(got))

    def stream(
        self,
        jobs: JobRefs,
        *,
        keep: bool = False,
        follow: bool = False,
        auto_remove: bool = False,
        location: str | None = None,
        handed_on_next: bool = False,
        shown: Shown | None = None,
    ) -> Iterator[Record]:
        """Records as they are taken; with ``follow``, as they arrive until the jobs finish.

        A record is taken once it is given to the caller, or with ``handed_on_next`` once
        the caller asks for the next (what a console printing them does: the record it was
        printing when Ctrl-C came is printed again by the next receive, rather than never),
        or with ``shown`` once the caller counts it shown (a console that holds objects back
        to print them as one table: ``shown.flush`` is called before each batch is
        acknowledged and before a follow waits for more; see :class:`~fleetjobs.records.Shown`).
        What the caller was not given goes back at once however it stops."""
        if auto_remove and (keep or not follow):
            raise ArgumentError("auto_remove needs follow and not keep: it removes what it read")
        infos = ride_out(lambda: self._snapshots(jobs)) if follow else self._snapshots(jobs)
        children = children_of(infos, location)
        read: dict[str, int] = {}  # with keep, how far each child's records have been read
        drain = functools.partial(
            self.records.drain,
            children,
            keep=keep,
            offsets=read,
            handed_on_next=handed_on_next,
            shown=shown,
        )
        if not follow:
            yield from drain()
            return
        with self._events(infos) as events:
            while True:
                states = ride_out(lambda: self._poll(infos))
                # a job that waits on a person (an answer, a resume) ends the follow too
                finished = all(
                    s.finished or s in HELD or s is JobState.BLOCKED for s in states if s
                )
                yield from ride_out_iter(drain, self.store.ping)
                if finished:
                    break
                events.next(_SWEEP_EVERY)
        if auto_remove:
            self.remove(infos)

    # ---- stop (remove is ControlVerbs.remove) ---------------------------------------------

    # ---- helpers ------------------------------------------------------------------------

    def _poll(self, infos: Sequence[JobInfo], gone_ok: bool = False) -> list[JobState | None]:
        self.housekeeping.sweep()
        return self._states([i.id for i in infos], gone_ok)

    def _states(self, ids: Sequence[int], gone_ok: bool = False) -> list[JobState | None]:
        return checked(ids, self.registry.states(ids), gone_ok)

    def _snapshots(self, jobs: JobRefs, fresh: bool = False) -> list[JobInfo]:
        return snapshots(self.registry, jobs, fresh)

    def _events(self, infos: Sequence[JobInfo], only: str | None = None) -> JobEvents:
        return JobEvents(self.store, [i.instance_id for i in infos], only)

    def _handles(self, infos: Sequence[JobInfo]) -> list[Job]:
        return [Job(self, i) for i in infos]
