"""A schedule every 10 s, watched for a minute under two beats at once (run by hand).

Starts a private Redis, two workers and two ``fleetjobs beat`` processes, adds a schedule
every 10 s on both hosts with ``--max-results 3``, then samples ``get NAME`` every half second
for ``--seconds`` (60) and prints: the firings (run ids and times, from the runs seen), the gaps
between them, how many runs ``get`` listed at each sample, which beat held the lock, and
whether any firing happened twice.

    .venv/bin/python bench/schedule_minute.py [--seconds 60] [--every 10] [--max-results 3]
    .venv/bin/python bench/schedule_minute.py --every 1 --seconds 40 --max-results 100 \
        --interval 1 --lock-timeout 5 --kill    # SIGKILL the active beat half way
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--max-results", type=int, default=3)
    parser.add_argument("--interval", type=float, help="FLEETJOBS_BEAT_INTERVAL of the beats")
    parser.add_argument("--lock-timeout", type=float, help="FLEETJOBS_BEAT_LOCK_TIMEOUT")
    parser.add_argument(
        "--kill", action="store_true", help="SIGKILL the beat holding the lock half way"
    )
    opts = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="fleetjobs-sched-"))
    with EmbeddedRedis() as server:
        cfg = Config(redis_url=server.url, prefix="m:", heartbeat_interval=1.0, host_ttl=5.0)
        env = {**os.environ, "FLEETJOBS_REDIS_URL": cfg.redis_url, "FLEETJOBS_PREFIX": cfg.prefix}
        if opts.interval:
            env["FLEETJOBS_BEAT_INTERVAL"] = str(opts.interval)
        if opts.lock_timeout:
            env["FLEETJOBS_BEAT_LOCK_TIMEOUT"] = str(opts.lock_timeout)
        with LocalWorkers(cfg, [["web01"], ["web02"]], log_dir=logs), Fleet(config=cfg) as fleet:
            while len([h for h in fleet.hosts() if h.online]) < 2:
                time.sleep(0.2)
            name = "every10"
            fleet.schedules.add(
                name,
                "echo",
                "tick",
                every=opts.every,
                locations="web01,web02",
                max_results=opts.max_results,
            )
            beats = []
            for tag in ("a", "b"):
                out = (logs / f"beat-{tag}.log").open("wb")
                beats.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "fleetjobs", "beat"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            start = time.time()
            seen: dict[int, float] = {}
            listed: Counter[int] = Counter()
            try:
                killed = ""
                while time.time() - start < opts.seconds:
                    if opts.kill and not killed and time.time() - start > opts.seconds / 2:
                        for tag, proc in zip("ab", beats, strict=True):
                            if "Acquired lock" in (logs / f"beat-{tag}.log").read_text():
                                proc.kill()
                                killed = f"{tag} at +{time.time() - start:.1f} s"
                                break
                    jobs = fleet.get(name=name)
                    listed[len(jobs)] += 1
                    for job in jobs:
                        seen.setdefault(job.id, job.info.created)
                    time.sleep(0.5)
            finally:
                for proc in beats:
                    proc.send_signal(signal.SIGTERM)
                codes = [proc.wait(30) for proc in beats]
            final = fleet.get(name=name)
            for job in final:
                seen.setdefault(job.id, job.info.created)
            info = fleet.schedules.show(name)
            holders = [
                tag
                for tag in ("a", "b")
                if "Acquired lock" in (logs / f"beat-{tag}.log").read_text()
            ]
            times = [seen[i] for i in sorted(seen)]
            gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
            runs_by_second = Counter(int(t) for t in times)
            print(
                f"window: {opts.seconds:g} s, schedule every {opts.every:g} s, "
                f"--max-results {opts.max_results}, two beats "
                f"(interval {env.get('FLEETJOBS_BEAT_INTERVAL', '5')} s, "
                f"lock timeout {env.get('FLEETJOBS_BEAT_LOCK_TIMEOUT', '25')} s)"
            )
            print(f"firings seen: {len(seen)} (run ids {sorted(seen)})")
            print(f"gaps between firings (s): {gaps}")
            print(f"firings in the same second: {sum(n - 1 for n in runs_by_second.values())}")
            print(f"runs listed by get per sample: {dict(sorted(listed.items()))}")
            print(
                f"runs listed at the end: {[j.id for j in final]} "
                f"states {[j.info.state.value for j in final]}"
            )
            print(f"schedule show: runs {[r.id for r in info.runs]}, skipped {info.skipped}")
            print(f"beats that took the lock: {holders}; exit codes {codes}")
            if opts.kill:
                print(f"killed (SIGKILL) the beat holding the lock: {killed}")
            removed = [i for i in seen if i not in {j.id for j in final}]
            gone = [i for i in removed if not fleet.registry.r.exists(fleet.registry.keys.job(i))]
            print(f"older runs removed: {len(removed)}, their keys gone: {len(gone)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
