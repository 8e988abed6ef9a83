"""Registry scale: ``fleetjobs get`` with 1k, 10k and 100k finished jobs stored.

The jobs are made fast and true to the registry: one real ``echo`` job runs on a worker and
finishes with its output unread; its keys are the template, and N copies are written with
pipelines, every field copied from the template with the ids, instance ids and default name
replaced (``job:<id>`` parent and child hashes, ``out:<iid>`` records, the ``iids`` and
``names:<name>`` indexes, the last for a name given, not a default one, and the history
indexes' buckets and their lists, as ``fleetjobs/lua/create.lua`` and ``common.lua`` lay them
out: each copy's ordinal, and so its bucket, follows the template's).
A key of the template that the copy does not know is reported, and a copy is checked by
reading it back through the API, so a change of layout shows instead of skewing the figures.

Per size, whole processes (time and peak RSS): ``fleetjobs get`` (the list as it prints
today), ``fleetjobs get --json``, and ``fleetjobs get ID...`` with the newest 50 Ids.
Redis memory per finished job: ``INFO memory`` used_memory before and after, and
``MEMORY USAGE`` of one copy's keys.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from bench.cli_startup import fleetjobs_argv
from bench.common import BenchError, median
from bench.measure import MiB, run_measured
from bench.report import Ctx, Row, ratio_of
from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers
from fleetjobs.keys import IX_BUCKET
from fleetjobs.model import default_name, id_in_instance_id, new_instance_id

LOC = "bench01"
BATCH = 2000


class Template:
    """One real finished job's keys, to copy."""

    def __init__(self, r: Any, prefix: str, pid: int, piid: str, cid: int, ciid: str) -> None:
        self.r, self.p = r, prefix
        self.ids = {str(pid): "pid", piid: "piid", str(cid): "cid", ciid: "ciid"}
        self.pid, self.cid, self.ciid = pid, cid, ciid
        self.parent: dict[str, str] = r.hgetall(f"{prefix}job:{pid}")
        self.child: dict[str, str] = r.hgetall(f"{prefix}job:{cid}")
        self.out: list[str] = r.lrange(f"{prefix}out:{ciid}", 0, -1)
        self.name = self.parent.get("name", f"Job{pid}")
        bucket = int(self.parent.get("ix", "0"))
        self.ended = float(r.zscore(f"{prefix}ix:{bucket}:ended", pid) or time.time())
        self.ordinal = int(r.get(f"{prefix}tseq") or 1)
        if not self.parent or not self.child:
            raise BenchError("the template job's hashes are not where registry.py put them")

    def unknown_keys(self) -> list[str]:
        """Keys naming the template's ids that the copy does not write."""
        known = {
            f"{self.p}job:{self.pid}",
            f"{self.p}job:{self.cid}",
            f"{self.p}out:{self.ciid}",
            f"{self.p}names:{self.name}",
        }
        found = []
        for key in self.r.scan_iter(match=f"{self.p}*", count=1000):
            rest = key[len(self.p) :]
            if key in known or rest.startswith("_kombu."):
                continue
            if any(part in self.ids for part in rest.split(":")):
                found.append(key)
        return found

    def _fields(self, h: dict[str, str], new: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, v in h.items():
            role = self.ids.get(v)
            out[k] = new[role] if role else v
        if out.get("name") == self.name and self.name == f"Job{self.pid}":
            out["name"] = f"Job{new['pid']}"
        return out

    def write(self, first_pid: int, count: int) -> int:
        """Write ``count`` copies, parent ids from ``first_pid`` (step 2); the last id used."""
        p = self.p
        pid = first_pid
        for start in range(0, count, BATCH):
            pipe = self.r.pipeline(transaction=False)
            for _ in range(min(BATCH, count - start)):
                new = {
                    "pid": str(pid),
                    "cid": str(pid + 1),
                    "piid": new_instance_id(pid),
                    "ciid": new_instance_id(pid + 1),
                }
                parent = self._fields(self.parent, new)
                self.ordinal += 1
                bucket = (self.ordinal - 1) // IX_BUCKET
                parent["ix"] = str(bucket)
                pipe.hset(f"{p}job:{pid}", mapping=parent)
                pipe.hset(f"{p}job:{pid + 1}", mapping=self._fields(self.child, new))
                if self.out:
                    pipe.rpush(f"{p}out:{new['ciid']}", *self.out)
                # only an InstanceId that does not carry its Id is indexed (lifecycle.create)
                index = {
                    iid: job_id
                    for iid, job_id in ((new["piid"], pid), (new["ciid"], pid + 1))
                    if id_in_instance_id(iid) != job_id
                }
                if index:
                    pipe.hset(f"{p}iids", mapping=index)
                # the history indexes every start and end write (get, --since/--action/
                # --location, retention), in the copy's bucket, and each family's list
                created = float(parent.get("created", self.ended))
                scored = [("top", created), ("ended", self.ended)]
                scored.append((f"action:{parent.get('action', '')}", created))
                scored += [(f"loc:{loc}", created) for loc in parent["location"].split(",")]
                for family, score in scored:
                    pipe.zadd(f"{p}ix:{bucket}:{family}", {str(pid): score})
                    # each list scores a bucket by its latest start, ended's by its earliest
                    # end (common.lua's ix_add)
                    pipe.zadd(
                        f"{p}ixdir:{family}",
                        {str(bucket): score},
                        lt=family == "ended",
                        gt=family != "ended",
                    )
                pipe.zadd(f"{p}ixorder", {str(bucket): bucket})
                named = parent.get("name", self.name)
                if named != default_name(pid):  # a default name is in no index (lifecycle)
                    pipe.sadd(f"{p}names:{named}", pid)
                pid += 2
            pipe.execute()
        last = pid - 1
        self.r.set(f"{p}seq", last)
        self.r.set(f"{p}tseq", self.ordinal)
        return last


def usage(r: Any, key: str) -> int:
    return int(r.memory_usage(key, samples=0) or 0)


def bench_registry(ctx: Ctx) -> None:
    sizes = ctx.param("sizes", [1000, 10000], [1000, 10000, 100000])
    repeats = ctx.param("repeats", 2, 3)
    fj = fleetjobs_argv()
    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        r: Any = redis.Redis.from_url(server.url, decode_responses=True)
        env = {**os.environ, "FLEETJOBS_REDIS_URL": server.url}
        try:
            with (
                LocalWorkers(config, [[LOC]], concurrency=1, log_dir=ctx.log_dir),
                Fleet(config=config) as fleet,
            ):
                job = fleet.start("echo", "x", locations=LOC)
                if not fleet.wait([job], timeout=30):
                    raise BenchError("the template job did not finish")
                info = fleet.info(job.id)
            child = info.children[0]
            tpl = Template(r, config.prefix, info.id, info.instance_id, child.id, child.instance_id)
            for key in tpl.unknown_keys():
                ctx.note(f"template key not copied (the layout changed?): {key}")
            stored, last = 1, int(r.get(f"{config.prefix}seq") or child.id)
            for size in sizes:
                before = int(r.info("memory")["used_memory"])
                t = time.perf_counter()
                last = tpl.write(last + 1, size - stored)
                seeded = time.perf_counter() - t
                added = size - stored
                per_job = (int(r.info("memory")["used_memory"]) - before) / max(1, added)
                stored = size
                print(f"    {size:,} jobs stored ({added:,} written in {seeded:.1f} s)", flush=True)
                if size == sizes[0]:
                    check_copy(ctx, config, last - 1, fj, env, size)
                    memory_rows(ctx, r, config.prefix, last - 1, per_job)
                newest = [str(i) for i in range(last - 1, max(0, last - 100), -2)][:50]
                for label, args in (
                    ("fleetjobs get", ["get"]),
                    ("fleetjobs get --json", ["get", "--json"]),
                    ("fleetjobs get <newest 50 Ids>", ["get", *newest]),
                    ("fleetjobs get --all --json", ["get", "--all", "--json"]),
                    ("fleetjobs get --all", ["get", "--all"]),
                ):
                    runs = [run_measured([*fj, *args], env, timeout=1800) for _ in range(repeats)]
                    bad = [m for m in runs if m.returncode != 0]
                    if bad:
                        raise BenchError(f"{label} exited {bad[0].returncode}: {bad[0].stderr}")
                    ctx.add(
                        Row(
                            f"{label}, {size:,} finished jobs",
                            "ms",
                            median([m.seconds * 1000 for m in runs]),
                            note=f"peak RSS {max(m.maxrss for m in runs) / MiB:.0f} MiB",
                            n=repeats,
                        )
                    )
                    ctx.params.setdefault("_series", {}).setdefault(label, []).append(
                        (size, median([m.seconds for m in runs]), max(m.maxrss for m in runs))
                    )
        finally:
            r.close()
    ctx.note(
        "`get` and `get --json` list the newest 50 (get --newest, default 50); "
        "`get --all --json` every job (not flat by nature: it prints them all)"
    )
    ctx.note(
        "the stored jobs are copies of one real finished echo job (output unread), "
        "written with pipelines in the registry's layout and read back through the API"
    )
    flatness(ctx, sizes)


def check_copy(ctx: Ctx, config: Config, pid: int, fj: list[str], env: Any, size: int) -> None:
    """A copy must read back through the API as the template did, and be counted by get."""
    with Fleet(config=config) as fleet:
        got = fleet.info(pid)
        if got.state.value != "Completed" or not got.children:
            raise BenchError(f"a copied job reads back as {got.state.value}: layout changed?")
        kept = list(fleet.receive(got, keep=True))
        if kept != ["x"]:
            raise BenchError(f"a copied job's output reads back as {kept!r}")
    import json

    m = run_measured([*fj, "get", "--json", "--all"], env, timeout=600, keep_stdout=True)
    listed = len(json.loads(m.stdout or "[]"))
    if listed != size:
        raise BenchError(f"fleetjobs get --json listed {listed} jobs, {size} are stored")


def memory_rows(ctx: Ctx, r: Any, prefix: str, pid: int, per_job: float) -> None:
    parent = r.hgetall(f"{prefix}job:{pid}")
    child = r.hgetall(f"{prefix}job:{parent['children'].split(',')[0]}")
    hashes = usage(r, f"{prefix}job:{pid}") + usage(r, f"{prefix}job:{child['id']}")
    out = usage(r, f"{prefix}out:{child['iid']}")
    ctx.add(
        Row(
            "Redis memory per finished job (INFO used_memory delta / jobs written)",
            "B",
            per_job,
            target="< 1 KiB plus its output",
            met=(per_job - out) < 1024,
            note=f"of which its output list (one record) {out} B by MEMORY USAGE",
        )
    )
    ctx.add(
        Row(
            "MEMORY USAGE of one finished job's parent + child hashes",
            "B",
            float(hashes),
            note=f"{len(parent)} + {len(child)} fields; the history indexes (top, ended, "
            "action, loc: buckets of 128 jobs) are in the delta above",
        )
    )
    # what each index costs per job: its MEMORY USAGE over the jobs it holds
    per: dict[str, float] = {}
    if r.hlen(f"{prefix}iids"):
        per["iids (2 per job)"] = usage(r, f"{prefix}iids") / (r.hlen(f"{prefix}iids") / 2)
    families = ("top", "ended", f"action:{parent['action']}", f"loc:{parent['location']}")
    for family in families:  # its buckets and their list, over the jobs in them
        buckets = [f"{prefix}ix:{b}:{family}" for b in r.zrange(f"{prefix}ixdir:{family}", 0, -1)]
        n = sum(r.zcard(key) for key in buckets)
        if n:
            used = usage(r, f"{prefix}ixdir:{family}") + sum(usage(r, key) for key in buckets)
            per[family.split(":")[0]] = used / n
    # a key per Name given at start; a default name (JobN) has none
    per["names"] = float(usage(r, f"{prefix}names:{parent.get('name', '')}"))
    ctx.add(
        Row(
            "of which the indexes, per job (MEMORY USAGE / entries)",
            "B",
            sum(per.values()),
            note=", ".join(f"{k} {v:.0f} B" for k, v in per.items()),
        )
    )


def flatness(ctx: Ctx, sizes: list[int]) -> None:
    series = ctx.params.pop("_series", {})
    for label, points in series.items():
        if len(points) < 2:
            continue
        (s0, t0, m0), (s1, t1, m1) = points[0], points[-1]
        rt, rm = ratio_of(t1, t0), ratio_of(m1, m0)
        ctx.add(
            Row(
                f"{label}: time at {s1:,} jobs vs at {s0:,}",
                "ms",
                t1 * 1000,
                base=t0 * 1000,
                base_name=f"same at {s0:,}",
                ratio=rt,
                target="" if "--all" in label else "flat (<= 1.2x)",
                met=None if "--all" in label else (rt is not None and rt <= 1.2),
            )
        )
        ctx.add(
            Row(
                f"{label}: console peak RSS at {s1:,} jobs vs at {s0:,}",
                "B",
                float(m1),
                base=float(m0),
                base_name=f"same at {s0:,}",
                ratio=rm,
                target="" if "--all" in label else "flat (<= 1.2x)",
                met=None if "--all" in label else (rm is not None and rm <= 1.2),
            )
        )
    ctx.params["sizes"] = sizes
