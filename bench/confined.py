"""Confined workers: what the relay hop costs, against a trusted worker of the same fleet.

One private redis-server; one trusted worker (its user writes the fleet) and one confined
worker (deploy/redis-acl.conf's per-host user, ``--confined``), each prefork with concurrency
2, and ``fleetjobs relay`` in its own process. The two are alternated job by job:

- the round trip ``start`` -> ``wait`` -> ``receive`` of ``echo`` on each;
- throughput: N jobs submitted to one, then all waited for and received; then the other.

Run: ``python bench/run.py confined [--quick]``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from bench.common import ROOT, median, percentile
from bench.report import Ctx, Row, ratio_of
from bench.roundtrip import timed
from fleetjobs.config import Config
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers, process_env
from fleetjobs.fleet import Fleet

TRUSTED, CONFINED = "trusted01", "confined01"


def confined_rule(prefix: str, location: str, password: str) -> list[str]:
    """deploy/redis-acl.conf's confined worker user, for this prefix, location and password."""
    for line in (ROOT / "deploy" / "redis-acl.conf").read_text().splitlines():
        words = line.split()
        if words[:2] == ["user", "fleet-worker-web01"]:
            rules = [w for w in words[2:] if not w.startswith(">")] + [f">{password}"]
            return [w.replace("fj:", prefix).replace("web01", location) for w in rules]
    raise RuntimeError("no confined worker user in deploy/redis-acl.conf")


@contextlib.contextmanager
def two_workers(log_dir: Path) -> Iterator[Fleet]:
    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "bench-conf", *confined_rule("fj:", CONFINED, "pw"))
        admin.close()
        confined = config.with_(
            redis_url=server.url.replace("redis://", "redis://bench-conf:pw@"),
            confined_to=CONFINED,
        )
        env = process_env(config)
        with open(log_dir / "relay.log", "ab") as out:
            relay = subprocess.Popen(
                [sys.executable, "-m", "fleetjobs", "relay", "--loglevel", "WARNING"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            with (
                LocalWorkers(config, [[TRUSTED]], concurrency=2, log_dir=log_dir),
                LocalWorkers(confined, [[CONFINED]], concurrency=2, log_dir=log_dir),
                Fleet(config=config) as fleet,
            ):
                yield fleet
        finally:
            relay.terminate()
            relay.wait(timeout=15)


def bench_confined(ctx: Ctx) -> None:
    n = ctx.param("n", 30, 200)
    jobs = ctx.param("jobs", 200, 1000)
    warmup = ctx.param("warmup", 5, 20)
    ctx.params["workers"] = "1 trusted, 1 confined (+ 1 relay), prefork, concurrency 2"
    with two_workers(ctx.log_dir) as fleet:

        def round_trip(location: str) -> tuple[float, float]:
            t = time.perf_counter()
            job = fleet.start("echo", "x", locations=location)
            if not fleet.wait([job], timeout=60) or list(fleet.receive(job)) != ["x"]:
                raise RuntimeError(f"job {job.id} on {location} did not give ['x']")
            took = time.perf_counter() - t
            fleet.remove([job])
            return took, took

        conf, trust = timed(n, warmup, lambda: round_trip(CONFINED), lambda: round_trip(TRUSTED))
        a, b = [t[0] * 1000 for t in conf], [t[0] * 1000 for t in trust]
        ctx.add(
            Row("round trip start -> wait -> receive of echo, confined worker", "ms",
                median(a), percentile(a, 99), median(b), percentile(b, 99),
                "trusted worker", ratio_of(median(a), median(b)), n=n)
        )  # fmt: skip

        def rate(location: str) -> float:
            t = time.perf_counter()
            started = [fleet.start("echo", "x", locations=location) for _ in range(jobs)]
            for job in started:
                fleet.wait([job], timeout=120)
                fleet.receive(job)
            took = time.perf_counter() - t
            fleet.remove(started)
            return jobs / took

        rates: dict[str, list[float]] = {CONFINED: [], TRUSTED: []}
        for _ in range(2):  # alternated rounds
            for location in (CONFINED, TRUSTED):
                rates[location].append(rate(location))
        c, t = median(rates[CONFINED]), median(rates[TRUSTED])
        ctx.add(
            Row(f"{jobs} jobs submitted then all received, confined worker", "jobs/s", c,
                None, t, None, "trusted worker", ratio_of(t, c),
                note="ratio = trusted rate / confined rate (times slower); one relay")
        )  # fmt: skip
