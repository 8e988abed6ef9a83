"""Routing: the one place that maps a location (a host's name) to its Celery queue and back.

A worker serving ``web01`` consumes exactly the queue ``fleetjobs.loc.web01``; a job for ``web01``
is published there and nowhere else, so the Location column is where the job really ran.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from .errors import NoHostError

QUEUE_PREFIX = "fleetjobs.loc."
TASK_NAME = "fleetjobs.job"
# kombu's Redis transport keeps each reserved, unacknowledged message here (under the prefix):
# delivery tag -> [message, exchange, routing key], and their lease starts in the index
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
_LOCATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GLOB_CHARS = set("*?[")


def check_location(location: str) -> str:
    """``location`` if it is a valid host name for a queue.

    Raises:
        NoHostError: it is empty or has characters a queue name must not carry.
    """
    if not _LOCATION_RE.match(location):
        raise NoHostError(
            f"invalid location {location!r}: use letters, digits, '.', '_' and '-' "
            "(a host name), at most 128 characters"
        )
    return location


def queue_for(location: str) -> str:
    """The Celery queue a location's worker consumes."""
    return QUEUE_PREFIX + check_location(location)


def location_of(queue: str) -> str | None:
    """The location a queue belongs to, or None for a queue that is not a location's."""
    return queue[len(QUEUE_PREFIX) :] if queue.startswith(QUEUE_PREFIX) else None


def is_glob(pattern: str) -> bool:
    """Whether a location names many hosts (``web*``, ``db?``, ``app[12]``)."""
    return bool(_GLOB_CHARS & set(pattern))


def split_locations(values: Iterable[str]) -> list[str]:
    """Locations from repeated and comma-separated values, in order, without duplicates."""
    seen: dict[str, None] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                seen.setdefault(item, None)
    return list(seen)


def named_locations(given: Sequence[str]) -> list[str]:
    """:func:`split_locations` of what a caller passed as locations, refusing values that
    name none (``''``, ``','``): a location was asked for, and this machine's default is not
    what was meant."""
    named = split_locations(given)
    if given and not named:
        raise NoHostError(f"no location named in {', '.join(map(repr, given))}")
    return named


def select_locations(
    wanted: Sequence[str],
    known: Iterable[str],
    tags: dict[str, dict[str, str]] | None = None,
    target: Sequence[str] = (),
) -> list[str]:
    """Resolve locations, globs and ``key=value`` tag targets against the hosts the fleet knows.

    A plain name is taken as it is even when no worker serves it yet (its job waits as
    NotStarted); a glob or a tag target must match at least one known host.

    Args:
        wanted: names and globs, in the order the caller gave them.
        known: every location that has heartbeated (online ones, for ``--all`` and globs).
        tags: each known location's tags.
        target: ``key=value`` selectors; a host must carry all of them.

    Raises:
        NoHostError: a glob or target that matched nothing, naming it.
    """
    known_list = sorted(set(known))
    chosen: dict[str, None] = {}
    for pattern in wanted:
        if is_glob(pattern):
            hits = fnmatch.filter(known_list, pattern)
            if not hits:
                raise NoHostError(f"location {pattern!r} matched no online host")
            chosen.update(dict.fromkeys(hits))
        else:
            chosen[check_location(pattern)] = None
    if target:
        selectors = []
        for item in target:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise NoHostError(f"target {item!r} is not of the form key=value")
            selectors.append((key, value))
        tags = tags or {}
        hits = [
            loc for loc in known_list if all(tags.get(loc, {}).get(k) == v for k, v in selectors)
        ]
        if not hits:
            raise NoHostError(f"target {' '.join(target)!r} matched no online host")
        chosen.update(dict.fromkeys(hits))
    return list(chosen)
