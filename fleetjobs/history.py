"""History: finding past jobs by action, location, time and failure, from indexes.

A start adds its parent's id to indexes (:mod:`fleetjobs.indexes`, bucketed sorted sets)
scored by its creation time: ``top`` (every job), ``action:<action>`` and ``loc:<location>``
(each host it has a child on); the scripts add a job that ends Failed to ``failed``. A query
reads the index with the fewest buckets of those it needs, over the time range asked, and
checks its ids against the others (``ZMSCORE``, in the bucket each id is in): ``get --action
archive_logs --since 1d`` reads that action's jobs, whatever else is stored. Removal and
retention take a job out of every index (retention: of a job whose record is gone, which it
cannot read, out of the list of jobs, of ends and of failures only).
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from .errors import ArgumentError
from .indexes import Indexes
from .keys import IX_ACTION, IX_FAILED, IX_LOCATION, IX_TOP
from .store import Store, guarded

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time from ``2h`` / ``30m`` / ``1d`` ago or an ISO date (``2026-11-28T22:00``,
    local time unless it names its zone), as Unix seconds.

    Raises:
        ArgumentError: neither, with the text in the message.
    """
    found = _AGO.match(text)
    if found:
        return (time.time() if now is None else now) - float(found.group(1)) * _UNIT[found.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ArgumentError(
            f"time {text!r} is neither an age (30m, 2h, 1d, 1w) nor an ISO date (2026-11-28T22:00)"
        ) from None
    return when.timestamp() if when.tzinfo else when.astimezone().timestamp()


class History:
    """Queries over one fleet's history indexes (reads only).

    Args:
        store: the fleet's Redis (client, keys).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.indexes = Indexes(store)

    @guarded
    def find(
        self,
        action: str | None = None,
        location: str | None = None,
        since: float | None = None,
        until: float | None = None,
        failed: bool = False,
    ) -> list[int]:
        """Top-level ids matching every filter given, oldest first.

        Args:
            action: the action's name (a glob matches several).
            location: a host the job had a child on (a glob matches several).
            since, until: creation time bounds, Unix seconds, inclusive.
            failed: only jobs that ended Failed.
        """
        ix = self.indexes
        filters: list[list[str]] = []  # each: the families a job must be in one of
        if action is not None:
            filters.append(ix.families(IX_ACTION, action))
        if location is not None:
            filters.append(ix.families(IX_LOCATION, location))
        if failed:
            filters.append([IX_FAILED])
        if not filters:
            filters.append([IX_TOP])
        if any(not f for f in filters):
            return []
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        # the one with fewest buckets reaching the range is read; the others are asked about
        # its ids, each in its own bucket
        filters.sort(key=lambda families: ix.size(families, low))
        found = ix.scored(filters[0], low, high)
        for families in filters[1:]:
            if not found:
                break
            keep = ix.having(found, families)
            found = {j: v for j, v in found.items() if j in keep}
        return sorted(found, key=lambda j: (found[j][0], j))
