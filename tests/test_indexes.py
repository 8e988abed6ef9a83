"""The history indexes in buckets of 128 jobs: every list and query reads across buckets as
it read one big index, a removal leaves no empty bucket listed, and the indexes of a fleet
an older version (0.2) kept are moved into buckets with nothing lost."""

from __future__ import annotations

import json
import time

from fleetjobs import Fleet, JobState
from fleetjobs.history import History
from fleetjobs.keys import IX_BUCKET
from fleetjobs.lifecycle import JobSpec

from .conftest import Layers, make_cli

S = JobState


def _jobs(w: Layers, n: int, action: str, locs: list[str], fail: bool = False) -> list[int]:
    made = []
    for _ in range(n):
        pid, _, children = w.lifecycle.create(JobSpec(action, [], {}, action, locs))
        for c in children:
            w.lifecycle.claim(c.id, "w")
            w.lifecycle.finish(c.id, S.FAILED if fail else S.COMPLETED, "no" if fail else "")
        made.append(pid)
    return made


def test_lists_and_queries_read_across_buckets(layers: Layers) -> None:
    # given 300 jobs (three buckets), two actions, some failed, on two hosts
    w, r = layers, layers.store.r
    first = _jobs(w, 100, "ping", ["web01"])
    mid = time.time()
    second = _jobs(w, 100, "archive", ["web01", "db01"], fail=True)
    third = _jobs(w, 100, "ping", ["db01"])
    every = first + second + third
    buckets = r.zrange(w.keys.ixdir("top"), 0, -1)
    assert buckets == ["0", "1", "2"]
    # each bucket is small enough for Redis to keep as a listpack (what saves the memory)
    for b in buckets:
        key = w.keys.ix(int(b), "top")
        assert r.zcard(key) <= IX_BUCKET and r.object("encoding", key) == "listpack"
    # then Get-Job's list is every job, oldest first or newest first, in Id order
    assert list(w.registry.iter_top_ids()) == every
    assert list(w.registry.iter_top_ids(newest_first=True)) == every[::-1]
    assert list(w.registry.iter_top_ids(batch=1)) == every  # a bucket a read
    h = History(w.store)
    assert h.find(action="archive") == second
    assert h.find(action="ping", location="db01") == third
    assert h.find(location="web*", since=mid) == second
    assert h.find(failed=True, location="db01") == second
    assert h.find(until=mid) == first and h.find() == every
    # retention finds what ended before a time, across buckets, up to its limit
    assert sorted(w.registry.indexes.ended_before(time.time() + 1, 1000)) == every
    assert len(w.registry.indexes.ended_before(time.time() + 1, 150)) == 150
    assert w.registry.indexes.ended_before(mid - 3600, 1000) == []
    # and the CLI's newest 50 are the last 50 started
    with Fleet(config=w.store.config) as fleet:
        assert [j.id for j in fleet.get(newest=50)] == every[-50:]
    got = make_cli(w.store.config)("get", "--json")
    assert got.returncode == 0, got.stderr
    assert [d["id"] for d in json.loads(got.stdout)] == every[-50:]


def test_a_removed_bucket_leaves_its_list(layers: Layers) -> None:
    w, r = layers, layers.store.r
    made = _jobs(w, IX_BUCKET + 10, "ping", ["web01"])
    # when the first bucket's jobs are all removed (a retention purge, say)
    w.lifecycle.remove(w.registry.load(made[:IX_BUCKET]))
    # then no family lists that bucket, nor keeps its key; the second is whole
    for family in ("top", "ended", "action:ping", "loc:web01"):
        assert r.zrange(w.keys.ixdir(family), 0, -1, withscores=True)[0][0] == "1", family
        assert not r.exists(w.keys.ix(0, family))
    assert list(w.registry.iter_top_ids()) == made[IX_BUCKET:]
    # and the directory of ends says the earliest end left (what retention reads)
    [(_, earliest)] = r.zrange(w.keys.ixdir("ended"), 0, -1, withscores=True)
    ends = r.zrange(w.keys.ix(1, "ended"), 0, -1, withscores=True)
    assert earliest == min(score for _, score in ends)


def _as_02(w: Layers, ids: list[int]) -> None:
    """Index these jobs as 0.2 did (one big sorted set per index) and unbucket them."""
    r, k = w.store.r, w.keys
    for pid in ids:
        job = w.registry.load([pid])[0]
        created, ended = job.created, job.end_time
        assert created is not None and ended is not None
        r.zadd(k.jobs, {str(pid): pid})
        r.zadd(k.created, {str(pid): created})
        r.zadd(k.ended, {str(pid): ended})
        r.zadd(k.by_action(job.action), {str(pid): created})
        for c in job.children:
            r.zadd(k.by_location(c.location), {str(pid): created})
        if job.state is S.FAILED:
            r.zadd(k.failed, {str(pid): created})
        r.hdel(k.job(pid), "ix")
    for key in r.scan_iter(match=f"{w.store.config.prefix}ix*"):
        r.delete(key)
    r.delete(k.tseq)


def test_a_fleet_an_older_version_indexed_is_moved_into_buckets(layers: Layers) -> None:
    # given 200 jobs indexed as 0.2 kept them, one of them failed on two hosts
    w, r, k = layers, layers.store.r, layers.keys
    old = _jobs(w, 199, "ping", ["web01"]) + _jobs(w, 1, "archive", ["web01", "db01"], True)
    _as_02(w, old)
    assert list(w.registry.iter_top_ids()) == []  # not readable in buckets yet
    # a job removed before the move is taken out of the old indexes
    w.lifecycle.remove(w.registry.load([old[0]]))
    assert r.zscore(k.jobs, old[0]) is None and r.zscore(k.by_location("web01"), old[0]) is None
    old = old[1:]
    # when a start comes (it purges what has expired, and moves the old indexes first)
    with Fleet(config=w.store.config) as fleet:
        new = fleet.start("echo", "x", locations="web01")
        # then every job is listed, the old ones below the new one, in their order
        assert list(w.registry.iter_top_ids()) == [*old, new.id]
        assert [j.id for j in fleet.get(newest=3)] == [*old[-2:], new.id]
    h = History(w.store)
    assert h.find(action="ping") == old[:-1] and h.find(location="db01") == old[-1:]
    assert h.find(failed=True) == old[-1:]
    assert sorted(w.registry.indexes.ended_before(time.time() + 1, 1000)) == old
    # and the old indexes are gone, every job out of them
    legacy = [k.jobs, k.created, k.ended, k.failed, k.by_action("ping"), k.by_location("db01")]
    assert r.exists(*legacy) == 0
    # a moved job is removed as any other
    w.lifecycle.remove(w.registry.load(old))
    assert list(w.registry.iter_top_ids()) == [new.id]
    assert h.find(failed=True) == [] and h.find(location="db01") == []
