"""The history indexes, read: Get-Job's list of top-level jobs, and the jobs by action, host,
failure and end, each family cut into buckets of 128 jobs (``keys.py``: ``ix:<b>:<family>``,
listed by ``ixdir:<family>``; ``ixorder`` lists ``top``'s in order).

One sorted set per family cost Redis some 95 B a job in each (a skiplist node, a dict entry
and the member, once past 128 members); a bucket of at most 128 is a listpack, some 25 B a
member. A job's bucket is its ordinal's (``tseq``, given with its Id by ``newid.lua``; ``ix``
on its hash), the same in every family, so a job found in one family is looked up in another
in its own bucket. The cost: a family a few jobs in each bucket belong to (one host among
thousands, each job on one) pays a small key per bucket, more than one big sorted set would.
Each family's list scores its buckets by their latest start (``ended``'s: earliest end), so a
query ``--since`` and retention read only the buckets that can hold what they look for.

The scripts write them (``common.lua``: ``ix_add``, ``ix_rem``); this module reads them, and
moves what an older version indexed into them (:meth:`Indexes.migrate`), a slice at a time.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from .errors import RedisUnavailableError, RegistryError
from .keys import IX_ENDED
from .routing import is_glob
from .store import Store, guarded

log = logging.getLogger("fleetjobs")
T = TypeVar("T")

MIGRATE_BATCH = 50  # an older version's jobs moved per script call, at most
MIGRATE_CHILDREN = 2000  # and their children (a fan-out's hosts), but the first job whole
MIGRATE_SLICE = 0.1  # seconds of moving per purge pass of a console (a start, a beat's)
LEGACY_LOOK = 600.0  # seconds between two looks for an older version's indexes


class Indexes:
    """Reads of one fleet's history indexes.

    Args:
        store: the fleet's Redis (client, keys, scripts).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r: Any = store.r
        self._legacy_looked = -float("inf")
        self._migrating = False

    @guarded
    def ids(self, newest_first: bool = False, batch: int = 500) -> Iterator[int]:
        """Every top-level id (Get-Job's list): oldest bucket first (or newest), by Id within
        a bucket.

        Read whole buckets, at least ``batch`` ids a round trip; each read goes on from the
        last bucket read, not from a position: jobs removed meanwhile shift nothing.
        """
        after = ""
        while True:
            last, *buckets = self.store.scripts(
                "topids", "1" if newest_first else "0", after, batch
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
    def size(self, families: Iterable[str], low: str = "-inf") -> int:
        """How many buckets of these families reach ``low`` (a creation time, Redis's range
        syntax): what a query reading them costs."""
        pipe = self.r.pipeline(transaction=False)
        for family in families:
            pipe.zcount(self.keys.ixdir(family), low, "+inf")
        return sum(pipe.execute())

    @guarded
    def scored(self, families: Sequence[str], low: str, high: str) -> dict[int, tuple[float, int]]:
        """The ids in any of these families (scored by creation time) from ``low`` to
        ``high`` (Redis's range syntax), each with its score and its bucket.

        Only the buckets whose latest start reaches ``low`` are read: ``--since 1h`` reads the
        newest few, whatever is stored."""
        pipe = self.r.pipeline(transaction=False)
        for family in families:
            pipe.zrangebyscore(self.keys.ixdir(family), low, "+inf")
        wanted = [
            (int(b), f) for f, found in zip(families, pipe.execute(), strict=True) for b in found
        ]
        out: dict[int, tuple[float, int]] = {}
        for (bucket, _), rows in self._pipelined(
            wanted, lambda pipe, w: pipe.zrangebyscore(self.keys.ix(*w), low, high, withscores=True)
        ):
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
        for (_, ids, _), scores in self._pipelined(
            asks, lambda pipe, a: pipe.zmscore(self.keys.ix(a[0], a[2]), a[1])
        ):
            keep.update(j for j, s in zip(ids, scores, strict=True) if s is not None)
        return keep

    def _pipelined(
        self, items: Sequence[T], ask: Callable[[Any, T], object], size: int = 1000
    ) -> Iterator[tuple[T, Any]]:
        """Each item with Redis's answer to what ``ask`` sends for it on a pipeline, ``size``
        items a round trip."""
        for at in range(0, len(items), size):
            part = items[at : at + size]
            pipe = self.r.pipeline(transaction=False)
            for item in part:
                ask(pipe, item)
            yield from zip(part, pipe.execute(), strict=True)

    @guarded
    def ended_before(self, cutoff: float, limit: int, migrate: bool = True) -> dict[int, int]:
        """Up to ``limit`` top-level ids that finished before ``cutoff`` (Unix seconds), each
        with its bucket.

        One round trip when none has (the directory is scored by each bucket's earliest
        end). With ``migrate``, an older version's indexes, when there are any, are moved into
        buckets a slice (:data:`MIGRATE_SLICE` s) at each call until none is left: looked for
        at this object's first call, then every :data:`LEGACY_LOOK` s (an older worker may
        still write them during an upgrade).
        """

        def due_buckets(client: Any) -> Any:
            return client.zrangebyscore(self.keys.ixdir(IX_ENDED), "-inf", cutoff, 0, limit)

        pipe = self.r.pipeline(transaction=False)
        due_buckets(pipe)
        looks = migrate and time.monotonic() - self._legacy_looked > LEGACY_LOOK
        if looks:  # not at each purge: a worker's idle load (a purge every 10 s) stays as it was
            self._legacy_looked = time.monotonic()
            pipe.exists(self.keys.jobs, self.keys.ended, self.keys.failed)
        due, *legacy = pipe.execute()
        if migrate and (self._migrating or (looks and legacy[0])):
            try:
                self._migrating = self.migrate(MIGRATE_SLICE)[2] > 0
            except RedisUnavailableError:
                raise
            except RegistryError as exc:  # not the start whose purge this is: said, tried again
                self._migrating = False
                log.warning(
                    "moving 0.2's history indexes failed (tried again at the next start, or "
                    "by fleetjobs upgrade): %s",
                    exc,
                )
            due = due_buckets(self.r)
        if not due:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for bucket in due:
            pipe.zrangebyscore(
                self.keys.ix(int(bucket), IX_ENDED), "-inf", cutoff, start=0, num=limit
            )
        out = {int(m): int(b) for b, rows in zip(due, pipe.execute(), strict=True) for m in rows}
        return dict(list(out.items())[:limit])

    @guarded
    def forget(self, gone: dict[int, int]) -> None:
        """Take ids whose record is gone (id -> bucket) out of every index of their bucket
        they can be found in without it (every job, ended, failed): retention would else
        find them first for ever."""
        args = [v for job_id, bucket in gone.items() for v in (job_id, bucket, "", "")]
        if args:
            self.store.scripts("unindex", *args)

    @guarded
    def migrate(self, seconds: float | None = None) -> tuple[int, int, int]:
        """Move what an older version (0.2) indexed into buckets, for up to ``seconds`` (all
        of it: None), a script call of at most :data:`MIGRATE_BATCH` jobs at a time (Redis
        waits on each; a fan-out's children count against its budget). Once every job is
        moved, that version's indexes are dropped. Returns how many of its jobs were moved,
        how many ends and failures its workers wrote for jobs already moved were, and how
        many entries are left (jobs, ends and failures)."""
        before = int(self.r.zcard(self.keys.jobs))
        end = None if seconds is None else time.monotonic() + seconds
        carried = 0
        while True:
            left, more = (
                int(v) for v in self.store.scripts("migrate", MIGRATE_BATCH, MIGRATE_CHILDREN)
            )
            carried += more
            if not left or (end is not None and time.monotonic() >= end):
                break
        if not left and self.r.exists(self.keys.created):
            # what they still hold names no job (a damaged record, a job removed meanwhile);
            # created last: only a 0.2 start writes it and migrate.lua leaves it, so the
            # keyspace is scanned once (not at each look that finds a 0.2 worker's end), and
            # again if cut short
            stale = []
            for pattern in (self.keys.by_action("*"), self.keys.by_location("*")):
                stale += self.r.scan_iter(match=pattern, count=1000)
            for at in range(0, len(stale), 1000):
                self.r.delete(*stale[at : at + 1000])
            self.r.delete(self.keys.created)
        return max(0, before - int(self.r.zcard(self.keys.jobs))), carried, left
