"""Start latency of ``fleetjobs worker --fresh-process`` (a new pool process per job).

One private redis-server, two workers (concurrency 1): ``shared`` (long-lived pool processes)
and ``fresh`` (``--fresh-process``: Celery's ``worker_max_tasks_per_child=1``). After a
warm-up, N round trips ``start("echo") -> wait -> receive`` alternate between the two; the
median and 90th percentile of each are printed. Run by hand::

    .venv/bin/python bench/fresh_process.py --n 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers


def round_trip(fleet: Fleet, location: str) -> float:
    began = time.perf_counter()
    job = fleet.start("echo", "x", locations=location)
    fleet.wait(job, timeout=60)
    assert list(fleet.receive(job)) == ["x"]
    took = time.perf_counter() - began
    fleet.remove(job)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=40)
    ns = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="fleetjobs-bench-"))
    with EmbeddedRedis(tcp=True) as server:
        cfg = Config(redis_url=server.url, prefix="fp:", heartbeat_interval=1.0)
        with (
            LocalWorkers(cfg, [["shared"]], concurrency=1, log_dir=logs),
            LocalWorkers(
                cfg, [["fresh"]], concurrency=1, extra_args=["--fresh-process"], log_dir=logs
            ),
            Fleet(config=cfg) as fleet,
        ):
            for loc in ("shared", "fresh", "shared", "fresh"):
                round_trip(fleet, loc)  # warm-up
            times: dict[str, list[float]] = {"shared": [], "fresh": []}
            for _ in range(ns.n):
                for loc in times:
                    times[loc].append(round_trip(fleet, loc))
    for loc, values in times.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(
            f"{loc:7} n={len(values)} median {statistics.median(values) * 1000:.1f} ms"
            f"  p90 {p90 * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
