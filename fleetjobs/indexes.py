"""The history indexes, read: Get-Job's list of top-level jobs, and the jobs by action, host,
failure and end, each family cut into buckets of 128 jobs (``keys.py``: ``ix:<b>:<family>``,
listed by ``ixdir:<family>``).

One sorted set per family cost Redis some 100 B a job in each (a skiplist node, a dict entry
and the member); a bucket of at most 128 members is a listpack, some 30 B a member. A job's
bucket is its ordinal's (``tseq``, counted by the start that makes it; ``ix`` on its hash),
the same in every family, so a job found in one family is looked up in another in its own
bucket. The scripts write them (``common.lua``: ``ix_add``, ``ix_rem``); this module reads
them, and moves the jobs of a fleet an older version indexed into them (:meth:`migrate`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .keys import IX_ENDED, IX_TOP
from .routing import is_glob
from .store import Store, guarded

MIGRATE_BATCH = 50  # an older version's jobs moved per script run (a fan-out reads its hosts)


class Indexes:
    """Reads of one fleet's history indexes.

    Args:
        store: the fleet's Redis (client, keys, scripts).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r: Any = store.r

    @guarded
    def ids(
        self, family: str = IX_TOP, newest_first: bool = False, batch: int = 500
    ) -> Iterator[int]:
        """Every id in a family, oldest bucket first (or newest), by Id within a bucket.

        Read whole buckets, at least ``batch`` ids a round trip; each read goes on from the
        last bucket read, not from a position: jobs removed meanwhile shift nothing.
        """
        after = ""
        while True:
            last, *buckets = self.store.scripts(
                "topids", family, "1" if newest_first else "0", after, batch
            )
            for members in buckets:
                yield from sorted((int(m) for m in members), reverse=newest_first)
            if last is None:
                return
            after = str(last)

    @guarded
    def families(self, kind: str, pattern: str) -> list[str]:
        """The families of ``kind`` (:data:`IX_ACTION`, :data:`IX_LOCATION`) whose name is
        ``pattern``, or matches it when it is a glob."""
        if not is_glob(pattern):
            return [kind + pattern]
        base = self.keys.ixdir(kind)
        found = self.r.scan_iter(match=base + "*", count=1000)
        return sorted(
            kind + k[len(base) :] for k in found if fnmatch.fnmatchcase(k[len(base) :], pattern)
        )

    @guarded
    def size(self, families: Iterable[str]) -> int:
        """How many buckets these families have: what a query reading them costs."""
        pipe = self.r.pipeline(transaction=False)
        for family in families:
            pipe.zcard(self.keys.ixdir(family))
        return sum(pipe.execute())

    @guarded
    def scored(self, families: Sequence[str], low: str, high: str) -> dict[int, tuple[float, int]]:
        """The ids in any of these families scored from ``low`` to ``high`` (Redis's range
        syntax), each with its score and its bucket."""
        pipe = self.r.pipeline(transaction=False)
        for family in families:
            pipe.zrange(self.keys.ixdir(family), 0, -1)
        wanted = [
            (int(b), f) for f, found in zip(families, pipe.execute(), strict=True) for b in found
        ]
        out: dict[int, tuple[float, int]] = {}
        for at in range(0, len(wanted), 1000):
            part = wanted[at : at + 1000]
            pipe = self.r.pipeline(transaction=False)
            for bucket, family in part:
                pipe.zrangebyscore(self.keys.ix(bucket, family), low, high, withscores=True)
            for (bucket, _), rows in zip(part, pipe.execute(), strict=True):
                out.update((int(m), (float(s), bucket)) for m, s in rows)
        return out

    @guarded
    def having(self, found: dict[int, tuple[float, int]], families: Sequence[str]) -> set[int]:
        """Those of ``found`` (id -> score, bucket: :meth:`scored`'s) in any of these families."""
        by_bucket: dict[int, list[int]] = {}
        for job_id, (_, bucket) in found.items():
            by_bucket.setdefault(bucket, []).append(job_id)
        keep: set[int] = set()
        asks = [(b, ids, f) for b, ids in by_bucket.items() for f in families]
        for at in range(0, len(asks), 1000):
            part = asks[at : at + 1000]
            pipe = self.r.pipeline(transaction=False)
            for bucket, ids, family in part:
                pipe.zmscore(self.keys.ix(bucket, family), ids)
            for (_, ids, _), scores in zip(part, pipe.execute(), strict=True):
                keep.update(j for j, s in zip(ids, scores, strict=True) if s is not None)
        return keep

    @guarded
    def ended_before(self, cutoff: float, limit: int) -> list[int]:
        """Up to ``limit`` top-level ids that finished before ``cutoff`` (Unix seconds).

        One round trip when none has (the directory is scored by each bucket's earliest
        end); an older version's indexes, when there are any, are moved into buckets first.
        """
        pipe = self.r.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.ixdir(IX_ENDED), "-inf", cutoff, start=0, num=limit)
        pipe.exists(self.keys.jobs)
        due, legacy = pipe.execute()
        if legacy:
            self.migrate()
            due = self.r.zrangebyscore(
                self.keys.ixdir(IX_ENDED), "-inf", cutoff, start=0, num=limit
            )
        if not due:
            return []
        pipe = self.r.pipeline(transaction=False)
        for bucket in due:
            pipe.zrangebyscore(
                self.keys.ix(int(bucket), IX_ENDED), "-inf", cutoff, start=0, num=limit
            )
        out = [int(m) for rows in pipe.execute() for m in rows]
        return out[:limit]

    @guarded
    def migrate(self) -> int:
        """Move every job an older version (0.2) indexed into buckets, and drop its indexes
        once empty; returns how many jobs were moved. Each job moves whole, in one script."""
        left = int(self.r.zcard(self.keys.jobs))
        moved = left
        while left:
            left = int(self.store.scripts("migrate", MIGRATE_BATCH))
        # what the old indexes still hold names no job left in them (a damaged record)
        stale = [self.keys.created, self.keys.ended, self.keys.failed]
        for pattern in (self.keys.by_action("*"), self.keys.by_location("*")):
            stale += self.r.scan_iter(match=pattern, count=1000)
        if stale:
            self.r.delete(*stale)
        return moved
