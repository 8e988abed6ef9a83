"""Output: one job writing many lines (``run "seq N"``: one output record per line).

For each size (quick: 10,000 and 50,000; full: 100,000 and 1,000,000), a fresh worker
(``--allow-shell``, concurrency 1) so that its peak is this size's, and a console in a
process of its own (``bench/console_task.py``) that starts the job and streams every record
back (``fleet.stream(job, follow=True)``, the API under ``receive --wait``): time to the last
line received, the console's peak RSS (it streams, so it should stay flat from one size to
the next), the worker's peak RSS and Redis's peak memory over the job. The floor: ``seq N``
itself to /dev/null.
"""

from __future__ import annotations

import json
import os
import sys

from bench.common import BenchError
from bench.measure import MiB, RedisPeak, run_measured, tree_peak
from bench.report import Ctx, Row, ratio_of
from fleetjobs import Config
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

LOC = "bench01"


def bench_output(ctx: Ctx) -> None:
    sizes = ctx.param("sizes", [10000, 50000], [100000, 1000000])
    ctx.note(
        'one output record per line (`run "seq N"`); the console streams with '
        "fleet.stream(job, follow=True) in a process of its own"
    )
    consoles: list[tuple[int, int]] = []
    with EmbeddedRedis(tcp=True) as server:
        import redis

        r = redis.Redis.from_url(server.url)
        try:
            for n in sizes:
                consoles.append((n, one_size(ctx, server.url, r, n)))
        finally:
            r.close()
    if len(consoles) >= 2:
        (n0, m0), (n1, m1) = consoles[0], consoles[-1]
        rm = ratio_of(m1, m0)
        ctx.add(
            Row(
                f"console peak RSS at {n1:,} lines vs at {n0:,}",
                "B",
                float(m1),
                base=float(m0),
                base_name=f"same at {n0:,}",
                ratio=rm,
                target="flat (<= 1.2x): streamed",
                met=rm is not None and rm <= 1.2,
            )
        )


def one_size(ctx: Ctx, url: str, r: object, n: int) -> int:
    config = Config(redis_url=url)
    workers = LocalWorkers(config, [[LOC]], allow_shell=True, concurrency=1, log_dir=ctx.log_dir)
    try:
        workers.start()
        argv = [sys.executable, "-m", "bench.console_task", "output", url, LOC, str(n)]
        with RedisPeak(r) as peak:
            m = run_measured(argv, os.environ, timeout=7200, keep_stdout=True)
            redis_peak = peak.peak() - peak.before
        if m.returncode != 0:
            raise BenchError(f"the output console exited {m.returncode}: {m.stderr[-500:]}")
        got = json.loads(m.stdout.strip().splitlines()[-1])
        worker_peak = max(tree_peak(p.pid) for p in workers.procs)
    finally:
        workers.stop()
    floor = run_measured(["sh", "-c", f"seq {n}"], timeout=600)
    received = float(got["received"])
    ctx.add(
        Row(
            f"{n:,} lines: start -> last line received",
            "s",
            received,
            base=floor.seconds,
            base_name=f"seq {n} > /dev/null",
            ratio=ratio_of(received, floor.seconds),
            note=f"{n / received:,.0f} lines/s; first line after {float(got['first']):.2f} s",
        )
    )
    ctx.add(Row(f"{n:,} lines: console peak RSS (own process)", "B", float(m.maxrss)))
    ctx.add(Row(f"{n:,} lines: worker peak RSS (main + pool)", "B", float(worker_peak)))
    ctx.add(
        Row(
            f"{n:,} lines: Redis peak memory above its start",
            "B",
            float(redis_peak),
            note=f"{redis_peak / n:.0f} B per line at the peak; "
            f"{redis_peak / MiB:.0f} MiB held while the console lagged",
        )
    )
    return m.maxrss
