"""Schedules: fleet-wide ``Register-ScheduledJob``, kept in Redis by RedBeat.

A schedule is a trigger (:mod:`fleetjobs.triggers`) plus everything a ``start`` takes: the
action, its arguments, the targeting, the throttle and the timeouts. RedBeat holds it (its
entry ``<prefix>redbeat:<name>`` and the due-time index ``<prefix>redbeat::schedule``), so it
survives restarts and can be added, disabled or removed while ``fleetjobs beat`` runs. Each
firing is an ordinary job named after the schedule, its hosts chosen at that moment. Beside
RedBeat's keys, a schedule owns::

    sched:<name>:runs    sorted set: the ids of its runs, by firing time (for retention)
    sched:<name>         hash: how many firings the overlap policy skipped
    sched:<name>:skips   list: the newest skips, what was still running, newest first

Only the newest ``max_results`` runs are kept: older ones are removed with their output (a run
still going when it falls out is removed at the first firing after it has finished).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import redis.exceptions
from celery import Celery
from redbeat.schedulers import REDBEAT_REDIS_KEY, ensure_conf

from . import options, placement
from .actions import check_action_name, registered
from .celery_app import make_celery
from .config import Config, default_location
from .errors import (
    ArgumentError,
    ScheduleBusyError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    ScheduleUnreadableError,
    StartError,
    UnknownActionError,
)
from .job import Job
from .keys import Keys
from .lifecycle import JobSpec
from .model import check_addressable, render_command, to_json
from .routing import named_locations
from .schedule_model import (
    UNREADABLE,
    UNREADABLE_FIELDS,
    FleetVerbs,
    RunInfo,
    ScheduleInfo,
    fireable,
    info_of,
    unreadable,
)
from .states import JobState, state_read
from .store import guarded
from .triggers import OVERLAP, FleetEntry, celery_schedule, parse_trigger, run_start_timeout

MAX_RESULTS = 100_000  # runs a schedule keeps at most (each with its output)
TASK = "fleetjobs.schedule"  # the name RedBeat files entries under; nothing is ever sent to it
SKIPS_KEPT = 20
LOCK_SECONDS = 60  # the longest a firing (a fan-out to every host) or an add holds its schedule
LOCK_WAIT = 10.0  # how long a verb waits for another console's firing of the same schedule
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHELL_ACTIONS = frozenset({"run"})


def redbeat_app(config: Config, client: Any) -> Celery:
    """A Celery app whose RedBeat settings follow the fleet: keys behind the fleet's prefix
    (two fleets in one Redis never see each other's schedules), the registry's connection."""
    app = make_celery(config, main="fleetjobs-beat")
    app.conf.update(
        redbeat_redis_url=config.redis_url,
        redbeat_key_prefix=Keys(config.prefix).schedules,
        redbeat_redis_options={},
        beat_schedule={},
        beat_max_loop_interval=config.beat_interval,
        redbeat_lock_timeout=config.beat_lock_timeout,
    )
    # RedBeat would open its own connection from the URL; the registry's has the same
    # URL handling (TLS parameters, Unix sockets) as every other fleetjobs connection
    setattr(app, REDBEAT_REDIS_KEY, client)
    ensure_conf(app)
    return app


class Schedules:
    """The schedules of one fleet (``fleet.schedules``).

    Args:
        fleet: the fleet whose jobs the schedules start.
        app: a Celery app from :func:`redbeat_app` (the beat passes its own).
    """

    def __init__(self, fleet: FleetVerbs, app: Celery | None = None) -> None:
        self.fleet = fleet
        self.registry = fleet.registry
        self.store = fleet.registry.store  # what @guarded names in its errors
        self.lifecycle = fleet.lifecycle
        self.r: Any = fleet.registry.r
        self.p = fleet.config.prefix
        self.app = app or redbeat_app(fleet.config, self.r)

    # ---- keys ---------------------------------------------------------------------------

    def _entry_key(self, name: str) -> str:
        if not isinstance(name, str):  # every verb on a schedule by name comes here first
            raise ArgumentError(f"a schedule is named by text, got {name!r}")
        return str(self.app.redbeat_conf.key_prefix) + name

    def _runs_key(self, name: str) -> str:
        return f"{self.p}sched:{name}:runs"

    def _skips_key(self, name: str) -> str:
        return f"{self.p}sched:{name}:skips"

    def _stats_key(self, name: str) -> str:
        return f"{self.p}sched:{name}"

    # ---- the verbs ----------------------------------------------------------------------

    @guarded
    def add(
        self,
        name: str,
        action: str,
        *args: Any,
        cron: str | None = None,
        every: str | float | timedelta | None = None,
        at: str | datetime | None = None,
        timezone: str | None = None,
        locations: str | Iterable[str] | None = None,
        target: Sequence[str] = (),
        all_hosts: bool = False,
        kwargs: dict[str, Any] | None = None,
        throttle_limit: int = 32,
        start_timeout: float | None = None,
        timeout: float | None = None,
        max_results: int = 32,
        overlap: str = "skip",
    ) -> ScheduleInfo:
        """Register a schedule (``Register-ScheduledJob``); it fires while ``fleetjobs beat``
        runs. Everything is checked first: a refused schedule stores nothing.

        Args:
            name: the schedule's name, and the Name of every job it starts.
            action, args, kwargs, locations, target, all_hosts, throttle_limit,
                start_timeout, timeout: what each firing starts, as :meth:`Fleet.start`;
                with no hosts named, the hostname of the machine adding it (kept with the
                schedule: not whichever machine's beat fires it).
            cron, every, at, timezone: the trigger, one of three (:func:`parse_trigger`).
            max_results: keep only the newest this many runs (PowerShell keeps 32).
            overlap: ``skip`` a firing while a run is unfinished, run in ``parallel``, or
                ``stop-existing`` runs first.

        Raises:
            BadTriggerError: a trigger that cannot work.
            ScheduleExistsError: the name is taken.
            UnknownActionError: no host the schedule targets offers the action.
            NoHostError: the targeting matches no host now.
            ArgumentError: a bad name, value or argument.
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            shown = repr(name) if len(repr(name)) <= 80 else f"{repr(name)[:70]}... ({len(name)})"
            raise ArgumentError(
                f"invalid schedule name {shown}: letters, digits, '.', '_' and '-', "
                "at most 100 characters"
            )
        check_addressable(name)  # the Name of its jobs: not one that reads as an Id
        try:
            check_action_name(action)
        except ValueError as exc:
            raise UnknownActionError(str(exc)) from None
        kwargs = dict(options.mapping("kwargs", kwargs))
        for i, value in enumerate(args, 1):
            to_json(value, f"argument {i}")
        for key, value in kwargs.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ArgumentError(f"keyword argument name {key!r} is not an identifier")
            to_json(value, f"keyword argument {key!r}")
        options.count("throttle limit", throttle_limit, 1)
        if options.count("max results", max_results, 1) > MAX_RESULTS:
            raise ArgumentError(f"max results must be at most {MAX_RESULTS:,}, got {max_results}")
        options.durations(start_timeout=start_timeout, timeout=timeout)
        options.flags(all_hosts=all_hosts)
        target = options.texts("target", target)
        if overlap not in OVERLAP:
            raise ArgumentError(f"overlap must be one of {', '.join(OVERLAP)}, got {overlap!r}")
        trigger = parse_trigger(cron, every, at, timezone)
        named = named_locations(options.texts("locations", locations))
        if not (named or target or all_hosts):  # this machine: the one adding it, not firing it
            named = [default_location()]
        spec: dict[str, Any] = {
            "action": action,
            "args": list(args),
            "kwargs": kwargs,
            "locations": named,
            "target": list(target),
            "all": all_hosts,
            "throttle_limit": throttle_limit,
            "start_timeout": start_timeout,
            "timeout": timeout,
            "max_results": max_results,
            "overlap": overlap,
            "trigger": trigger.to_dict(),
            "created": time.time(),
        }
        warnings = self._check_targets(spec)
        entry = FleetEntry(
            name=name,
            task=TASK,
            schedule=celery_schedule(trigger),
            args=[],
            kwargs=spec,
            enabled=True,
            app=self.app,
        )
        with self._locked(name):  # two consoles adding one name: one is told it exists
            if self.r.exists(self._entry_key(name)):
                raise ScheduleExistsError(f"a schedule named {name!r} exists: remove it first")
            # counted from now: a cron does not fire at once for the times before it was added
            entry.last_run_at = self.app.now()
            entry.save()
        return dataclasses.replace(self.show(name), warnings=tuple(warnings))

    @guarded
    def list(self, unreadable: list[str] | None = None) -> list[ScheduleInfo]:
        """Every schedule, by name.

        Args:
            unreadable: gets why each schedule whose stored definition cannot be read is
                left out (one line each); without it they are left out silently.
        """
        base = str(self.app.redbeat_conf.key_prefix)
        keys = self.r.zrange(self.app.redbeat_conf.schedule_key, 0, -1)
        names = sorted(k[len(base) :] for k in keys if k.startswith(base))
        out = []
        for name in names:
            try:
                entry = self._entry(name, missing_ok=True)
                if entry is not None:
                    out.append(self._info(entry, history=False))
            except ScheduleUnreadableError as exc:
                if unreadable is not None:
                    unreadable.append(str(exc))
        return out

    @guarded
    def show(self, name: str) -> ScheduleInfo:
        """One schedule with its runs (oldest first) and its skips (newest first).

        Raises:
            ScheduleNotFoundError: no schedule has that name.
        """
        entry = self._entry(name)
        assert entry is not None
        return self._info(entry, history=True)

    @guarded
    def remove(self, name: str) -> ScheduleInfo | None:
        """Unregister a schedule; its runs stay, as ordinary jobs (``fleetjobs remove NAME``).

        Returns:
            What it was; None for one whose stored definition could not be read (removed
            all the same).
        """
        try:
            info: ScheduleInfo | None = self.show(name)
        except ScheduleUnreadableError:
            info = None
        key = self._entry_key(name)
        with self._locked(name):  # not while it fires: its run would outlive the schedule
            self.r.zrem(self.app.redbeat_conf.schedule_key, key)
            self.r.delete(key, self._runs_key(name), self._skips_key(name), self._stats_key(name))
        return info

    @guarded
    def enable(self, name: str) -> ScheduleInfo:
        """Let a disabled schedule fire again, from its next time on (missed firings are not
        made up)."""
        with self._locked(name):  # not while it is removed: a save would bring it back
            entry = self._entry(name)
            assert entry is not None
            entry.enabled = True
            entry.save()
            entry.reschedule(self.app.now())
        return self.show(name)

    @guarded
    def disable(self, name: str) -> ScheduleInfo:
        """Keep a schedule but stop it firing until it is enabled."""
        with self._locked(name):  # not while it is removed or fired
            entry = self._entry(name)
            assert entry is not None
            entry.enabled = False
            entry.save()
        return self.show(name)

    @guarded
    def run(self, name: str) -> Job | None:
        """Fire a schedule now, whatever its trigger says (its timing does not move).

        Returns:
            The run, or None when the overlap policy skipped it (recorded as a skip).
        """
        entry = self._entry(name)
        assert entry is not None
        return self.fire(name, dict(entry.kwargs), manual=True)

    # ---- firing -------------------------------------------------------------------------

    @guarded
    def fire(
        self,
        name: str,
        spec: dict[str, Any],
        manual: bool = False,
        wait: float = LOCK_WAIT,
        before: Callable[[], object] | None = None,
    ) -> Job | None:
        """One firing: apply the overlap policy, start the run (a Failed run when its hosts
        cannot be chosen now), then drop the runs beyond ``max_results``. One firing of a
        schedule at a time (the beat's and a ``schedule run``'s), so ``skip`` skips; one
        still under way after ``wait`` seconds makes this one a skip. ``before`` (the beat's
        move of the schedule's next time) runs once the schedule is this console's.

        Raises:
            ScheduleNotFoundError: it was removed meanwhile (or, a beat's firing, disabled).
        """
        try:
            with self._locked(name, wait):
                # removed (or disabled) while this firing waited: not fired, and nothing of
                # it written again (a removed schedule's key brought back with only its meta)
                if not fireable(self.r.hget(self._entry_key(name), "definition"), manual):
                    raise ScheduleNotFoundError(f"schedule {name!r} was removed or disabled")
                if before is not None:
                    before()
                return self._fire(name, spec, manual)
        except ScheduleBusyError:
            if before is not None:  # its next time moves all the same: a skip, not a retry
                before()  # at every tick (and a key that a remove meanwhile emptied, dropped)
                if self._drop_if_gone(name):
                    return None
            self._skip(name, "another firing of it was under way", manual)
            return None

    def _drop_if_gone(self, name: str) -> bool:
        """Whether the schedule is gone; what is left of its key (its meta, a time in the
        schedule's sorted set, which a write racing its remove brought back) is deleted,
        unless an add gives it a definition meanwhile."""
        key = self._entry_key(name)
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if pipe.hexists(key, "definition"):
                    return False
                pipe.multi()
                pipe.delete(key)
                pipe.zrem(self.app.redbeat_conf.schedule_key, key)
                pipe.execute()
            except redis.exceptions.WatchError:
                return False  # added meanwhile
        return True

    def _fire(self, name: str, spec: dict[str, Any], manual: bool) -> Job | None:
        runs_key = self._runs_key(name)
        ids = [int(i) for i in self.r.zrange(runs_key, 0, -1)]
        states = self.registry.states(ids) if ids else []
        unfinished = [
            (i, s) for i, s in zip(ids, states, strict=True) if s and not state_read(s).finished
        ]
        now = time.time()
        if unfinished and spec["overlap"] == "skip":
            run_id, state = unfinished[-1]
            self._skip(name, f"run {run_id} is still {state}", manual)
            return None
        if unfinished and spec["overlap"] == "stop-existing":
            self.fleet.stop([i for i, _ in unfinished], timeout=0)
        try:
            job = self.fleet.start(
                spec["action"],
                *spec["args"],
                name=name,
                locations=spec["locations"],
                target=spec["target"],
                all_hosts=bool(spec["all"]),  # as stored, by this version or an older one
                kwargs=spec["kwargs"],
                throttle_limit=spec["throttle_limit"],
                start_timeout=run_start_timeout(spec),
                timeout=spec["timeout"],
            )
        except StartError as exc:
            job = self._failed_run(name, spec, str(exc))
        self.r.zadd(runs_key, {str(job.id): now})
        self._trim(name, int(spec["max_results"]))
        return job

    def _failed_run(self, name: str, spec: dict[str, Any], reason: str) -> Job:
        """A run that could not start (its target matched nothing, say): a Failed job with
        the reason, listed by ``get`` like any run, rather than a silent skip."""
        args, kwargs = spec["args"], spec["kwargs"]
        job_spec = JobSpec(
            action=spec["action"],
            args=args,
            kwargs=kwargs,
            command=render_command(spec["action"], args, kwargs),
            locations=[],
            name=name,
            throttle_limit=spec["throttle_limit"],
        )
        job_id = self.lifecycle.create(job_spec)[0]
        self.lifecycle.finish(job_id, JobState.FAILED, reason)
        return self.fleet.job(job_id)

    def _trim(self, name: str, keep: int) -> None:
        """Remove the runs beyond the newest ``keep``, with their output; an unfinished one
        stays until it has finished."""
        runs_key = self._runs_key(name)
        old = [int(i) for i in self.r.zrange(runs_key, 0, -(keep + 1))]
        if not old:
            return
        states = self.registry.states(old)
        done = [i for i, s in zip(old, states, strict=True) if s is None or state_read(s).finished]
        present = [i for i, s in zip(old, states, strict=True) if s is not None and i in done]
        if present:
            self.fleet.remove(present)
        if done:
            self.r.zrem(runs_key, *done)

    # ---- helpers ------------------------------------------------------------------------

    def _skip(self, name: str, reason: str, manual: bool) -> None:
        skip = {"time": time.time(), "reason": reason, "manual": manual}
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self._stats_key(name), "skipped", 1)
        pipe.lpush(self._skips_key(name), json.dumps(skip))
        pipe.ltrim(self._skips_key(name), 0, SKIPS_KEPT - 1)
        pipe.execute()

    @contextmanager
    def _locked(self, name: str, wait: float = LOCK_WAIT) -> Iterator[None]:
        """This schedule to this console alone while it is added, fired or removed (a lock in
        Redis that expires, should the console die holding it), waiting ``wait`` s for it."""
        lock = self.r.lock(f"{self._stats_key(name)}:lock", timeout=LOCK_SECONDS)
        if not lock.acquire(blocking_timeout=wait):
            raise ScheduleBusyError(f"schedule {name!r} is busy: another console is firing it")
        try:
            yield
        finally:
            with suppress(redis.exceptions.LockError):  # it expired: someone may hold it now
                lock.release()

    def _entry(self, name: str, missing_ok: bool = False) -> FleetEntry | None:
        key = self._entry_key(name)
        try:
            entry: FleetEntry = FleetEntry.from_key(key, app=self.app)
        except KeyError as exc:
            if self.r.exists(key):  # there, but damaged (RedBeat's decoding raises KeyError too)
                why = exc if self.r.hexists(key, "definition") else "no definition"
                raise unreadable(name, why) from None
            if missing_ok:
                return None
            raise ScheduleNotFoundError(f"no schedule named {name!r}") from None
        except UNREADABLE as exc:
            raise unreadable(name, exc) from None
        return entry

    def _info(self, entry: FleetEntry, history: bool) -> ScheduleInfo:
        try:
            return self._read_info(entry, history)
        except UNREADABLE_FIELDS as exc:
            raise unreadable(str(entry.name), exc) from None

    def _read_info(self, entry: FleetEntry, history: bool) -> ScheduleInfo:
        name = str(entry.name)
        runs_key = self._runs_key(name)
        if history:
            pairs = self.r.zrange(runs_key, 0, -1, withscores=True)
        else:
            pairs = self.r.zrange(runs_key, -1, -1, withscores=True)
        ids = [int(i) for i, _ in pairs]
        states = self.registry.states(ids) if ids else []
        runs = tuple(
            RunInfo(i, s or "Removed", float(t))
            for (i, t), s in zip(zip(ids, (t for _, t in pairs), strict=True), states, strict=True)
        )
        skipped = int(self.r.hget(self._stats_key(name), "skipped") or 0)
        skips: tuple[dict[str, Any], ...] = ()
        if history:
            skips = tuple(json.loads(s) for s in self.r.lrange(self._skips_key(name), 0, -1))
        return info_of(entry, runs, skipped, skips)

    def _check_targets(self, spec: dict[str, Any]) -> Sequence[str]:
        """Refuse a schedule whose targeting matches no host now, or whose action no host
        it targets offers (as ``start`` would); the warnings start would give (a location
        no worker serves now)."""
        hosts = {h.location: h for h in self.fleet.hosts()}
        # chosen as start chooses them, and refused for what start refuses
        chosen = placement.select(list(spec["locations"]), spec["target"], spec["all"], hosts)
        action = spec["action"]
        warnings = placement.check(action, chosen, hosts, spec["locations"])
        placement.check_arguments(action, hosts, chosen, spec["args"], spec["kwargs"])
        live = [loc for loc in chosen if loc in hosts and hosts[loc].online]
        if not live:
            # no chosen host is online to ask: the action must be one the fleet knows
            known = {a for h in hosts.values() for a in h.actions} | set(registered())
            if action not in known:
                raise UnknownActionError(
                    f"unknown action {action!r}: no host of this fleet offers it"
                )
        return warnings
