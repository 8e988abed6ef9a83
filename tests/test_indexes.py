"""The history indexes in buckets of 128 jobs: every list and query reads across buckets as
it read one big index, a removal leaves no empty bucket listed, and the indexes of a fleet
an older version (0.2) kept are moved into buckets with nothing lost."""

from __future__ import annotations

import dataclasses
import json
import time
import types

import pytest

from fleetjobs import Fleet, JobState, indexes
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
    first = _jobs(w, IX_BUCKET, "ping", ["web01"])
    mid = time.time()
    second = _jobs(w, 100, "archive", ["web01", "db01"], fail=True)
    third = _jobs(w, 100, "ping", ["db01"])
    every = first + second + third
    buckets = r.zrange(w.keys.ixorder, 0, -1)
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
    # a query --since reads only the buckets whose latest start reaches it (not the first)
    assert w.registry.indexes.size(["top"], repr(mid)) == 2
    assert h.find(action="archive") == second
    assert h.find(action="ping", location="db01") == third
    assert h.find(location="web*", since=mid) == second
    assert h.find(failed=True, location="db01") == second
    assert h.find(until=mid) == first and h.find() == every
    # retention finds what ended before a time, across buckets, up to its limit
    assert sorted(w.registry.indexes.ended_before(time.time() + 1, 1000)) == every
    assert len(w.registry.indexes.ended_before(time.time() + 1, 150)) == 150
    assert w.registry.indexes.ended_before(mid - 3600, 1000) == {}
    # and the CLI's newest 50 are the last 50 started
    with Fleet(config=w.store.config) as fleet:
        assert [j.id for j in fleet.get(newest=50)] == every[-50:]
    got = make_cli(w.store.config)("get", "--json")
    assert got.returncode == 0, got.stderr
    assert [d["id"] for d in json.loads(got.stdout)] == every[-50:]


def test_starts_that_overlap_are_listed_in_id_order(layers: Layers) -> None:
    # given a start whose Id is the last of a bucket, and another start (another console's)
    # made while the first composes its messages, before the first's script runs
    w = layers
    _jobs(w, IX_BUCKET - 1, "ping", ["web01"])
    during: list[int] = []

    def compose(spec: JobSpec, children: object, name: str) -> object:
        during.append(w.lifecycle.create(JobSpec("ping", [], {}, "ping", ["web02"]))[0])
        return types.SimpleNamespace(messages=[], events=[])

    first, _ = w.lifecycle.create_job(JobSpec("ping", [], {}, "ping", ["web01"]), compose)
    # then the later Id is the newer job: its place was given with its Id, not by its script
    assert during[0] > first.id
    assert list(w.registry.iter_top_ids(newest_first=True))[:2] == [during[0], first.id]


def test_a_removed_bucket_leaves_its_list(layers: Layers) -> None:
    w, r = layers, layers.store.r
    made = _jobs(w, IX_BUCKET + 10, "ping", ["web01"])
    # when the first bucket's jobs are all removed (a retention purge, say)
    w.lifecycle.remove(w.registry.load(made[:IX_BUCKET]))
    # then no family lists that bucket, nor keeps its key; the second is whole
    for family in ("top", "ended", "action:ping", "loc:web01"):
        assert r.zrange(w.keys.ixdir(family), 0, -1) == ["1"], family
        assert not r.exists(w.keys.ix(0, family))
    assert r.zrange(w.keys.ixorder, 0, -1) == ["1"]
    assert list(w.registry.iter_top_ids()) == made[IX_BUCKET:]
    # and each list says what its queries read: the latest start left, the earliest end
    w.lifecycle.remove(w.registry.load([made[-1], made[IX_BUCKET]]))
    for family, pick in (("top", max), ("ended", min)):
        [(_, said)] = r.zrange(w.keys.ixdir(family), 0, -1, withscores=True)
        left = r.zrange(w.keys.ix(1, family), 0, -1, withscores=True)
        assert said == pick(score for _, score in left), family


def test_retention_forgets_a_listed_job_whose_record_is_gone(layers: Layers) -> None:
    # given 300 finished jobs, 250 of whose records were deleted by hand (not removed)
    w, r = layers, layers.store.r
    made = _jobs(w, 300, "ping", ["web01"])
    r.delete(*(w.keys.job(i) for i in made[:250]))
    time.sleep(1.2)
    config = dataclasses.replace(w.store.config, retention=1.0)
    with Fleet(config=config) as fleet:
        # when retention passes twice (200 a pass)
        assert fleet.housekeeping.purge_expired(force=True) == 200
        assert fleet.housekeeping.purge_expired(force=True) == 100
    # then the gone ones are out of the lists too (they would be found first for ever), and
    # every other job was purged
    assert w.registry.indexes.ended_before(time.time() + 1, 1000) == {}
    assert list(w.registry.iter_top_ids()) == []
    assert r.zcard(w.keys.ixdir("ended")) == 0


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
    for key in r.scan_iter(match=f"{w.store.config.prefix}ix*"):  # buckets and their lists
        r.delete(key)
    r.delete(k.tseq)


def test_a_fleet_an_older_version_indexed_is_moved_into_buckets(
    layers: Layers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 200 jobs indexed as 0.2 kept them, one of them failed on two hosts
    w, r, k = layers, layers.store.r, layers.keys
    old = _jobs(w, 199, "ping", ["web01"]) + _jobs(w, 1, "archive", ["web01", "db01"], True)
    _as_02(w, old)
    assert list(w.registry.iter_top_ids()) == []  # not readable in buckets yet
    # two whose start time is damaged (one not a number, one not a finite one), and in no
    # old index of times
    r.hset(k.job(old[5]), "created", "garbage")
    r.hset(k.job(old[6]), "created", "nan")
    r.zrem(k.created, old[5], old[6])
    # a worker's purge leaves them (0.2 consoles may still read them): a console moves them
    w.registry.expired(migrate=False)
    assert r.zcard(k.jobs) == 200
    # a job removed before the move is taken out of the old indexes
    w.lifecycle.remove(w.registry.load([old[0]]))
    assert r.zscore(k.jobs, old[0]) is None and r.zscore(k.by_location("web01"), old[0]) is None
    old = old[1:]
    # a slice moves the newest first (Redis waits on each call, not on the whole move)
    monkeypatch.setattr(indexes, "MIGRATE_BATCH", 10)
    # (what jobs and ended still hold: the 189 older, all finished; the failed one moved)
    assert w.registry.indexes.migrate(seconds=0) == (10, 0, 189 + 189)
    assert list(w.registry.iter_top_ids()) == old[-10:]
    # when starts come (each purges what has expired, moving a slice of the old first)
    with Fleet(config=w.store.config) as fleet:
        new = fleet.start("echo", "x", locations="web01")
        for _ in range(50):  # each a slice: 190 jobs, 10 a call, at least one call a start
            if not r.exists(k.jobs):
                break
            fleet.start("echo", "x", locations="web01")
        assert not r.exists(k.jobs)
        newer = [j.id for j in fleet.get() if j.id >= new.id]
        # then every job is listed, the old ones below the new ones, in their order
        assert list(w.registry.iter_top_ids()) == [*old, *newer]
        assert [j.id for j in fleet.get(newest=len(newer) + 2)] == [*old[-2:], *newer]
    h = History(w.store)
    # (the damaged ones moved with the time of their move)
    assert h.find(action="ping") == [*old[:4], *old[6:-1], old[4], old[5]]
    assert h.find(location="db01") == old[-1:]
    assert h.find(failed=True) == old[-1:]
    assert sorted(w.registry.indexes.ended_before(time.time() + 1, 1000)) == old
    # and the old indexes are gone, every job out of them
    legacy = [k.jobs, k.created, k.ended, k.failed, k.by_action("ping"), k.by_location("db01")]
    assert r.exists(*legacy) == 0
    # a moved job is removed as any other
    w.lifecycle.remove(w.registry.load(old))
    assert list(w.registry.iter_top_ids()) == newer
    assert h.find(failed=True) == [] and h.find(location="db01") == []


def test_a_job_an_older_worker_ended_is_moved_into_its_buckets(layers: Layers) -> None:
    # given a job this version started, which a 0.2 worker ran and ended Failed: that worker
    # wrote the end into 0.2's indexes, not into the job's buckets
    w, r, k = layers, layers.store.r, layers.keys
    pid, _, [child] = w.lifecycle.create(JobSpec("ping", [], {}, "ping", ["web01"]))
    end = time.time()
    for job_id in (pid, child.id):
        r.hset(k.job(job_id), mapping={"state": "Failed", "end": repr(end)})
    created = float(r.hget(k.job(pid), "created"))
    r.zadd(k.ended, {str(pid): end})
    r.zadd(k.failed, {str(pid): created})
    # when a start comes (its purge looks for what 0.2 wrote)
    with Fleet(config=w.store.config) as fleet:
        fleet.start("echo", "x", locations="web01")
    # then retention and --failed find it, and 0.2's indexes are gone
    assert pid in w.registry.indexes.ended_before(end + 1, 1000)
    assert History(w.store).find(failed=True) == [pid]
    assert r.exists(k.ended, k.failed) == 0


def test_upgrade_moves_every_job_at_once(layers: Layers) -> None:
    # given 30 jobs indexed as 0.2 kept them, and one a 0.2 console started and a 0.3 worker
    # ended (it wrote the end into 0.2's indexes, which 0.2 consoles still read)
    w, r, k = layers, layers.store.r, layers.keys
    old = _jobs(w, 30, "ping", ["web01"])
    pid, _, [child] = w.lifecycle.create(JobSpec("ping", [], {}, "ping", ["web01"]))
    _as_02(w, old)  # (and every bucket dropped)
    _as_02_unfinished(w, pid)
    w.lifecycle.claim(child.id, "w")
    w.lifecycle.finish(child.id, S.FAILED, "no")
    assert r.zscore(k.ended, pid) is not None and r.zscore(k.failed, pid) is not None
    # when fleetjobs upgrade runs
    cli = make_cli(w.store.config)
    got = cli("upgrade")
    # then every job is moved, listed and found, and 0.2's indexes are gone
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "moved 31 job(s) from 0.2's history indexes into buckets"
    assert list(w.registry.iter_top_ids()) == [*old, pid]
    assert History(w.store).find(failed=True) == [pid]
    assert pid in w.registry.indexes.ended_before(time.time() + 1, 1000)
    assert not list(r.scan_iter(match=f"{w.store.config.prefix}by-*"))
    assert r.exists(k.jobs, k.created, k.ended, k.failed) == 0
    # and a failure a 0.2 worker still draining writes afterwards is moved by the next run,
    # which says so; then nothing is left to move
    r.zadd(k.failed, {str(old[0]): float(r.hget(k.job(old[0]), "created"))})
    late = cli("upgrade")
    assert late.returncode == 0, late.stderr
    assert late.stdout.strip().endswith("and 1 end(s) or failure(s) 0.2 workers wrote since")
    assert History(w.store).find(failed=True) == [old[0], pid]
    again = cli("upgrade")
    assert again.returncode == 0 and "nothing to move" in again.stdout


def _as_02_unfinished(w: Layers, pid: int) -> None:
    """A job as a 0.2 console started it: in 0.2's indexes, no bucket."""
    r, k = w.store.r, w.keys
    created = float(r.hget(k.job(pid), "created"))
    r.zadd(k.jobs, {str(pid): pid})
    r.zadd(k.created, {str(pid): created})
    r.zadd(k.by_action("ping"), {str(pid): created})
    r.zadd(k.by_location("web01"), {str(pid): created})
    r.hdel(k.job(pid), "ix")
