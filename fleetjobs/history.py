"""History: finding past jobs by action, location, time and failure, from indexes.

A start adds its parent's id to sorted sets scored by its creation time: ``created`` (every
job), ``by-action:<action>`` and ``by-loc:<location>`` (each host it has a child on); the
scripts add a job that ends Failed to ``failed``. A query reads the smallest of the indexes it
needs, over the time range asked, and checks its ids against the others (``ZMSCORE``, in
batches): ``get --action archive_logs --since 1d`` reads that action's jobs of the last day,
whatever else is stored. Removal and retention take a job out of every index.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Sequence
from datetime import datetime

from .errors import ArgumentError
from .routing import is_glob
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
        self.keys = store.keys
        self.r = store.r

    def _index_keys(self, prefix_key: str, pattern: str) -> list[str]:
        if not is_glob(pattern):
            return [prefix_key + pattern]
        found = self.r.scan_iter(match=prefix_key + "*", count=1000)
        return sorted(k for k in found if fnmatch.fnmatchcase(k[len(prefix_key) :], pattern))

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
        filters: list[list[str]] = []
        if action is not None:
            filters.append(self._index_keys(self.keys.by_action(""), action))
        if location is not None:
            filters.append(self._index_keys(self.keys.by_location(""), location))
        if failed:
            filters.append([self.keys.failed])
        if not filters:
            filters.append([self.keys.created])
        if any(not f for f in filters):
            return []
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        pipe = self.r.pipeline(transaction=False)
        for keys in filters:
            for key in keys:
                pipe.zcount(key, low, high)
        counts = pipe.execute()
        sizes, i = [], 0
        for keys in filters:
            sizes.append(sum(counts[i : i + len(keys)]))
            i += len(keys)
        order = sorted(range(len(filters)), key=lambda j: sizes[j])
        smallest, others = filters[order[0]], [filters[j] for j in order[1:]]
        pipe = self.r.pipeline(transaction=False)
        for key in smallest:
            pipe.zrangebyscore(key, low, high, withscores=True)
        scored: dict[int, float] = {}
        for rows in pipe.execute():
            scored.update((int(m), float(s)) for m, s in rows)
        ids = list(scored)
        for keys in others:
            ids = self._members(ids, keys)
            if not ids:
                return []
        return sorted(ids, key=lambda j: (scored[j], j))

    def _members(self, ids: Sequence[int], keys: Sequence[str], batch: int = 5000) -> list[int]:
        """The ids that are in any of these sorted sets."""
        keep: set[int] = set()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                pipe.zmscore(key, chunk)
            for scores in pipe.execute():
                keep.update(j for j, s in zip(chunk, scores, strict=True) if s is not None)
        return [j for j in ids if j in keep]
