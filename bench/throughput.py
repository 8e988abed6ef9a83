"""Throughput: N echo jobs submitted one after another, then every result received.

fleetjobs: ``fleet.start("echo", i, locations=LOC)`` N times, then for each job in order
``fleet.wait([job])`` and ``fleet.receive(job) == [i]``. Raw Celery, the baseline:
``echo.apply_async(args=[i], queue="raw")`` N times (the ``bench.echo`` task of
``bench/raw_celery.py``), then ``.get() == i`` for each. One worker per side with the same
pool and concurrency, on one private Redis; the sides alternate round by round; each round's
jobs are removed (results forgotten) untimed. Rates are N / (first submit .. last result received).

A third side, on the raw worker: ``bench.claimed_echo``, raw Celery whose task first claims its
message in Redis (one Lua script, one round trip from the pool), the least a task that runs at
most once does before it runs, as fleetjobs' claim does: what that promise costs Celery itself,
and how far fleetjobs is from it.

Beside the rates, the CPU each side's processes used over the same span (this console, its
workers with their pools, redis-server), per job: what a job costs the machine, which varies
far less from round to round than a rate on a shared machine, and says whether a slower rate
is work done or time spent waiting (cores left idle).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import BenchError, Sides, both_sides, median
from bench.measure import tree_cpu
from bench.raw_celery import CLAIMED, ECHO
from bench.report import Ctx, Row, ratio_of

LOC = "bench01"
RAW_QUEUE = "raw"
TIMEOUT = 120.0


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far: this console (every thread), one side's workers (main
    processes and pools) and redis-server."""

    console: float
    workers: float
    redis: float

    @staticmethod
    def now(s: Sides, procs: Sequence[Any]) -> Cpu:
        # redis-server's as the other benchmarks read it: INFO cpu (ServerCounter)
        return Cpu(
            time.process_time(), sum(tree_cpu(p.pid) for p in procs), s.counter.snapshot().cpu
        )

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.console - other.console, self.workers - other.workers, self.redis - other.redis
        )

    @property
    def total(self) -> float:
        return self.console + self.workers + self.redis


@dataclass(frozen=True)
class Round:
    rate: float  # jobs/s, first submit to last result received
    submits: float  # jobs/s of the submits alone
    cpu: Cpu  # used over the same span as rate
    seconds: float


def fj_round(s: Sides, n: int) -> Round:
    fleet = s.fleet
    c0 = Cpu.now(s, s.workers.procs)
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
    cpu = Cpu.now(s, s.workers.procs) - c0
    fleet.remove(jobs)
    return Round(n / (t2 - t0), n / (t1 - t0), cpu, t2 - t0)


def raw_round(s: Sides, n: int, task: str = ECHO) -> Round:
    echo = s.app.tasks[task]
    c0 = Cpu.now(s, s.raw.procs)
    t0 = time.perf_counter()
    results = [echo.apply_async(args=[i], queue=RAW_QUEUE) for i in range(n)]
    t1 = time.perf_counter()
    for i, res in enumerate(results):
        value = res.get(timeout=TIMEOUT)
        if value != i:
            raise BenchError(f"raw echo returned {value!r}, not {i}")
    t2 = time.perf_counter()
    cpu = Cpu.now(s, s.raw.procs) - c0
    for res in results:
        res.forget()
    return Round(n / (t2 - t0), n / (t1 - t0), cpu, t2 - t0)


def bench_throughput(ctx: Ctx) -> None:
    n = ctx.param("n", 300, 5000)
    rounds = ctx.param("rounds", 2, 5)
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
    fj: list[Round] = []
    raw: list[Round] = []
    claimed: list[Round] = []
    with both_sides(ctx.log_dir, concurrency=concurrency, pool=pool) as s:
        fj_round(s, 10)  # warm-up: every pool process has run a job
        raw_round(s, 10)
        raw_round(s, 10, CLAIMED)
        for r in range(rounds):
            fj.append(fj_round(s, n))
            raw.append(raw_round(s, n))
            claimed.append(raw_round(s, n, CLAIMED))
            print(
                f"    {pool} round {r + 1}: fleetjobs {fj[-1].rate:.0f} jobs/s "
                f"(submits {fj[-1].submits:.0f}/s, CPU {per_job(fj[-1].cpu.total, n)}), "
                f"raw Celery {raw[-1].rate:.0f} jobs/s (submits {raw[-1].submits:.0f}/s, "
                f"CPU {per_job(raw[-1].cpu.total, n)}), raw Celery with a claim "
                f"{claimed[-1].rate:.0f} jobs/s",
                flush=True,
            )
    each = ", ".join(f"{b.rate / a.rate:.2f}" for a, b in zip(fj, raw, strict=True))
    figures: list[tuple[str, Callable[[Round], float], str, str]] = [
        (
            f"{n:,} jobs submitted then all received, {pool} pool",
            lambda x: x.rate,
            "<= 1.2x",
            f"ratio = raw rate / fleetjobs rate (times slower); median of rounds; each round: "
            f"{each}",
        ),
        (
            f"submits alone (start vs apply_async), {pool} pool",
            lambda x: x.submits,
            "",
            "ratio = raw rate / fleetjobs rate (times slower); median of rounds",
        ),
    ]
    for label, rate_of, target, note in figures:
        a, b = median([rate_of(x) for x in fj]), median([rate_of(x) for x in raw])
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
                note=note,
                n=n,
            )
        )
    # the third side: raw Celery whose task first claims its message (one script round trip
    # in the pool, as fleetjobs' claim is): what "at most once" costs Celery itself
    ctx.add(
        rate_row(
            f"raw Celery with a claim per job (bench.claimed_echo), {pool} pool",
            claimed,
            raw,
            "raw Celery",
            "what at-most-once costs Celery itself: the task first claims its message (a Lua "
            "SET NX, one round trip from the pool, as fleetjobs' claim is); ratio = raw rate "
            "/ this rate (times slower)",
            n,
        )
    )
    ctx.add(
        rate_row(
            f"{n:,} jobs submitted then all received, {pool} pool, vs raw Celery with a claim",
            fj,
            claimed,
            "raw Celery with a claim",
            "ratio = claiming raw rate / fleetjobs rate (times slower)",
            n,
        )
    )
    ctx.add(cpu_row(pool, n, fj, raw))


def rate_row(
    label: str, side: Sequence[Round], base: Sequence[Round], base_name: str, note: str, n: int
) -> Row:
    """A row of one side's median rate beside another's, the ratio in times slower, with
    each round's ratio in the note."""
    each = ", ".join(f"{b.rate / a.rate:.2f}" for a, b in zip(side, base, strict=True))
    a, b = median([x.rate for x in side]), median([x.rate for x in base])
    return Row(
        label,
        "jobs/s",
        a,
        base=b,
        base_name=base_name,
        ratio=ratio_of(b, a),
        note=f"{note}; each round: {each}",
        n=n,
    )


def per_job(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:,.0f} us/job"


def cpu_row(pool: str, n: int, fj: Sequence[Round], raw: Sequence[Round]) -> Row:
    """The CPU a job costs the machine on each side, split by process, and how many of the
    machine's cores each side kept busy (CPU over wall time): fewer busy cores for the same
    CPU per job means time spent waiting, not working."""

    def parts(rounds: Sequence[Round]) -> str:
        def med(f: Callable[[Cpu], float]) -> str:
            return per_job(median([f(x.cpu) for x in rounds]), n)

        busy = median([x.cpu.total / x.seconds for x in rounds])
        return (
            f"console {med(lambda c: c.console)}, workers {med(lambda c: c.workers)}, "
            f"redis-server {med(lambda c: c.redis)}; {busy:.2f} cores busy"
        )

    a = median([x.cpu.total for x in fj]) / n * 1e6
    b = median([x.cpu.total for x in raw]) / n * 1e6
    return Row(
        f"CPU per job, console + workers + redis-server, {pool} pool",
        "us/job",
        a,
        base=b,
        base_name="raw Celery",
        ratio=ratio_of(a, b),
        note=f"fleetjobs: {parts(fj)}; raw: {parts(raw)}; medians of rounds",
        n=n,
    )
