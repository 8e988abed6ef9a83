"""History ("get filters"): finding past jobs among many, from the indexes, against a full scan.

One private redis-server. ``--jobs`` (100,000) single-host jobs are created and settled
through the lifecycle, as workers would (create, claim, finish: Completed, one in 20 Failed):
10 actions (``archive_logs`` among them) over 50 locations (``web01``..). Then each query is
timed (median of ``--repeats``) as ``Fleet.get`` runs it, and the same answer by a full scan
(every job loaded and filtered: what ``get`` had to do before the indexes), once:

- ``get --action archive_logs --since 1m``: the last minute's jobs of one action;
- ``get --action archive_logs --location web07 --failed``: one host's failures of one action;
- ``get --failed --since 1d``: every failure of the day;
- ``get --action archive_logs --since 1d``: a tenth of everything (loads ~10,000 snapshots).

All jobs are created now (a start cannot be backdated), so ``--since 1d`` spans them all;
``--since 1m`` spans the last minute's. Run by hand (never by the tests)::

    .venv/bin/python bench/history.py --jobs 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetjobs import Config, Fleet, JobState
from fleetjobs.embedded import EmbeddedRedis
from fleetjobs.lifecycle import JobSpec

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.common import bench_main, median  # noqa: E402

ACTIONS = ["archive_logs", "ping", "run", "echo", "files", "processes", "sleep", "a7", "a8", "a9"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs stored (100000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per query (5)")
    return ap.parse_args(argv)


def fill(fleet: Fleet, n: int) -> float:
    """Create and settle ``n`` jobs through the lifecycle; returns the seconds it took."""
    life = fleet.lifecycle
    t = time.perf_counter()
    for i in range(n):
        action, loc = ACTIONS[i % len(ACTIONS)], f"web{(i // len(ACTIONS)) % 50 + 1:02d}"
        _, _, [child] = life.create(JobSpec(action, [], {}, action, [loc]))
        life.claim(child.id, "bench")
        failed = i % 20 == 0
        life.finish(
            child.id,
            JobState.FAILED if failed else JobState.COMPLETED,
            "archive disk full" if failed else "",
        )
        if i and i % 20_000 == 0:
            print(f"  {i:,} jobs in {time.perf_counter() - t:.1f} s", flush=True)
    return time.perf_counter() - t


def timed(fn: Callable[[], list[Any]], repeats: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        count = len(fn())
        times.append(time.perf_counter() - t)
    return median(times), count


def run(ns: argparse.Namespace, log_dir: Path) -> None:
    del log_dir
    with EmbeddedRedis() as server, Fleet(config=Config(redis_url=server.url)) as fleet:
        took = fill(fleet, ns.jobs)
        print(f"created and settled {ns.jobs:,} jobs in {took:.1f} s ({ns.jobs / took:,.0f}/s)")
        queries: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
            (
                "--action archive_logs --since 1m",
                {"action": "archive_logs", "since": "1m"},
                lambda i: i.action == "archive_logs" and i.created >= time.time() - 60,
            ),
            (
                "--action archive_logs --location web07 --failed",
                {"action": "archive_logs", "location": "web07", "failed": True},
                lambda i: (
                    i.action == "archive_logs"
                    and i.location == "web07"
                    and i.state is JobState.FAILED
                ),
            ),
            (
                "--failed --since 1d",
                {"failed": True, "since": "1d"},
                lambda i: i.state is JobState.FAILED,
            ),
            (
                "--action archive_logs --since 1d",
                {"action": "archive_logs", "since": "1d"},
                lambda i: i.action == "archive_logs",
            ),
        ]
        print(f"\n{'get filter':50} {'jobs':>7} {'indexed':>10} {'full scan':>10}")
        for text, kw, keep in queries:
            seconds, count = timed(lambda kw=kw: fleet.get(**kw), ns.repeats)  # type: ignore[misc]
            t = time.perf_counter()
            scanned = [
                i for b in _all(fleet) for i in fleet.registry.load(b, children=False) if keep(i)
            ]
            scan = time.perf_counter() - t
            assert len(scanned) == count or "1m" in text, (text, len(scanned), count)
            print(f"{text:50} {count:>7,} {seconds * 1000:>8.1f}ms {scan * 1000:>8.0f}ms")


def _all(fleet: Fleet) -> list[list[int]]:
    ids = list(fleet.registry.iter_top_ids())
    return [ids[i : i + 500] for i in range(0, len(ids), 500)]


if __name__ == "__main__":
    sys.exit(bench_main("fleetjobs history: get filters over a large registry", run, parse()))
