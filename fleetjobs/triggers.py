"""Triggers: when a schedule fires, and how that time lives in RedBeat.

A trigger is what a person typed (``--cron "0 3 * * *"``, ``--every 10m``, ``--at
2026-12-01T03:00``) and the time zone it is read in. It becomes the Celery schedule that RedBeat
stores in Redis: a crontab read in the trigger's own time zone, a fixed interval, or RedBeat's
rrule with a single occurrence. :class:`FleetEntry` is RedBeat's entry that keeps the time zone:
RedBeat stores a crontab without one, so the zone travels in the entry's kwargs and the entry
puts it back whenever it is loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import ParseException, crontab, schedule
from celery.utils.time import ffwd
from redbeat.schedulers import RedBeatSchedulerEntry
from redbeat.schedules import rrule

from .errors import BadTriggerError
from .options import MAX_SECONDS

KINDS = ("cron", "every", "at")
# the crontab(5) nicknames Celery's parser does not know
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Trigger:
    """When a schedule fires.

    Attributes:
        kind: ``cron``, ``every`` or ``at``.
        value: the cron expression, the interval in seconds, or the instant (ISO 8601 with its
            offset) of a one-shot trigger.
        timezone: the IANA zone a cron expression (and a naive ``--at``) is read in.
    """

    kind: str
    value: str
    timezone: str = "UTC"

    @property
    def text(self) -> str:
        """The trigger as the Trigger column shows it."""
        if self.kind == "cron":
            return f"cron {self.value} ({self.timezone})"
        if self.kind == "every":
            return f"every {_human(float(self.value))}"
        at = datetime.fromisoformat(self.value).astimezone(ZoneInfo(self.timezone))
        return f"at {at.strftime('%Y-%m-%d %H:%M:%S')} ({self.timezone})"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "timezone": self.timezone}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trigger:
        return cls(str(data["kind"]), str(data["value"]), str(data.get("timezone") or "UTC"))


def parse_trigger(
    cron: str | None = None,
    every: str | float | timedelta | None = None,
    at: str | datetime | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
) -> Trigger:
    """The one trigger of ``cron``, ``every`` and ``at``, checked.

    Args:
        cron: five crontab fields (minute hour day-of-month month day-of-week) or a nickname
            (``@daily``); read in ``timezone``.
        every: an interval: seconds, a timedelta, or a number with s, m, h or d (``10m``);
            at least 1 s.
        at: a one-shot instant, ISO 8601; without an offset it is read in ``timezone``.
        timezone: an IANA zone name (``Europe/Berlin``); default UTC.

    Raises:
        BadTriggerError: none or several given, or one that cannot work; one line saying why.
    """
    given = [k for k, v in (("cron", cron), ("every", every), ("at", at)) if v is not None]
    if len(given) != 1:
        raise BadTriggerError("give exactly one trigger: --cron, --every or --at")
    for what, value, kinds in (
        ("cron", cron, (str,)),
        ("at", at, (str, datetime)),
        ("timezone", timezone, (str,)),
    ):
        if value is not None and not isinstance(value, kinds):
            raise BadTriggerError(
                f"{what} must be {' or a '.join(k.__name__ for k in kinds)}, got {value!r}"
            )
    zone_name = timezone or "UTC"
    zone = _zone(zone_name)
    if cron is not None:
        text = " ".join(_MACROS.get(cron.strip().lower(), cron).split())
        check_cron(text)
        cron_schedule(text, zone_name)
        return Trigger("cron", text, zone_name)
    if every is not None:
        seconds = _seconds(every)
        return Trigger("every", _num(seconds), zone_name)
    assert at is not None
    when = _instant(at, zone)
    if when <= (now or datetime.now(UTC)):
        raise BadTriggerError(f"--at {when.isoformat()} is in the past")
    return Trigger("at", when.isoformat(), zone_name)


SKIP_START_TIMEOUT_MIN = 60.0  # seconds: the least a skip schedule's run waits for its host


def skip_start_timeout(trigger: Trigger, now: datetime) -> float | None:
    """The start timeout of a run of a schedule whose overlap is ``skip`` and that gives
    none: the time to its next firing (at least :data:`SKIP_START_TIMEOUT_MIN`), so that a
    run one host cannot start (its worker down, a location misspelt) fails before the next
    firing is due instead of holding every host's next runs for ever. None for a one-shot."""
    if trigger.kind == "every":
        return max(SKIP_START_TIMEOUT_MIN, float(trigger.value))
    if trigger.kind == "cron":
        made = cron_schedule(trigger.value, trigger.timezone)
        made.nowfun = lambda: now
        left = made.remaining_estimate(now).total_seconds()
        return max(SKIP_START_TIMEOUT_MIN, left)
    return None


def run_start_timeout(spec: dict[str, Any]) -> float | None:
    """A schedule's run's start timeout: its own (``spec``: the schedule's definition), or
    for an overlap ``skip`` schedule that gives none, :func:`skip_start_timeout`."""
    given = spec.get("start_timeout")
    if given is not None or spec.get("overlap") != "skip" or not spec.get("trigger"):
        return float(given) if given is not None else None
    return skip_start_timeout(Trigger.from_dict(spec["trigger"]), datetime.now(UTC))


def celery_schedule(trigger: Trigger) -> Any:
    """The Celery schedule RedBeat stores for ``trigger``."""
    if trigger.kind == "cron":
        return cron_schedule(trigger.value, trigger.timezone)
    if trigger.kind == "every":
        return schedule(run_every=timedelta(seconds=float(trigger.value)))
    # a one-shot: an rrule whose only occurrence is the instant (rrule.after() is then None)
    return rrule("MINUTELY", dtstart=datetime.fromisoformat(trigger.value), count=1)


class ZonedCrontab(crontab):  # type: ignore[misc]
    """A crontab read in its own time zone rather than the Celery app's; with ``either``,
    one whose day of month and day of week are both restricted, due on a day that matches
    either, as crontab(5) reads it (Celery's crontab asks both: ``0 0 1,15 * 1``, "the 1st,
    the 15th and every Monday", fired only on a Monday the 1st or the 15th)."""

    def __init__(self, zone: str, either: bool = False, **fields: Any) -> None:
        self.zone = zone
        super().__init__(**fields)
        # the two crontabs whose union this is: the days of month, and the days of week
        self.either: tuple[ZonedCrontab, ZonedCrontab] | None = None
        if either:
            self.either = (
                ZonedCrontab(zone, **{**fields, "day_of_week": "*"}),
                ZonedCrontab(zone, **{**fields, "day_of_month": "*"}),
            )

    @property
    def tz(self) -> Any:
        return ZoneInfo(self.zone)

    def remaining_estimate(self, last_run_at: datetime, ffwd: Any = ffwd) -> timedelta:
        if self.either is None:
            left: timedelta = super().remaining_estimate(last_run_at, ffwd)
            return left
        for part in self.either:  # the same clock and app as this one (a beat sets them)
            part.nowfun, part._app = self.nowfun, self._app
        return min(part.remaining_estimate(last_run_at, ffwd) for part in self.either)


def cron_schedule(expression: str, zone: str) -> ZonedCrontab:
    """A crontab from five fields, minute hour day-of-month month day-of-week.

    Raises:
        BadTriggerError: not five fields, or a field Celery's crontab parser refuses.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise BadTriggerError(
            f"bad cron expression {expression!r}: five fields are needed "
            "(minute hour day-of-month month day-of-week), or @hourly, @daily, @weekly, ..."
        )
    minute, hour, dom, month, dow = fields
    # crontab(5): "If both fields are restricted (i.e., don't start with *), the command will
    # be run when either field matches the current time"
    either = not dom.startswith("*") and not dow.startswith("*")
    dow = _sunday_is_0(dow)
    try:
        made = ZonedCrontab(
            zone,
            either,
            minute=minute,
            hour=hour,
            day_of_month=dom,
            month_of_year=month,
            day_of_week=dow,
        )
        made.remaining_estimate(datetime.now(UTC))
    except (ValueError, ParseException, IndexError, KeyError) as exc:
        raise BadTriggerError(f"bad cron expression {expression!r}: {exc}") from None
    return made


_DOW_ITEM = re.compile(r"(\d+)(?:-(\d+))?(?:/(\d+))?")
# each field's name and bounds as crontab(5) has them (day of week: 0 and 7 are Sunday)
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def check_cron(expression: str) -> None:
    """Refuse what crontab(5) refuses and Celery's parser reads its own way, when a schedule
    is made (one stored already is read as it was: a beat must not fail on it).

    Raises:
        BadTriggerError: a field out of its bounds, or a range that runs backwards.
    """
    fields = expression.split()
    for text, (what, low, high) in zip(fields, _CRON_FIELDS, strict=False):
        problem = _field_problem(text, what, low, high)
        if problem:
            raise BadTriggerError(f"bad cron expression {expression!r}: {problem}")


def _field_problem(text: str, what: str, low: int, high: int) -> str | None:
    """Why a cron field's numbers cannot be crontab(5)'s: one out of its bounds, or a range
    that runs backwards (Celery's parser read 1-0 as every minute, wrapping round)."""
    for item in text.split(","):
        m = _DOW_ITEM.fullmatch(item)  # n, n-m, n/step, n-m/step
        if m is None:
            continue  # *, */n, names (jan, mon): Celery's parser says what is wrong with them
        first, last = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        for n in (first, last):
            if n is not None and not low <= n <= high:
                sunday = " (0 and 7 are Sunday)" if what == "day of week" else ""
                return f"{what} {n} is out of {low}-{high}{sunday}"
        if last is not None and last < first:
            top = 6 if what == "day of week" else high  # 7 is Sunday, which 0 names already
            head = f"{first}-{top}" if top > first else str(first)
            tail = f"{low}-{last}" if last > low else str(low)
            return (
                f"the {what} range {first}-{last} runs backwards (Celery's reading of it wraps "
                f"round; crontab(5) refuses it: write {head},{tail})"
            )
    return None


def _sunday_is_0(dow: str) -> str:
    """crontab(5)'s day of week, where 7 is Sunday too (``0 3 * * 7``, ``1-7``), as Celery's
    parser takes it (0-6): items that reach 7 are spelled out, 7 as 0."""
    items = []
    for item in dow.split(","):
        m = _DOW_ITEM.fullmatch(item)
        first, last, step = (int(g) if g else None for g in m.groups()) if m else (None,) * 3
        if first is None or max(first, last or first) != 7 or (step is not None and not last):
            items.append(item)  # names, *, */2, or no 7: as written
            continue
        days = range(first, (last if last is not None else first) + 1, step or 1)
        items.extend(str(d % 7) for d in days)
    return ",".join(items)


OVERLAP = ("skip", "parallel", "stop-existing")


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse a schedule's definition (its entry's kwargs) that a firing could not use, as
    reading it: one damaged by hand fires no more, where it started its run and then failed
    on a field it reads after (a max_results of "abc", locations of 5).

    Raises:
        ValueError: naming the field (the beat says it once; the verbs refuse the schedule).
    """

    def bad(field: str, want: str) -> ValueError:
        return ValueError(f"its {field} must be {want}, not {spec.get(field)!r}"[:300])

    def whole(v: Any) -> bool:  # (a float with no fraction: as an older version stored it)
        return isinstance(v, int | float) and not isinstance(v, bool) and v >= 1 and v == int(v)

    def seconds(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v > 0)

    checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
        ("action", lambda v: isinstance(v, str) and v != "", "an action's name"),
        ("args", lambda v: isinstance(v, list), "a list"),
        ("kwargs", lambda v: isinstance(v, dict), "a dict"),
        ("locations", _texts, "a list of text"),
        ("target", _texts, "a list of text"),
        ("all", lambda v: isinstance(v, bool | int), "true or false"),
        ("throttle_limit", whole, "a whole number from 1"),
        ("start_timeout", seconds, "a number of seconds or none"),
        ("timeout", seconds, "a number of seconds or none"),
        ("max_results", whole, "a whole number from 1"),
        ("overlap", lambda v: v in OVERLAP, "one of " + ", ".join(OVERLAP)),
        ("trigger", lambda v: isinstance(v, dict) and v.get("kind") in KINDS, "a trigger"),
    )
    for field, ok, want in checks:
        if field not in spec:
            raise ValueError(f"it has no {field}")
        if not ok(spec[field]):
            raise bad(field, want)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class FleetEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """RedBeat's entry, with a crontab read in the time zone kept in its kwargs, which must
    be a definition a firing can use (:func:`check_spec`)."""

    def __init__(
        self,
        name: str | None = None,
        task: str | None = None,
        schedule: Any = None,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        enabled: bool = True,
        options: dict[str, Any] | None = None,
        **clsargs: Any,
    ) -> None:
        if kwargs is not None:
            check_spec(kwargs)
        trigger = (kwargs or {}).get("trigger")
        if isinstance(schedule, crontab) and not isinstance(schedule, ZonedCrontab) and trigger:
            schedule = cron_schedule(trigger["value"], trigger.get("timezone") or "UTC")
        super().__init__(name, task, schedule, args, kwargs, enabled, options, **clsargs)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTriggerError(
            f"unknown time zone {name!r} (use an IANA name: Europe/Berlin)"
        ) from None


def _seconds(every: str | float | timedelta) -> float:
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, (int, float)) and not isinstance(every, bool):
        seconds = float(every)
    elif not isinstance(every, str):
        raise BadTriggerError(f"bad interval {every!r}: seconds, or text like 30s, 10m, 2h, 1d")
    else:
        match = _EVERY_RE.match(every)
        if not match:
            raise BadTriggerError(
                f"bad interval {every!r}: a number with s, m, h or d (30s, 10m, 2h, 1d)"
            )
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds):
        raise BadTriggerError(f"interval {every!r} is not a finite number of seconds")
    if seconds < 1:
        raise BadTriggerError(f"interval {every!r} is under a second")
    if seconds > MAX_SECONDS:
        raise BadTriggerError(f"interval {every!r} is over {MAX_SECONDS:.0f} s (some 31 years)")
    return seconds


def _instant(at: str | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(at, datetime):
        when = at
    else:
        try:
            when = datetime.fromisoformat(at.strip())
        except ValueError:
            raise BadTriggerError(
                f"bad --at time {at!r}: use ISO 8601 (2026-12-01T03:00)"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    try:
        when.astimezone(UTC)  # the schedule is kept in UTC: 9999-12-31T23:59-12:00 is not
    except OverflowError:
        raise BadTriggerError(f"--at {when.isoformat()} is past the year 9999 in UTC") from None
    return when


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{_num(seconds)}s"
