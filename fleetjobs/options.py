"""The options of a start, checked before anything is queued: counts, durations, lists.

A value a job's record cannot hold (a fraction of a host, a NaN of seconds, a string where a
list goes) is refused with an :class:`~fleetjobs.errors.ArgumentError` naming it, from the
Python API and the command line alike: once stored, a bad value would fail later, on a
worker or in every console that reads the job.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeGuard

from .errors import ArgumentError

# the longest duration anything takes, in seconds (some 31 years): beyond it a deadline is
# past what Redis's scores and Python's dates hold exactly
MAX_SECONDS = 1e9


def count(what: str, value: Any, least: int) -> int:
    """``value`` as an int if it is a whole number of at least ``least`` (True is no count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{what} must be a whole number, got {value!r}")
    if value < least:
        raise ArgumentError(f"{what} must be at least {least}, got {value}")
    return int(value)


def seconds(what: str, value: Any, zero: bool = False) -> float | None:
    """``value`` as seconds (None stays None): a finite number, above 0 (or 0, with ``zero``),
    at most :data:`MAX_SECONDS`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise ArgumentError(f"{what} must be a number of seconds, got {value!r}")
    value = float(value)  # a Decimal, a Fraction
    if not math.isfinite(value):
        raise ArgumentError(f"{what} must be a finite number of seconds, got {value}")
    if value < 0 or (value == 0 and not zero):
        must = "must not be negative" if zero else "must be positive"
        raise ArgumentError(f"{what} {must}, got {value}")
    if value > MAX_SECONDS:
        raise ArgumentError(f"{what} must be at most {MAX_SECONDS:.0f} seconds, got {value}")
    return float(value)


def texts(what: str, value: Any) -> list[str]:
    """A list of strings from one string or an iterable of strings (a string is one item, not
    its characters)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        raise ArgumentError(f"{what} must be text or a list of text, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ArgumentError(f"{what} must be text or a list of text, got {item!r} in it")
    return items


def durations(**values: Any) -> list[float | None]:
    """:func:`seconds` of each (named by its keyword, ``start_timeout`` as "start timeout")."""
    return [seconds(name.replace("_", " "), value) for name, value in values.items()]


def flags(**values: Any) -> None:
    """Each a bool: ``all_hosts="no"`` would select every host."""
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ArgumentError(f"{name} must be True or False, got {value!r}")


def mapping(what: str, value: Any) -> dict[str, Any]:
    """``value`` as a dict of keyword arguments (None: none)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ArgumentError(f"{what} must be a dict of keyword arguments, got {value!r}")
    return value


def filters(newest: Any = None, **texts: Any) -> None:
    """A listing's filters: each text or None; ``newest`` a count of at least 1, or None."""
    for name, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise ArgumentError(f"{name} must be text, got {value!r}")
    if newest is not None:
        count("newest", newest, 1)


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is a number as JSON carries one: an int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# the last second a datetime can show (9999-12-31 23:59:59 UTC)
LAST_TIME = 253402300799.0


def is_time(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is a Unix time a datetime can show: a finite number from 0 to the
    year 9999 (what Redis holds may have been written by anyone with its credential)."""
    return is_number(value) and 0 <= value <= LAST_TIME  # NaN fails both comparisons


def instant(value: Any) -> float | None:
    """A point in time as Unix seconds (None stays None): a finite number, or a datetime
    (local time when it names no zone)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    real = isinstance(value, (numbers.Real, Decimal)) and not isinstance(value, bool)
    if not real or not math.isfinite(float(value)):
        raise ArgumentError(
            f"a time is Unix seconds, a datetime or text (2h, 2026-11-28T22:00), got {value!r}"
        )
    return float(value)
