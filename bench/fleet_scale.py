"""Fleet scale: 10,000 locations served by 10 workers (1,000 each, ``--location`` repeated).

On one private Redis, with every location online:

- idle Redis load: commands per second while nothing runs (heartbeats, sweeps, Celery's
  BRPOP and event heartbeats), and per worker per heartbeat interval;
- ``fleetjobs hosts`` (whole process): time and peak RSS;
- a fan-out of ``echo`` to every location (throttle limit = all of them), run by a console in
  a process of its own (``bench/console_task.py``): time until ``start`` returns, until all
  children finished, until the last child's output was received; the console's peak RSS,
  Redis's peak memory over the fan-out, and each worker's peak RSS (its main process and pool,
  VmHWM summed).

Quick mode serves fewer locations (2 workers x 250).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

from bench.cli_startup import fleetjobs_argv
from bench.common import BenchError, ServerCounter, median
from bench.console_task import location
from bench.measure import MiB, RedisPeak, run_measured, tree_peak
from bench.report import Ctx, Row
from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

PER_WORKER_BEAT = 10.0  # heartbeat write, a sweep, Celery's BRPOP timeouts and event beats
CELERY_OWN = frozenset({"brpop", "publish", "zrange"})  # an idle worker's Celery and kombu


def _top(calls: Counter[str], per: float, k: int = 6) -> str:
    return ", ".join(f"{name} {v / per:.1f}/s" for name, v in calls.most_common(k))


def bench_fleet(ctx: Ctx) -> None:
    n_workers = ctx.param("workers", 2, 10)
    per = ctx.param("locations_per_worker", 250, 1000)
    idle_s = ctx.param("idle", 5.0, 10.0)
    repeats = ctx.param("repeats", 2, 3)
    total = n_workers * per
    groups = [[location(w * per + i + 1) for i in range(per)] for w in range(n_workers)]
    fj = fleetjobs_argv()
    ctx.note(
        "idle target: issue 9 asks one heartbeat write per worker per beat, whatever its "
        f"locations; counted as at most {PER_WORKER_BEAT:g} commands per worker per beat, "
        "room for the sweep script and Celery's own BRPOP timeouts and event heartbeats"
    )
    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        env = {**os.environ, "FLEETJOBS_REDIS_URL": server.url}
        workers = LocalWorkers(config, groups, concurrency=1, log_dir=ctx.log_dir)
        counter = ServerCounter(server.url)
        try:
            t = time.perf_counter()
            workers.start(timeout=ctx.pick(300.0, 1200.0))
            up = time.perf_counter() - t
            ctx.add(
                Row(
                    f"{n_workers} workers x {per:,} locations up (all online)",
                    "s",
                    up,
                    note="start-up, not a target",
                )
            )
            time.sleep(config.heartbeat_interval)  # past the start-up's own writes
            before = counter.snapshot()
            time.sleep(idle_s)
            idle = ServerCounter.diff(before, counter.snapshot())
            rate = idle.commands / idle.seconds
            beat = rate / n_workers * config.heartbeat_interval
            ctx.add(
                Row(
                    f"idle Redis load, {total:,} locations on {n_workers} workers",
                    "cmds/s",
                    rate,
                    target=f"<= {PER_WORKER_BEAT:g} cmds per worker per beat, "
                    "whatever its locations",
                    met=beat <= PER_WORKER_BEAT,
                    note=f"{beat:.1f} commands per worker per {config.heartbeat_interval:g} s "
                    f"beat; redis-server CPU {idle.cpu / idle.seconds * 100:.1f}% of a core; "
                    f"{_top(idle.calls, idle.seconds)}",
                )
            )
            # what Celery and kombu send on their own: the BRPOP re-sent each second, the
            # event heartbeat (PUBLISH) and kombu's look for reserved messages past their lease
            own = sum(v for k, v in idle.calls.items() if k not in CELERY_OWN)
            ctx.add(
                Row(
                    "of which fleetjobs' own, per worker per beat",
                    "cmds",
                    own / idle.seconds / n_workers * config.heartbeat_interval,
                    note="Lua's inner calls included; Celery's and kombu's own left out by "
                    f"command name ({', '.join(sorted(CELERY_OWN))}: an idle fleetjobs sends "
                    "none of them)",
                )
            )
            runs = [run_measured([*fj, "hosts"], env, timeout=600) for _ in range(repeats)]
            if runs[0].returncode != 0:
                raise BenchError(f"fleetjobs hosts exited {runs[0].returncode}: {runs[0].stderr}")
            ctx.add(
                Row(
                    f"fleetjobs hosts, {total:,} locations (whole process)",
                    "ms",
                    median([m.seconds * 1000 for m in runs]),
                    note=f"peak RSS {max(m.maxrss for m in runs) / MiB:.0f} MiB",
                    n=repeats,
                )
            )
            fan_out(ctx, server.url, counter, workers, total, config)
        finally:
            workers.stop()
            counter.close()


def fan_out(
    ctx: Ctx,
    url: str,
    counter: ServerCounter,
    workers: LocalWorkers,
    total: int,
    config: Config,
) -> None:
    argv = [sys.executable, "-m", "bench.console_task", "fanout", url, str(total)]
    with RedisPeak(counter.r) as peak:
        m = run_measured(argv, os.environ, timeout=3600, keep_stdout=True)
        redis_peak = peak.peak() - peak.before
    if m.returncode != 0:
        raise BenchError(f"the fan-out console exited {m.returncode}: {m.stderr[-500:]}")
    got = json.loads(m.stdout.strip().splitlines()[-1])
    for key, label in (
        ("start", "start returns"),
        ("finished", "all children finished"),
        ("received", "last child's output received"),
    ):
        ctx.add(Row(f"fan-out to {total:,} locations: {label}", "s", float(got[key])))
    ctx.add(Row(f"fan-out to {total:,}: console peak RSS (own process)", "B", float(m.maxrss)))
    ctx.add(
        Row(
            f"fan-out to {total:,}: Redis peak memory above its start",
            "B",
            float(redis_peak),
            note="INFO used_memory_peak after CONFIG RESETSTAT, less used_memory before",
        )
    )
    peaks = [tree_peak(p.pid) for p in workers.procs]
    ctx.add(
        Row(
            "worker peak RSS (main + pool, VmHWM summed), largest of the workers",
            "B",
            float(max(peaks)),
            note="each worker: " + ", ".join(f"{p / MiB:.0f}" for p in peaks) + " MiB",
        )
    )
    with Fleet(config=config) as fleet:
        fleet.remove([int(got["job"])])
