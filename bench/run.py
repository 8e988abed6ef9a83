"""The benchmark suite: every benchmark, or the ones named, each against its baseline.

    .venv/bin/python bench/run.py --quick            # all of them, small counts (minutes)
    .venv/bin/python bench/run.py                    # all of them, full counts (by hand)
    .venv/bin/python bench/run.py throughput --quick # one of them
    .venv/bin/python bench/run.py commands --quick --set n=5 --out-dir /tmp/x

Each benchmark starts its own private redis-server on a free loopback port and its own
workers (fleetjobs' and raw Celery's, with the same settings), prints its figures as it goes,
and its section of ``results.json`` and ``RESULTS.md`` (in ``--out-dir``, default ``bench/``)
is rewritten as soon as it ends; sections of benchmarks not run now are kept as they were.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.common import exit_cleanly_on_sigterm, log_tail  # noqa: E402
from bench.report import (  # noqa: E402
    ORDER,
    TITLES,
    Ctx,
    machine,
    machine_line,
    print_table,
    save,
    section,
)

# benchmark name -> "module:function"; imported only when run
BENCHES = {
    "roundtrip": "bench.roundtrip:bench_roundtrip",
    "throughput": "bench.throughput:bench_throughput",
    "commands": "bench.commands:bench_commands",
    "cli": "bench.cli_startup:bench_cli",
    "registry": "bench.registry_scale:bench_registry",
    "fleet": "bench.fleet_scale:bench_fleet",
    "output": "bench.output:bench_output",
    "ansible": "bench.vs_ansible:bench_ansible",
    "fanout": "bench.fanout:bench_fanout",
    "confined": "bench.confined:bench_confined",
}
assert list(BENCHES) == ORDER


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "names", nargs="*", metavar="BENCH", help="benchmarks to run: " + ", ".join(BENCHES)
    )
    ap.add_argument("--quick", action="store_true", help="small counts: minutes, not an hour")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "bench",
        help="where results.json and RESULTS.md go (default bench/)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter of the benchmarks run (n=5, sizes=1000,10000)",
    )
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ns = ap.parse_args(argv)
    unknown = [n for n in ns.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHES)}")
    ns.overrides = {}
    for item in ns.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--set {item!r} is not KEY=VALUE")
        ns.overrides[key] = value
    return ns


def load(name: str) -> Callable[[Ctx], None]:
    module, _, fn = BENCHES[name].partition(":")
    found: Callable[[Ctx], None] = getattr(importlib.import_module(module), fn)
    return found


def run_one(name: str, ns: argparse.Namespace) -> tuple[str, float]:
    """Run one benchmark and save its section; returns its status and duration."""
    print(f"\n=== {TITLES[name]} ({'quick' if ns.quick else 'full'}) ===", flush=True)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fleetjobs-bench-{name}-") as tmp:
        ctx = Ctx(name, ns.quick, Path(tmp), overrides=dict(ns.overrides), machine=machine())
        status, error = "ok", ""
        try:
            load(name)(ctx)
        except KeyboardInterrupt:
            status, error = "interrupted", "Ctrl-C"
            raise
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            print(log_tail(ctx.log_dir), file=sys.stderr)
        finally:
            seconds = time.perf_counter() - t
            if ctx.rows or status != "ok" or ctx.notes:
                save(ns.out_dir, {name: section(ctx, status, seconds, error)})
    print()
    print_table(ctx.rows)
    print(f"--- {name}: {status} in {seconds:.1f} s", flush=True)
    return status, seconds


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    if ns.list:
        for name in BENCHES:
            print(f"{name:<12}{TITLES[name]}")
        return 0
    exit_cleanly_on_sigterm()
    # workers import bench.* (raw Celery's app, the pool launcher) from the repository root
    parts = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    print("fleetjobs benchmarks: " + machine_line(machine()))
    print("(the machine may be shared: every time here is noisy; compare ratios in one run)")
    names = ns.names or list(BENCHES)
    results = {}
    try:
        for name in names:
            results[name] = run_one(name, ns)
    except KeyboardInterrupt:
        print("\ninterrupted: workers and servers stopped", file=sys.stderr)
        return 130
    print("\nsummary: " + ", ".join(f"{n} {s} ({t:.0f} s)" for n, (s, t) in results.items()))
    print(f"written: {ns.out_dir / 'RESULTS.md'}, {ns.out_dir / 'results.json'}")
    return 0 if all(s == "ok" for s, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
