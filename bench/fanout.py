"""Fan-out ("fan-out"): one no-op job to 10, 100, 1,000 locations and every result back.

One private redis-server on a free loopback port. For each size N, the locations ``sim0001``..
are served by 4 simulated hosts: 4 worker processes, each consuming the queues of every 4th
location (``--location`` repeated). Two phases per size, one after the other so that the idle
workers of one side never share the 2 cores with the other side's fan-out:

- fleetjobs: 4 fleetjobs workers (``LocalWorkers``, key prefix ``fjN:``); timed:
  ``fleet.start("echo", "x", locations=[...], throttle_limit=N)`` -> ``fleet.wait([job])`` ->
  ``fleet.receive(job)``, which must hold N values ``"x"``; the job is removed afterwards;
- raw Celery, the baseline: 4 ``celery -A bench.raw_celery worker`` processes (fleetjobs'
  Celery settings, same worker flags), one queue per location (``raw.loc.sim0001``..) split
  the same way; timed: ``group(echo.s("x").set(queue=q) for q in queues).apply_async().get()``
  ("raw group") and, up to ``--each-max`` locations (100), the same group collected with one
  ``AsyncResult.get()`` per task ("raw each"): ``GroupResult.get`` waits in 0.5 s steps, which
  dominates a small fan-out, so "raw each" is the fairer baseline there.

Each phase starts its workers first and prints how long they took to be ready (all hosts
heartbeated / every raw worker answered a ping); that is not part of the fan-out time, and a
size whose workers need more than ``--startup-limit`` seconds (60) is reported and skipped
instead of waited for. One untimed fan-out to one location per worker warms each side up,
then each size is repeated ``--repeats`` times (3); the script prints median times (publish
= until ``start``/``apply_async`` returned; total = until every result was back), their
ratios fleetjobs/raw, and Redis commands per child (server count, idle workers' rate
subtracted, commands run inside Lua scripts included).

Run by hand (never by the tests); about 3 minutes at the defaults on 2 cores::

    .venv/bin/python bench/fanout.py --sizes 10,100,1000 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, group

from fleetjobs import Config, Fleet, FleetJobsError
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BenchError,
    Delta,
    RawWorkers,
    ServerCounter,
    bench_main,
    log_tail,
    median,
    ratio,
)
from bench.raw_celery import ECHO, make_app  # noqa: E402
from bench.report import Ctx, Row, ratio_of  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes", default="10,100,1000", help="comma-separated location counts (10,100,1000)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed fan-outs per size and side (3)")
    ap.add_argument("--workers", type=int, default=4, help="worker processes per side (4)")
    ap.add_argument("--concurrency", type=int, default=1, help="each worker's concurrency (1)")
    ap.add_argument(
        "--startup-limit",
        type=float,
        default=60.0,
        help="skip a size whose workers are not ready in this many seconds (60)",
    )
    ap.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one fan-out may take (120)"
    )
    ap.add_argument(
        "--idle", type=float, default=3.0, help="seconds to measure idle workers' commands (3)"
    )
    ap.add_argument(
        "--each-max",
        type=int,
        default=100,
        help="also collect raw results one .get() at a time up to this size (100)",
    )
    ns = ap.parse_args(argv)
    try:
        ns.sizes = [int(s) for s in ns.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes must be integers separated by commas, got {ns.sizes!r}")
    if not ns.sizes or min(ns.sizes) < 1 or max(ns.sizes) > 9999:
        ap.error("--sizes must be between 1 and 9999")
    if ns.repeats < 1 or ns.workers < 1 or ns.concurrency < 1:
        ap.error("--repeats, --workers and --concurrency must be at least 1")
    if ns.startup_limit <= 0 or ns.timeout <= 0 or ns.idle <= 0:
        ap.error("--startup-limit, --timeout and --idle must be positive")
    return ns


def locations(n: int) -> list[str]:
    return [f"sim{i:04d}" for i in range(1, n + 1)]


def split(items: Sequence[str], parts: int) -> list[list[str]]:
    """Every ``parts``-th item to one part (location i goes to worker i mod parts)."""
    return [list(items[w::parts]) for w in range(parts) if items[w::parts]]


def raw_queue(location: str) -> str:
    return f"raw.loc.{location}"


@dataclass
class Phase:
    """One side at one size: its workers' start-up and its timed fan-outs."""

    side: str
    size: int
    startup: float | None = None
    skipped: str = ""
    publish: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def idle_rate(ns: argparse.Namespace, counter: ServerCounter) -> Delta:
    """What the server does while the workers wait for work (heartbeats, sweeps, BRPOP)."""
    before = counter.snapshot()
    time.sleep(ns.idle)
    return ServerCounter.diff(before, counter.snapshot())


def run_reps(
    ns: argparse.Namespace,
    phase: Phase,
    counter: ServerCounter,
    idle: Delta,
    once: Callable[[], tuple[float, float, Callable[[], None]]],
) -> None:
    """Time ``repeats`` fan-outs, each cleaned up untimed; count their Redis work."""
    phase.notes.append(
        f"idle {idle.commands / idle.seconds:.0f} commands/s, "
        f"{idle.cpu / idle.seconds * 100:.0f}% of a core"
    )
    for _ in range(ns.repeats):
        before = counter.snapshot()
        publish, elapsed, cleanup = once()
        d = ServerCounter.diff(before, counter.snapshot())
        share = d.seconds / idle.seconds
        phase.publish.append(publish)
        phase.total.append(elapsed)
        phase.commands.append((d.commands - idle.commands * share) / phase.size)
        phase.cpu.append(d.cpu - idle.cpu * share)
        cleanup()
        print(
            f"    {phase.side} {phase.size}: publish {publish * 1000:.0f} ms, "
            f"total {elapsed * 1000:.0f} ms",
            flush=True,
        )


@dataclass
class Bench:
    """What every phase shares: the server, the raw Celery app, the counter, the log folder."""

    url: str
    app: Celery
    counter: ServerCounter
    log_dir: Path


def fleetjobs_phase(ns: argparse.Namespace, b: Bench, n: int) -> list[Phase]:
    phase = Phase("fleetjobs", n)
    counter = b.counter
    locs = locations(n)
    groups = split(locs, ns.workers)
    config = Config(redis_url=b.url, prefix=f"fj{n}:")
    workers = LocalWorkers(config, groups, concurrency=ns.concurrency, log_dir=b.log_dir)
    try:
        t = time.perf_counter()
        try:
            workers.start(timeout=ns.startup_limit)
        except FleetJobsError as exc:
            phase.skipped = f"workers not ready: {exc}"
            return [phase]
        phase.startup = time.perf_counter() - t
        print(
            f"  fleetjobs, {n} locations: {len(groups)} workers up in {phase.startup:.1f} s",
            flush=True,
        )
        with Fleet(config=config) as fleet:
            # warm-up: one location per worker, so each pool process has run a job
            warm = [g[0] for g in groups]
            job = fleet.start("echo", "x", locations=warm, throttle_limit=len(warm))
            if not fleet.wait([job], timeout=ns.timeout):
                raise BenchError("the fleetjobs warm-up fan-out did not finish")
            fleet.remove([job])
            hosts_ms = []
            for _ in range(5):
                t = time.perf_counter()
                fleet.host_list.list()
                hosts_ms.append((time.perf_counter() - t) * 1000)
            size = counter.r.memory_usage(f"{config.prefix}hosts") or 0
            phase.notes.append(
                f"host_list.list() (read by every start) {median(hosts_ms):.1f} ms, "
                f"hosts hash {size / 1024:.0f} KiB"
            )

            def once() -> tuple[float, float, Callable[[], None]]:
                t0 = time.perf_counter()
                job = fleet.start("echo", "x", locations=locs, throttle_limit=n)
                t1 = time.perf_counter()
                if not fleet.wait([job], timeout=ns.timeout):
                    state = job.refresh().info.state.value
                    raise BenchError(
                        f"fleetjobs fan-out to {n} not done in {ns.timeout:g} s "
                        f"(job {job.id} is {state})"
                    )
                out = fleet.receive(job)
                t2 = time.perf_counter()
                if len(out) != n or set(out) != {"x"}:
                    raise BenchError(f"fleetjobs fan-out to {n} received {len(out)} values")

                def cleanup() -> None:
                    fleet.remove([job])

                return t1 - t0, t2 - t0, cleanup

            run_reps(ns, phase, counter, idle_rate(ns, counter), once)
    finally:
        workers.stop()
    return [phase]


def raw_phase(ns: argparse.Namespace, b: Bench, n: int) -> list[Phase]:
    """The baseline: ``group(...).apply_async().get()``; up to ``--each-max`` locations also
    collected with one ``AsyncResult.get()`` per task (``GroupResult.get`` waits in 0.5 s
    steps, which a small fan-out's total shows)."""
    phase = Phase("raw group", n)
    app = b.app
    queues = [raw_queue(loc) for loc in locations(n)]
    groups = split(queues, ns.workers)
    workers = RawWorkers(b.url, groups, concurrency=ns.concurrency, log_dir=b.log_dir)
    try:
        t = time.perf_counter()
        workers.start()
        try:
            workers.wait_ready(app, timeout=ns.startup_limit)
        except BenchError as exc:
            phase.skipped = f"workers not ready: {exc}"
            return [phase]
        phase.startup = time.perf_counter() - t
        print(
            f"  raw Celery, {n} queues: {len(groups)} workers up in {phase.startup:.1f} s",
            flush=True,
        )
        warm = group(app.signature(ECHO, args=("x",), queue=g[0]) for g in groups)
        warm_res = warm.apply_async()
        warm_res.get(timeout=ns.timeout)
        warm_res.forget()

        def collect_group(res: Any) -> list[Any]:
            return list(res.get(timeout=ns.timeout))

        def collect_each(res: Any) -> list[Any]:
            deadline = time.monotonic() + ns.timeout
            return [r.get(timeout=max(0.1, deadline - time.monotonic())) for r in res.results]

        def fan_out(collect: Callable[[Any], list[Any]]) -> tuple[float, float, Callable[[], None]]:
            fan = group(app.signature(ECHO, args=("x",), queue=q) for q in queues)
            t0 = time.perf_counter()
            res: Any = fan.apply_async()
            t1 = time.perf_counter()
            values = collect(res)
            t2 = time.perf_counter()
            if len(values) != n or set(values) != {"x"}:
                raise BenchError(f"raw fan-out to {n} returned {len(values)} values")
            return t1 - t0, t2 - t0, res.forget

        idle = idle_rate(ns, b.counter)
        run_reps(ns, phase, b.counter, idle, lambda: fan_out(collect_group))
        phases = [phase]
        if n <= ns.each_max:
            each = Phase("raw each", n)
            run_reps(ns, each, b.counter, idle, lambda: fan_out(collect_each))
            phases.append(each)
    finally:
        workers.stop()
    return phases


def report(sizes: list[list[Phase]]) -> None:
    print()
    print("fan-out of one no-op job (echo 'x'), median of the timed runs (ms)")
    print(
        f"  {'locations':>9} {'side':<13}{'workers up s':>13}{'publish':>10}{'total':>10}"
        f"{'per child':>11}{'cmds/child':>12}{'redis cpu':>11}"
    )
    for phases in sizes:
        for ph in phases:
            if ph.skipped:
                print(f"  {ph.size:>9} {ph.side:<13}  skipped: {ph.skipped}")
                continue
            if not ph.total:
                print(f"  {ph.size:>9} {ph.side:<13}  no runs")
                continue
            pub, tot = median(ph.publish) * 1000, median(ph.total) * 1000
            up = f"{ph.startup:.1f}" if ph.startup is not None else "-"
            print(
                f"  {ph.size:>9} {ph.side:<13}{up:>13}{pub:>10.1f}{tot:>10.1f}"
                f"{tot / ph.size:>11.2f}{median(ph.commands):>12.1f}"
                f"{median(ph.cpu) * 1000:>11.0f}"
            )
        fj = phases[0]
        for raw in phases[1:]:
            if fj.total and raw.total:
                label = f"fj/{raw.side.removeprefix('raw ')}"
                print(
                    f"  {fj.size:>9} {label:<13}{'ratio':>13}"
                    f"{ratio(median(fj.publish), median(raw.publish)):>10}"
                    f"{ratio(median(fj.total), median(raw.total)):>10}{'':>11}"
                    f"{ratio(median(fj.commands), median(raw.commands)):>12}"
                    f"{ratio(median(fj.cpu), median(raw.cpu)):>11}"
                )
    for phases in sizes:
        for ph in phases:
            if ph.notes:
                print(f"  {ph.size} {ph.side}: " + "; ".join(ph.notes))
    print("  raw group: group(...).apply_async().get(); raw each: the same group collected")
    print("  with one AsyncResult.get() per task. cmds/child: server commands per location,")
    print("  incl. those inside Lua scripts, and redis cpu: redis-server CPU ms per fan-out,")
    print("  both less the idle workers' rate (heartbeats, sweeps, BRPOP timeouts)")
    print()


def guarded(
    fn: Callable[[argparse.Namespace, Bench, int], list[Phase]],
    failed: Phase,
    ns: argparse.Namespace,
    b: Bench,
) -> list[Phase]:
    """Run one side at one size; a failure is reported as such and the next size still runs."""
    try:
        phases = fn(ns, b, failed.size)
    except (BenchError, FleetJobsError) as exc:
        failed.skipped = f"failed: {exc}"
        print(f"  {failed.side}, {failed.size}: {failed.skipped}\n{log_tail(b.log_dir)}")
        return [failed]
    for phase in phases:
        if phase.skipped:
            print(f"  {phase.side}, {phase.size}: skipped ({phase.skipped})", flush=True)
    return phases


def run(ns: argparse.Namespace, log_dir: Path) -> None:
    sizes: list[list[Phase]] = []
    with EmbeddedRedis(tcp=True) as server:
        print(f"private redis-server at {server.url}")
        print(
            f"{ns.workers} workers per side, concurrency {ns.concurrency}, "
            f"{ns.repeats} timed runs per size and side",
            flush=True,
        )
        b = Bench(server.url, make_app(server.url), ServerCounter(server.url), log_dir)
        try:
            for n in ns.sizes:
                fj = guarded(fleetjobs_phase, Phase("fleetjobs", n), ns, b)
                raw = guarded(raw_phase, Phase("raw group", n), ns, b)
                sizes.append(fj + raw)
        finally:
            b.counter.close()
            b.app.close()
            if sizes:
                report(sizes)


def bench_fanout(ctx: Ctx) -> None:
    """The suite's form: the sizes in turn, fleetjobs' phase then raw Celery's at each."""
    sizes = ctx.param("sizes", [10, 100], [10, 100, 1000])
    repeats = ctx.param("repeats", 2, 3)
    ns = parse(["--sizes", ",".join(map(str, sizes)), "--repeats", str(repeats)])
    ctx.params["workers"] = f"{ns.workers} per side, concurrency {ns.concurrency}"
    with EmbeddedRedis(tcp=True) as server:
        b = Bench(server.url, make_app(server.url), ServerCounter(server.url), ctx.log_dir)
        try:
            for n in sizes:
                fj = guarded(fleetjobs_phase, Phase("fleetjobs", n), ns, b)
                raw = guarded(raw_phase, Phase("raw group", n), ns, b)
                add_rows(ctx, fj[0], raw)
        finally:
            b.counter.close()
            b.app.close()


def add_rows(ctx: Ctx, fj: Phase, raws: list[Phase]) -> None:
    for raw in raws:
        if fj.skipped or raw.skipped or not fj.total or not raw.total:
            ctx.note(f"{fj.size} locations vs {raw.side}: {fj.skipped or raw.skipped or 'no runs'}")
            continue
        a, b = median(fj.total), median(raw.total)
        r = ratio_of(a, b)
        ctx.add(
            Row(
                f"fan-out to {fj.size:,} locations, start -> all received vs {raw.side}",
                "s",
                a,
                base=b,
                base_name=f"raw Celery ({raw.side})",
                ratio=r,
                target="<= 1.2x" if fj.size >= 1000 and raw.side == "raw group" else "",
                met=(r <= 1.2) if (r is not None and fj.size >= 1000) else None,
                note=f"commands per child: fleetjobs {median(fj.commands):.1f}, "
                f"raw {median(raw.commands):.1f}",
                n=len(fj.total),
            )
        )


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        "bench/fanout.py: one job fanned out to many locations, fleetjobs vs raw Celery",
        run,
        parse(argv),
    )


if __name__ == "__main__":
    sys.exit(main())
