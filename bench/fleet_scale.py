"""Fleet scale: 10,000 locations served by 10 workers (1,000 each, ``--location`` repeated).

On one private Redis, with every location online:

- idle Redis load: commands per second while nothing runs (heartbeats, sweeps, Celery's
  BRPOP and event heartbeats), and per worker per heartbeat interval; and the writes among
  them, per worker per beat, as the server propagated them (AOF on for that window);
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
from dataclasses import dataclass

from bench.cli_startup import fleetjobs_argv
from bench.common import BenchError, RawWorkers, ServerCounter, median
from bench.console_task import location
from bench.measure import (
    MiB,
    RedisPeak,
    appendonly,
    by_name,
    idle_window,
    run_measured,
    tree_peak,
)
from bench.report import Ctx, Row, ratio_of
from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers
from fleetjobs.keys import Keys

CELERY_OWN = frozenset({"brpop", "publish", "zrange"})  # an idle worker's Celery and kombu


def _top(calls: Counter[str], per: float, k: int = 6) -> str:
    return ", ".join(f"{name} {v / per:.1f}/s" for name, v in calls.most_common(k))


def bench_fleet(ctx: Ctx) -> None:
    n_workers = ctx.param("workers", 2, 10)
    per = ctx.param("locations_per_worker", 250, 1000)
    # whole beats (no phase in the counts), and in full the 15 beats between two looks at the
    # host rows a worker writes (fleetjobs.hosts.REWRITE_EVERY)
    idle_s = ctx.param("idle", 6.0, 30.0)
    repeats = ctx.param("repeats", 2, 3)
    total = n_workers * per
    groups = [[location(w * per + i + 1) for i in range(per)] for w in range(n_workers)]
    fj = fleetjobs_argv()
    ctx.note(
        "idle target: issue 9 asks one write per worker per beat, whatever its locations, "
        "counted from what Redis propagates (its AOF, what replicas apply); all commands are "
        "shown beside raw Celery workers' (until the writes were counted, at most 10 commands "
        "per worker per beat stood in for that target)"
    )
    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        raw = raw_idle(ctx, server.url, n_workers, idle_s, config)
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
            with appendonly(counter.r):  # what the idle fleet writes, read from the AOF
                time.sleep(config.heartbeat_interval)  # past the start-up's own writes
                window = idle_window(counter, idle_s)
            idle = window.delta
            rate = idle.commands / idle.seconds
            per_beat = config.heartbeat_interval / idle.seconds / n_workers
            beat = idle.commands * per_beat
            ctx.add(
                Row(
                    f"idle Redis load, {total:,} locations on {n_workers} workers",
                    "cmds/s",
                    rate,
                    note=f"{beat:.1f} commands per worker per {config.heartbeat_interval:g} s "
                    f"beat; redis-server CPU {idle.cpu / idle.seconds * 100:.1f}% of a core; "
                    f"{_top(idle.calls, idle.seconds)}",
                )
            )
            ctx.add(
                Row(
                    "idle Redis load per worker per beat",
                    "cmds",
                    beat,
                    base=raw.commands,
                    base_name="raw Celery worker, one queue",
                    ratio=ratio_of(beat, raw.commands),
                    note=f"fleetjobs: {n_workers} workers x {per:,} locations; raw Celery: "
                    f"{n_workers} workers, one queue each, the same flags, before them on the "
                    "same server",
                )
            )
            idle_writes(ctx, window.written, Keys(config.prefix).swept, per_beat, raw)
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


@dataclass(frozen=True)
class RawIdle:
    """Idle raw Celery workers, per worker per heartbeat interval: their commands, their
    writes (as propagated), and those writes by command name."""

    commands: float
    writes: float
    by_name: Counter[str]


def raw_idle(ctx: Ctx, url: str, n_workers: int, seconds: float, config: Config) -> RawIdle:
    """The baseline of the idle rows: as many raw Celery workers (one queue each, the flags
    of a fleetjobs worker), idle on the same server before fleetjobs' start."""
    from bench.raw_celery import make_app

    app = make_app(url)
    counter = ServerCounter(url)
    try:
        queues = [[f"idle{i}"] for i in range(n_workers)]
        with RawWorkers(url, queues, log_dir=ctx.log_dir) as raw:
            raw.wait_ready(app, timeout=ctx.pick(120.0, 300.0))
            with appendonly(counter.r):
                time.sleep(config.heartbeat_interval)  # past the start-up's own writes
                window = idle_window(counter, seconds)
    finally:
        counter.close()
        app.close()
    per = config.heartbeat_interval / window.delta.seconds / n_workers
    names = by_name(window.written)
    return RawIdle(
        window.delta.commands * per,
        sum(names.values()) * per,
        Counter({k: v * per for k, v in names.items()}),
    )


def idle_writes(
    ctx: Ctx,
    written: list[list[bytes]],
    swept: str,
    per_beat: float,
    raw: RawIdle,
) -> None:
    """The row of issue 9's own words: one write per worker per beat, whatever its locations.

    Counted from what the server propagated (its AOF: what every replica applies too), one
    entry per command that changed something (:meth:`Propagated.write_commands`). The
    fleet's sweep turn (``swept``: one worker's SET a turn, and the server's DEL when it
    expires) is the fleet's, shared by its workers, not any worker's: shown apart. Beside it,
    raw Celery workers' own (``raw``: :func:`raw_idle`).
    """
    own: Counter[str] = Counter()
    shared = 0
    for cmd in written:
        if len(cmd) > 1 and cmd[1].decode(errors="replace") == swept:
            shared += 1
        else:
            own[cmd[0].decode().lower()] += 1
    writes = sum(own.values()) * per_beat
    ctx.add(
        Row(
            "writes per worker per beat (what Redis propagates: AOF, replicas)",
            "writes",
            writes,
            base=raw.writes,
            base_name="raw Celery worker, one queue",
            ratio=ratio_of(writes, raw.writes) if raw.writes else None,
            target="1 per worker per beat, whatever its locations",
            met=writes <= 1.0,
            note="fleetjobs: "
            + ", ".join(f"{k} {v * per_beat:.2f}" for k, v in own.most_common())
            + f"; besides, the fleet's sweep turn (SET and its expiry's DEL), shared by all "
            f"its workers: {shared * per_beat:.2f} a worker; raw: "
            + (", ".join(f"{k} {v:.2f}" for k, v in raw.by_name.most_common()) or "none"),
        )
    )


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
