"""Throughput: N echo jobs submitted one after another, then every result received.

fleetjobs: ``fleet.start("echo", i, locations=LOC)`` N times, then for each job in order
``fleet.wait([job])`` and ``fleet.receive(job) == [i]``. Raw Celery, the baseline:
``echo.apply_async(args=[i], queue="raw")`` N times (the ``bench.echo`` task of
``bench/raw_celery.py``), then ``.get() == i`` for each. One worker per side with the same
pool and concurrency, on one private Redis; the sides alternate round by round; each round's
jobs are removed (results forgotten) untimed. Rates are N / (first submit .. last result received).
"""

from __future__ import annotations

import time

from bench.common import BenchError, Sides, both_sides, median
from bench.raw_celery import ECHO
from bench.report import Ctx, Row, ratio_of

LOC = "bench01"
RAW_QUEUE = "raw"
TIMEOUT = 120.0


def fj_round(s: Sides, n: int) -> tuple[float, float]:
    """(jobs/s end to end, jobs/s of the submits alone)."""
    fleet = s.fleet
    t0 = time.perf_counter()
    jobs = [fleet.start("echo", i, locations=LOC) for i in range(n)]
    t1 = time.perf_counter()
    for i, job in enumerate(jobs):
        if not fleet.wait([job], timeout=TIMEOUT):
            raise BenchError(f"fleetjobs job {job.id} not finished in {TIMEOUT:g} s")
        out = list(fleet.receive(job))
        if out != [i]:
            raise BenchError(f"fleetjobs job {job.id} received {out!r}, not [{i}]")
    t2 = time.perf_counter()
    fleet.remove(jobs)
    return n / (t2 - t0), n / (t1 - t0)


def raw_round(s: Sides, n: int) -> tuple[float, float]:
    echo = s.app.tasks[ECHO]
    t0 = time.perf_counter()
    results = [echo.apply_async(args=[i], queue=RAW_QUEUE) for i in range(n)]
    t1 = time.perf_counter()
    for i, res in enumerate(results):
        value = res.get(timeout=TIMEOUT)
        if value != i:
            raise BenchError(f"raw echo returned {value!r}, not {i}")
    t2 = time.perf_counter()
    for res in results:
        res.forget()
    return n / (t2 - t0), n / (t1 - t0)


def bench_throughput(ctx: Ctx) -> None:
    n = ctx.param("n", 300, 5000)
    rounds = ctx.param("rounds", 2, 3)
    pools = ctx.param("pools", ["prefork", "threads"], ["prefork", "threads"])
    concurrency = ctx.param("concurrency", 2, 2)
    ctx.note(
        "fleetjobs receives each job with wait([job]) then receive(job); raw Celery with "
        "apply_async() then AsyncResult.get(); one worker per side, alternated round by round"
    )
    for pool in pools:
        try:
            one_pool(ctx, pool, n, rounds, concurrency)
        except Exception as exc:
            ctx.note(f"{pool} pool failed: {type(exc).__name__}: {exc}")
            if pool == pools[-1] and not ctx.rows:
                raise


def one_pool(ctx: Ctx, pool: str, n: int, rounds: int, concurrency: int) -> None:
    fj: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    with both_sides(ctx.log_dir, concurrency=concurrency, pool=pool) as s:
        fj_round(s, 10)  # warm-up: every pool process has run a job
        raw_round(s, 10)
        for r in range(rounds):
            fj.append(fj_round(s, n))
            raw.append(raw_round(s, n))
            print(
                f"    {pool} round {r + 1}: fleetjobs {fj[-1][0]:.0f} jobs/s "
                f"(submits {fj[-1][1]:.0f}/s), raw Celery {raw[-1][0]:.0f} jobs/s "
                f"(submits {raw[-1][1]:.0f}/s)",
                flush=True,
            )
    for label, col, target in (
        (f"{n:,} jobs submitted then all received, {pool} pool", 0, "<= 1.2x"),
        (f"submits alone (start vs apply_async), {pool} pool", 1, ""),
    ):
        a, b = median([x[col] for x in fj]), median([x[col] for x in raw])
        slower = ratio_of(b, a)  # how many times slower fleetjobs is
        ctx.add(
            Row(
                label,
                "jobs/s",
                a,
                base=b,
                base_name="raw Celery",
                ratio=slower,
                target=target,
                met=(slower <= 1.2) if (target and slower is not None) else None,
                note="ratio = raw rate / fleetjobs rate (times slower); median of rounds",
                n=n,
            )
        )
