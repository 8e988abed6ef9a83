"""The beat: RedBeat's scheduler, firing each due schedule as a fleetjobs job.

``fleetjobs beat`` runs :class:`FleetScheduler`, a ``RedBeatScheduler`` whose firing is the
fleet's own start path, run in this process: no extra queue, task or consumer. RedBeat picks the
due schedules from Redis on every tick (so schedules added, disabled or removed meanwhile are
seen at the next tick) and moves each one's next time before it fires (at most once, even if the
firing fails). Only the beat holding RedBeat's lock ticks: a second ``fleetjobs beat`` waits as
a standby and takes over when the first stops (at once when it exits cleanly, after
``beat_lock_timeout`` when it was killed), so two beats never fire a schedule twice.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from types import FrameType, SimpleNamespace
from typing import Any

import redis.exceptions
from celery.beat import ScheduleEntry
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import (
    RedBeatScheduler,
    RedBeatSchedulerEntry,
    acquire_distributed_beat_lock,
    get_redis,
)

from .config import Config
from .errors import (
    ConfigError,
    RedisUnavailableError,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleUnreadableError,
)
from .fleet import Fleet
from .schedule_model import UNREADABLE, UNREADABLE_FIELDS, unreadable
from .schedules import Schedules, redbeat_app
from .states import JobState
from .triggers import FleetEntry

log = logging.getLogger("fleetjobs.beat")
BEAT_LOCK_WAIT = 2.0  # seconds the beat waits for a schedule a console is firing


class FiredElsewhere(ScheduleError):
    """Another beat fired this schedule's due time while this one stalled."""


class _Shutdown(BaseException):
    """Raised by the signal handler while the beat is idle (sleeping or waiting for the lock):
    a BaseException, so nothing on the way swallows it."""


class _Unreadable:
    """A due schedule whose stored definition cannot be read: it never fires, and the beat
    says why (once) instead of failing the whole tick on it, as RedBeat's loading would."""

    def __init__(self, key: str, prefix: str, why: BaseException) -> None:
        self.key, self.why = key, why
        self.name = key[len(prefix) :] if key.startswith(prefix) else key

    def is_due(self) -> tuple[bool, float]:
        raise unreadable(self.name, self.why)


class _BeatEntry(FleetEntry):
    @classmethod
    def from_key(cls, key: str, app: Any = None) -> Any:
        try:
            return super().from_key(key, app=app)
        except UNREADABLE_FIELDS as exc:  # damaged; a KeyError: gone, too (RedBeat drops it)
            if isinstance(exc, KeyError) and not get_redis(app).hexists(key, "definition"):
                raise
            return _Unreadable(key, str(app.redbeat_conf.key_prefix), exc)


class FleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler whose ``apply_async`` starts the schedule's run itself."""

    Entry = _BeatEntry

    def __init__(self, app: Any, *, schedules: Schedules, **kwargs: Any) -> None:
        self.schedules = schedules
        self.busy = False
        self._reported: dict[str, str] = {}  # schedule -> the error last logged for it
        super().__init__(app, **kwargs)

    @property
    def _maybe_due_kwargs(self) -> dict[str, Any]:
        return {}  # Celery would open a broker producer here: this scheduler sends nothing

    def maybe_due(self, entry: Any, **_: Any) -> Any:
        # RedBeat's logs "Sending due task" and a traceback for any error: here nothing is
        # sent, apply_async logs the firing, and Redis errors go up to the beat's loop
        try:
            due, next_time_to_run = entry.is_due()
        except Exception as exc:  # a schedule that cannot be read must not stop the others
            if self._reported.get(entry.name) != str(exc):  # each tick would say it again
                self._reported[entry.name] = str(exc)
                if isinstance(exc, ScheduleUnreadableError):
                    log.error("%s", exc)
                else:
                    log.error("schedule %s: cannot tell when it is due: %s", entry.name, exc)
            return None
        self._reported.pop(entry.name, None)
        if due:
            self.apply_async(entry)
        return next_time_to_run

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.busy = True
        try:
            return float(super().tick(*args, **kwargs))
        finally:
            self.busy = False

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **_: Any) -> None:
        if not self._still_mine():
            log.warning("schedule %s: not fired: this beat lost the lock", entry.name)
            return
        # the tick loaded its entries a moment ago: a schedule disabled or removed since
        # then does not fire (a disable takes effect when it returns, not a tick later)
        try:
            current = json.loads(self.schedules.r.hget(entry.key, "definition") or "null")
            if not current or not current.get("enabled", True):
                return
        except UNREADABLE as exc:  # damaged since the tick read it
            log.error("%s", unreadable(entry.name, exc))
            return
        try:
            # a console firing it too (schedule run) has it a moment: a skip, not a stall of
            # every schedule after it in this tick. RedBeat moves the schedule's next time
            # first (a firing that fails is not repeated), once the schedule is this beat's:
            # a remove meanwhile is not undone by that write
            job = self.schedules.fire(
                str(entry.name),
                dict(entry.kwargs),
                wait=BEAT_LOCK_WAIT,
                before=(lambda: self._reserve_once(entry)) if advance else None,
            )
        except ScheduleNotFoundError:
            log.info("schedule %s: removed or disabled meanwhile, not fired", entry.name)
            return
        except FiredElsewhere:
            log.warning(
                "schedule %s: not fired: another beat fired this time already (this one "
                "stalled after its lock check), or it changed meanwhile",
                entry.name,
            )
            return
        except Exception as exc:  # one schedule's trouble must not stop the others
            log.error("schedule %s: the firing failed: %s", entry.name, exc)
            return
        if job is None:
            log.info("schedule %s: skipped, its previous run is unfinished", entry.name)
        elif job.info.state is JobState.FAILED:
            log.warning("schedule %s: run %s Failed: %s", entry.name, job.id, job.reason)
        else:
            log.info("schedule %s: started run %s on %s", entry.name, job.id, job.location)

    def _reserve_once(self, entry: Any) -> None:
        """RedBeat's move of the schedule's next time, once per due time: a beat that stalled
        between its lock check and this firing (paused, its Redis slow) while a standby took
        over and fired finds the run count moved since it read the entry, and fires nothing.
        The check and the write are one transaction (WATCH on the schedule's key), however
        long the stall, the schedule's lock or none (a busy schedule's skip).

        Raises:
            FiredElsewhere: another beat fired this due time already (or the schedule was
                changed as this one moved it: the next tick reads it again).
        """
        with get_redis(self.app).pipeline() as pipe:
            try:
                pipe.watch(entry.key)
                stored = RedBeatSchedulerEntry.decode_meta(pipe.hget(entry.key, "meta"))
                if stored.get("total_run_count", 0) != entry.total_run_count:
                    raise FiredElsewhere(str(entry.name))
                # RedBeat's _next_instance, its write made only if nothing wrote meanwhile
                nxt = ScheduleEntry._next_instance(entry)  # Celery's: it writes nothing
                meta = {"last_run_at": nxt.last_run_at, "total_run_count": nxt.total_run_count}
                pipe.multi()
                pipe.hset(entry.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
                pipe.zadd(self.app.redbeat_conf.schedule_key, {entry.key: nxt.score})
                pipe.execute()
            except redis.exceptions.WatchError:
                raise FiredElsewhere(str(entry.name)) from None

    def _still_mine(self) -> bool:
        """Extend the lock before each firing: RedBeat extends it once per tick, so a beat that
        stalled mid-tick (Redis or the network paused) must not fire entries it loaded before
        a standby took over; and a long tick keeps the lock while it fires."""
        if self.lock is None:
            return True  # a scheduler run without a lock (not the beat's way)
        try:
            self.lock.extend(int(self.lock_timeout))
        except redis.exceptions.LockError:
            return False
        return True


def run_beat(config: Config) -> int:
    """Run the scheduler in the foreground until SIGINT or SIGTERM. Returns the exit code."""
    if config.beat_lock_timeout < 1:
        raise ConfigError(  # RedBeat extends its lock by whole seconds
            f"beat_lock_timeout must be at least 1 s, got {config.beat_lock_timeout:g}"
        )
    if config.beat_lock_timeout <= config.beat_interval:
        raise ConfigError(
            f"beat_lock_timeout ({config.beat_lock_timeout:g} s) must be longer than "
            f"beat_interval ({config.beat_interval:g} s), or a live beat would lose its lock"
        )
    with Fleet(config=config) as fleet:
        fleet.store.ping()
        app = redbeat_app(config, fleet.registry.r)
        schedules = Schedules(fleet, app)
        scheduler = FleetScheduler(
            app,
            schedules=schedules,
            max_interval=config.beat_interval,
            lock_timeout=config.beat_lock_timeout,
        )
        stopping: list[bool] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stopping.append(True)
            if not scheduler.busy or len(stopping) > 1:
                # idle: stop now; mid-tick: once the tick is done, or at a second signal
                raise _Shutdown

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        log.info(
            "beat: fleet %s, prefix %s; schedules due are checked at least every %g s",
            config.safe_url,
            config.prefix,
            config.beat_interval,
        )
        try:
            _loop(scheduler, config, stopping)
        except _Shutdown:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                scheduler.close()  # releases the lock: a standby beat takes over at once
            except (redis.exceptions.RedisError, RedisUnavailableError) as exc:
                log.warning("beat: could not release the lock: %s", exc)
        log.info("beat: stopped")
    return 0


def _loop(scheduler: FleetScheduler, config: Config, stopping: list[bool]) -> None:
    while not stopping:
        try:
            if scheduler.lock is None:
                log.info(
                    "beat: taking the schedule lock (a standby waits while another beat holds it)"
                )
                # RedBeat's own lock, tried every beat_interval seconds
                acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=scheduler))
            wait = scheduler.tick()
        except redis.exceptions.LockError:
            log.warning("beat: lost the schedule lock; another beat may have taken over")
            scheduler.lock = None
            continue
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning(
                "beat: cannot reach Redis at %s: %s; retrying",
                config.safe_url,
                str(exc).rstrip("."),
            )
            wait = config.beat_interval
        except RedisUnavailableError as exc:
            log.warning("beat: %s; retrying", exc)
            wait = config.beat_interval
        except Exception as exc:  # keep firing the other schedules; say what went wrong
            log.error("beat: %s: %s", type(exc).__name__, exc)
            wait = config.beat_interval
        if not stopping:
            time.sleep(max(0.0, wait))


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="[%(asctime)s: %(levelname)s] %(message)s",
    )
