"""Round trip of one job ("job verbs"): fleetjobs' facade against raw Celery, same Redis.

One private redis-server on a free loopback port (``EmbeddedRedis(tcp=True)``), one fleetjobs
worker serving one location (concurrency 1), and, as the baseline in the same run, one raw
Celery worker (``bench/raw_celery.py``: the same Celery settings, built by fleetjobs'
``make_celery``, key prefix ``raw:``) consuming the queue ``raw`` with the same worker flags.
After a warm-up, N iterations alternate between the two sides and time:

- (a)  ``fleet.start("echo", "x", locations=LOC)`` returning, vs
  (a') ``app.send_task("bench.echo", args=["x"], queue="raw")`` returning;
- (b)  the round trip ``start`` -> ``fleet.wait([job])`` -> ``fleet.receive(job) == ["x"]``, vs
  (b') ``send_task(...).get() == "x"``.

Each fleetjobs job is removed after it is measured, and each raw result forgotten, outside the
timed region. Then the Redis work: the server's ``total_commands_processed`` (and ``INFO
commandstats``) over a batch of N round trips per side, divided by N, less what the idle
workers cost in the same time (heartbeats, sweeps, BRPOP timeouts: measured alone over an idle
interval first); and what this process itself sends (requests and new connections per verb,
counted by wrapping redis-py's connection, which kombu and the result backend use too).

Run by hand (never by the tests); it takes about a minute at the defaults on 2 cores::

    .venv/bin/python bench/roundtrip.py --n 200
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from fleetjobs import Config, Fleet, Job
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BenchError,
    ClientRequests,
    Delta,
    RawWorkers,
    ServerCounter,
    bench_main,
    both_sides,
    median,
    percentile,
    ratio,
)
from bench.raw_celery import ECHO, make_app  # noqa: E402
from bench.report import Ctx, Row, ratio_of  # noqa: E402

LOCATION = "bench01"
RAW_QUEUE = "raw"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="timed round trips per side (200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed round trips per side (20)")
    ap.add_argument(
        "--idle", type=float, default=10.0, help="seconds to measure idle workers' commands (10)"
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one job may take (30)")
    ns = ap.parse_args(argv)
    if ns.n < 1 or ns.warmup < 0 or ns.idle <= 0 or ns.timeout <= 0:
        ap.error("--n must be >= 1, --warmup >= 0, --idle and --timeout > 0")
    return ns


def _as(reqs: ClientRequests | None, label: str) -> contextlib.AbstractContextManager[None]:
    return reqs.as_(label) if reqs is not None else contextlib.nullcontext()


def fj_round_trip(
    fleet: Fleet, timeout: float, reqs: ClientRequests | None = None
) -> tuple[float, float, Job]:
    """(seconds for start to return, seconds for start+wait+receive, the job)."""
    t0 = time.perf_counter()
    with _as(reqs, "start"):
        job = fleet.start("echo", "x", locations=LOCATION)
    t1 = time.perf_counter()
    with _as(reqs, "wait"):
        done = fleet.wait([job], timeout=timeout)
    if not done:
        raise BenchError(f"fleetjobs job {job.id} did not finish in {timeout:g} s")
    with _as(reqs, "receive"):
        out = fleet.receive(job)
    t2 = time.perf_counter()
    if list(out) != ["x"]:
        raise BenchError(f"fleetjobs job {job.id} received {list(out)!r}, not ['x']")
    return t1 - t0, t2 - t0, job


def raw_round_trip(
    app: Celery, timeout: float, reqs: ClientRequests | None = None
) -> tuple[float, float, Any]:
    """(seconds for send_task to return, seconds for send_task+get, the AsyncResult)."""
    t0 = time.perf_counter()
    with _as(reqs, "send_task"):
        res = app.send_task(ECHO, args=["x"], queue=RAW_QUEUE)
    t1 = time.perf_counter()
    with _as(reqs, "get"):
        value = res.get(timeout=timeout)
    t2 = time.perf_counter()
    if value != "x":
        raise BenchError(f"raw echo returned {value!r}, not 'x'")
    return t1 - t0, t2 - t0, res


def timed(
    n: int,
    warmup: int,
    fj: Callable[[], tuple[float, float]],
    raw: Callable[[], tuple[float, float]],
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Warm up both sides, then alternate them n times (drift hits both alike)."""
    for _ in range(warmup):
        fj()
        raw()
    fj_times, raw_times = [], []
    for _ in range(n):
        fj_times.append(fj())
        raw_times.append(raw())
    return fj_times, raw_times


def print_latency(fj: list[tuple[float, float]], raw: list[tuple[float, float]]) -> None:
    rows = [
        ("(a) start returns", "(a') send_task returns", 0),
        ("(b) start+wait+receive", "(b') send_task+get", 1),
    ]
    print(f"latency over {len(fj)} round trips per side (ms)")
    head = (
        f"  {'fleetjobs operation':<24}{'median':>9}{'p99':>9}   "
        f"{'raw Celery baseline':<24}{'median':>9}{'p99':>9}   {'ratio med':>9}{'ratio p99':>10}"
    )
    print(head)
    for fj_name, raw_name, col in rows:
        a = [t[col] * 1000 for t in fj]
        b = [t[col] * 1000 for t in raw]
        am, ap, bm, bp = median(a), percentile(a, 99), median(b), percentile(b, 99)
        print(
            f"  {fj_name:<24}{am:>9.2f}{ap:>9.2f}   {raw_name:<24}{bm:>9.2f}{bp:>9.2f}   "
            f"{ratio(am, bm):>9}{ratio(ap, bp):>10}"
        )
    print()


@dataclass
class Batch:
    """What the server did and what this process sent over a batch of ``n`` round trips."""

    label: str
    n: int
    server: Delta
    sends: Counter[str]
    connects: Counter[str]

    def net(self, idle: Delta) -> float:
        """Commands per round trip, less what the idle workers would have run meanwhile."""
        return (self.server.commands - idle.commands * self.server.seconds / idle.seconds) / self.n

    def net_cpu_us(self, idle: Delta) -> float:
        """redis-server CPU per round trip (microseconds), less the idle workers' share."""
        busy = self.server.cpu - idle.cpu * self.server.seconds / idle.seconds
        return busy / self.n * 1e6


def count_batch(
    counter: ServerCounter, label: str, n: int, body: Callable[[ClientRequests], None]
) -> Batch:
    before = counter.snapshot()
    with ClientRequests() as reqs:
        body(reqs)
        after = counter.snapshot()
    return Batch(label, n, ServerCounter.diff(before, after), reqs.sends, reqs.connects)


def print_commands(idle: Delta, fj: Batch, raw: Batch, remove: Batch) -> None:
    rate = idle.commands / idle.seconds
    print("Redis work per round trip (server: INFO total_commands_processed and cpu, /N)")
    print(
        f"  idle, both workers up: {rate:.1f} commands/s over {idle.seconds:.1f} s "
        f"({_top(idle.calls, idle.seconds, 6, 's')})"
    )
    print(
        f"  {'':<12}{'commands':>10}{'net idle':>10}{'scripts':>9}{'redis cpu us':>14}"
        f"{'console reqs':>14}{'new sockets':>13}{'batch s':>9}"
    )
    for b in (fj, raw):
        scripts = (b.server.calls["evalsha"] + b.server.calls["eval"]) / b.n
        print(
            f"  {b.label:<12}{b.server.commands / b.n:>10.1f}{b.net(idle):>10.1f}"
            f"{scripts:>9.1f}{b.net_cpu_us(idle):>14.0f}"
            f"{sum(b.sends.values()) / b.n:>14.1f}{sum(b.connects.values()) / b.n:>13.2f}"
            f"{b.server.seconds:>9.2f}"
        )
    print(
        f"  {'ratio':<12}{ratio(fj.server.commands, raw.server.commands):>10}"
        f"{ratio(fj.net(idle), raw.net(idle)):>10}{'':>9}"
        f"{ratio(fj.net_cpu_us(idle), raw.net_cpu_us(idle)):>14}"
        f"{ratio(sum(fj.sends.values()), sum(raw.sends.values())):>14}"
    )
    print("  (commands include those run inside Lua scripts; 'net idle' and redis cpu subtract")
    print("   the idle rate times the batch's duration, which slightly over-subtracts BRPOP")
    print("   timeouts; console reqs: writes this process made, one per command or pipeline,")
    print("   i.e. network round trips, including the handshakes of new sockets)")
    for b in (fj, raw):
        net_names = _net(b.server.calls, idle.calls, b.server.seconds / idle.seconds)
        print(f"  {b.label} commands per round trip, net of idle: {_top(net_names, b.n, 14)}")
    for b in (fj, raw):
        verbs = ", ".join(
            f"{k} {v / b.n:.1f}"
            + (f" (new sockets {b.connects[k] / b.n:.2f})" if b.connects[k] else "")
            for k, v in sorted(b.sends.items(), key=lambda kv: -kv[1])
            if v / b.n >= 0.05
        )
        print(f"  {b.label} console requests per call: {verbs}")
    print(
        f"  fleetjobs remove (not in the round trip): {remove.net(idle):.1f} commands, "
        f"{sum(remove.sends.values()) / remove.n:.1f} console requests per job"
    )
    print()


def _net(names: Counter[str], idle: Counter[str], scale: float) -> Counter[str]:
    out: Counter[str] = Counter()
    for k, v in names.items():
        left = v - idle.get(k, 0) * scale
        if left > 0.5:
            out[k] = round(left)
    return out


def _top(names: Counter[str], per: float, k: int, unit: str = "") -> str:
    items = [
        f"{name} {v / per:.1f}{'/' + unit if unit else ''}" for name, v in names.most_common(k)
    ]
    rest = sum(names.values()) - sum(v for _, v in names.most_common(k))
    if rest > 0:
        items.append(f"others {rest / per:.1f}")
    return ", ".join(items) or "none"


def pubsub_report(counter: ServerCounter) -> None:
    """Clients still subscribed to something, and how much output Redis holds for them."""
    subs = []
    for c in counter.r.client_list():
        sub, psub = int(c.get("sub", 0)), int(c.get("psub", 0))
        omem = int(c.get("omem", 0))
        if sub or psub or omem:
            subs.append(f"{c.get('addr')} sub={sub} psub={psub} omem={omem}")
    subs = subs or ["none"]
    print("pub/sub subscriptions left at the end (a leak would show here): " + "; ".join(subs))


def run(ns: argparse.Namespace, log_dir: Path) -> None:
    with EmbeddedRedis(tcp=True) as server:
        print(f"private redis-server at {server.url}")
        config = Config(redis_url=server.url)
        # not `with LocalWorkers(...)`: a start that fails half-way would leave its first
        # workers running, since `with` calls no __exit__ when __enter__ raises
        workers = LocalWorkers(config, [[LOCATION]], concurrency=1, log_dir=log_dir)
        app = make_app(server.url)
        counter = ServerCounter(server.url)
        try:
            t = time.perf_counter()
            workers.start()
            up = time.perf_counter() - t
            print(f"fleetjobs worker ({LOCATION}, concurrency 1) up in {up:.2f} s")
            t = time.perf_counter()
            with RawWorkers(server.url, [[RAW_QUEUE]], concurrency=1, log_dir=log_dir) as raw:
                raw.wait_ready(app, timeout=60.0)
                up = time.perf_counter() - t
                print(f"raw Celery worker (queue {RAW_QUEUE!r}, -c 1) up in {up:.2f} s")
                with Fleet(config=config) as fleet:
                    measure(ns, fleet, app, counter)
                pubsub_report(counter)
        finally:
            workers.stop()
            counter.close()
            app.close()


def measure(ns: argparse.Namespace, fleet: Fleet, app: Celery, counter: ServerCounter) -> None:
    def fj() -> tuple[float, float]:
        a, b, job = fj_round_trip(fleet, ns.timeout)
        fleet.remove([job])
        return a, b

    def raw() -> tuple[float, float]:
        a, b, res = raw_round_trip(app, ns.timeout)
        res.forget()
        return a, b

    print(f"warm-up {ns.warmup} and timing {ns.n} round trips per side, alternating...", flush=True)
    fj_times, raw_times = timed(ns.n, ns.warmup, fj, raw)
    print()
    print_latency(fj_times, raw_times)

    print(f"counting Redis commands: {ns.idle:g} s idle, then {ns.n} round trips per side...")
    before = counter.snapshot()
    time.sleep(ns.idle)
    idle = ServerCounter.diff(before, counter.snapshot())

    jobs: list[Job] = []

    def fj_body(reqs: ClientRequests) -> None:
        for _ in range(ns.n):
            jobs.append(fj_round_trip(fleet, ns.timeout, reqs)[2])

    results: list[Any] = []

    def raw_body(reqs: ClientRequests) -> None:
        for _ in range(ns.n):
            results.append(raw_round_trip(app, ns.timeout, reqs)[2])

    def remove_body(reqs: ClientRequests) -> None:
        for job in jobs:
            with reqs.as_("remove"):
                fleet.remove([job])

    fj_batch = count_batch(counter, "fleetjobs", ns.n, fj_body)
    raw_batch = count_batch(counter, "raw Celery", ns.n, raw_body)
    rm_batch = count_batch(counter, "remove", ns.n, remove_body)
    for res in results:
        res.forget()
    print()
    print_commands(idle, fj_batch, raw_batch, rm_batch)


def bench_roundtrip(ctx: Ctx) -> None:
    """The suite's form: latency only, one worker per side (prefork, concurrency 2), the two
    sides alternated job by job; Redis commands per verb are ``bench/commands.py``'s."""
    n = ctx.param("n", 30, 200)
    warmup = ctx.param("warmup", 5, 20)
    ctx.params["workers"] = "1 per side, prefork, concurrency 2"
    timeout = 30.0
    with both_sides(ctx.log_dir, locations=[[LOCATION]], raw_queues=[[RAW_QUEUE]]) as s:

        def fj() -> tuple[float, float]:
            a, b, job = fj_round_trip(s.fleet, timeout)
            s.fleet.remove([job])
            return a, b

        def raw() -> tuple[float, float]:
            a, b, res = raw_round_trip(s.app, timeout)
            res.forget()
            return a, b

        fj_times, raw_times = timed(n, warmup, fj, raw)
    figures = [
        ("start returns (vs send_task returns)", 0, ""),
        ("round trip start -> wait -> receive of echo (vs send_task().get())", 1, "<= 1.2x"),
    ]
    for label, col, target in figures:
        a = [t[col] * 1000 for t in fj_times]
        b = [t[col] * 1000 for t in raw_times]
        r = ratio_of(median(a), median(b))
        met = (r <= 1.2) if (target and r is not None) else None
        ctx.add(
            Row(label, "ms", median(a), percentile(a, 99), median(b), percentile(b, 99),
                "raw Celery", r, target, met, n=n)
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        "bench/roundtrip.py: one job's round trip, fleetjobs vs raw Celery", run, parse(argv)
    )


if __name__ == "__main__":
    sys.exit(main())
