"""A console in a process of its own, so that its peak memory is its own to measure.

    python -m bench.console_task fanout URL COUNT       # echo to sim00001..simCOUNT, all back
    python -m bench.console_task output URL LOCATION N  # run "seq N", stream every line back

Prints one JSON object on stdout: the seconds from ``start`` to each milestone. Imports
only what a console needs (the public API), and nothing of the benchmark harness.
"""

from __future__ import annotations

import json
import sys
import time

from fleetjobs import Config, Fleet

TIMEOUT = 3600.0


def location(i: int) -> str:
    """The name of simulated location number ``i`` (from 1)."""
    return f"sim{i:05d}"


def fanout(url: str, count: int) -> dict[str, float | int]:
    locs = [location(i) for i in range(1, count + 1)]
    with Fleet(config=Config(redis_url=url)) as fleet:
        t0 = time.perf_counter()
        job = fleet.start("echo", "x", locations=locs, throttle_limit=count)
        t1 = time.perf_counter()
        if not fleet.wait([job], timeout=TIMEOUT):
            raise SystemExit(f"the fan-out to {count} did not finish")
        t2 = time.perf_counter()
        out = fleet.receive(job)
        t3 = time.perf_counter()
        if len(out) != count or set(out) != {"x"}:
            raise SystemExit(f"the fan-out to {count} received {len(out)} values")
        return {"job": job.id, "start": t1 - t0, "finished": t2 - t0, "received": t3 - t0}


def output(url: str, loc: str, lines: int) -> dict[str, float | int]:
    with Fleet(config=Config(redis_url=url)) as fleet:
        t0 = time.perf_counter()
        job = fleet.start("run", f"seq {lines}", locations=loc)
        t1 = time.perf_counter()
        count, first = 0, 0.0
        for rec in fleet.stream(job, follow=True):
            if rec.stream == "output":
                count += 1
                if count == 1:
                    first = time.perf_counter() - t0
        t2 = time.perf_counter()
        if count != lines:
            raise SystemExit(f"received {count} output lines of {lines}")
        return {"job": job.id, "start": t1 - t0, "first": first, "received": t2 - t0}


def main(argv: list[str]) -> int:
    if argv[:1] == ["fanout"] and len(argv) == 3:
        result = fanout(argv[1], int(argv[2]))
    elif argv[:1] == ["output"] and len(argv) == 4:
        result = output(argv[1], argv[2], int(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
