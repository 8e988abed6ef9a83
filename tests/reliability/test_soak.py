"""The soak: many jobs over many locations with random stops and removes, while workers are
restarted and one is SIGKILLed holding reserved jobs. At the end every job is finished, every
record was received exactly once, none ran twice, and Redis holds no key of a removed job.

CI runs a short form; ``make soak`` the long one (``SOAK_JOBS=20000 SOAK_LOCATIONS=50``).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet, Job, JobState
from fleetjobs.embedded import LocalWorkers

from ..conftest import FAST, INCLUDE, uniq

JOBS = int(os.environ.get("SOAK_JOBS", "600"))
LOCATIONS = int(os.environ.get("SOAK_LOCATIONS", "12"))
WORKERS = 4  # each serves LOCATIONS / WORKERS locations
RECORDS = 3  # each job outputs 1, 2, 3


def tail_logs(logs: Path, lines: int = 30) -> str:
    """The end of each worker's log, for a failure's message."""
    out = []
    for log in sorted(logs.glob("*.log")):
        out.append(f"--- {log.name}")
        out += log.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(out)


@pytest.mark.timeout(int(os.environ.get("SOAK_TIMEOUT", "600")))
def test_soak(redis_url: str, logs: Path) -> None:
    rnd = random.Random(int(os.environ.get("SOAK_SEED", "7")))
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('soak')}:", **FAST)  # type: ignore[arg-type]
    locs = [f"s{i:03d}" for i in range(LOCATIONS)]
    groups = [locs[i::WORKERS] for i in range(WORKERS)]
    pools = [
        LocalWorkers(cfg, [g], extra_args=INCLUDE, log_dir=logs, concurrency=2) for g in groups
    ]
    for pool in pools:
        pool.start()
    fleet = Fleet(config=cfg)
    jobs: list[Job] = []
    stopped: set[int] = set()
    removed: list[Job] = []
    try:
        t0 = time.monotonic()
        for n in range(JOBS):
            job = fleet.start("produce", RECORDS, 0.01, locations=rnd.choice(locs))
            jobs.append(job)
            roll = rnd.random()
            if roll < 0.05:
                fleet.stop(job, timeout=0)
                stopped.add(job.id)
            elif roll < 0.10 and len(jobs) > 10:
                victim = jobs.pop(rnd.randrange(len(jobs) - 5))
                fleet.remove(victim, force=True)
                removed.append(victim)
                stopped.discard(victim.id)
            if n == JOBS // 4:
                pools[0].stop(warm=True)  # a warm restart: running jobs finish
                pools[0].start()
            if n == JOBS // 2:
                # a worker killed while it holds reserved and running jobs
                for proc in pools[1].procs:
                    os.killpg(proc.pid, signal.SIGKILL)
                pools[1].procs.clear()
                pools[1].start()
            if n == 3 * JOBS // 4:
                pools[2].stop(warm=True)
                pools[2].start()
        started_in = time.monotonic() - t0
        # every job finishes
        done = fleet.wait(jobs, timeout=max(120, JOBS / 10), force=True)
        if len(done) != len(jobs):
            left_over = [j for j in fleet.get(jobs) if not j.info.state.finished]
            pytest.fail(
                f"{len(left_over)} jobs left unfinished: "
                + "; ".join(
                    f"{j.id} {j.info.state.value} at {j.info.location} ({j.info.reason})"
                    for j in left_over[:20]
                )
                + "\n"
                + tail_logs(logs)
            )
        states = Counter(j.info.state for j in done)
        # every record is received exactly once, and no job ran twice
        twice = []
        for job in done:
            got = list(fleet.receive(job))
            if len(got) != len(set(got)):
                twice.append(job.id)
            if job.info.state is JobState.COMPLETED:
                assert got == list(range(1, RECORDS + 1)), (job.id, got)
            else:
                assert got == list(range(1, len(got) + 1)), (job.id, got)
        assert twice == []
        assert not any(j.has_more_data for j in fleet.get(jobs[:200]))
        assert all(j.id in stopped for j in done if j.info.state is JobState.STOPPED)
        # the jobs that failed are the ones the killed worker was running when it died
        failed = [j for j in done if j.info.state is JobState.FAILED]
        assert all("stopped answering" in (j.info.reason or "") for j in failed), [
            j.info.reason for j in failed
        ]
        assert len(failed) <= 2 * 2  # at most what its pool (concurrency 2) ran, per location
        # Redis holds no key of a removed job
        r = fleet.store.r
        iids = {
            i for j in removed for i in (j.instance_id, *(c.instance_id for c in j.info.children))
        }
        left = [
            k for k in r.scan_iter(match=f"{cfg.prefix}*", count=1000) if k.split(":")[-1] in iids
        ]
        assert left == []
        print(
            f"soak: {JOBS} jobs over {LOCATIONS} locations, started in {started_in:.1f} s; "
            f"states {dict((s.value, c) for s, c in states.items())}; removed {len(removed)}; "
            f"ran twice: {len(twice)}; keys of removed jobs left: {len(left)}"
        )
    finally:
        fleet.close()
        for pool in pools:
            pool.stop(timeout=5)
