"""No job is stranded: a job a dead worker had reserved runs within seconds, exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from fleetjobs import JobState
from fleetjobs.celery_app import lease_seconds
from fleetjobs.embedded import LocalWorkers
from fleetjobs.routing import UNACKED_INDEX, queue_for

from ..conftest import INCLUDE, eventually, uniq
from .support import busy_holding_one, fleet_with, own_config


def test_jobs_reserved_by_a_killed_worker_run_on_its_successor_within_the_lease(
    redis_url: str, logs: Path
) -> None:
    cfg = own_config(redis_url)
    loc = uniq("stranded")
    client = redis.Redis.from_url(cfg.redis_url)
    queue_key = f"{cfg.prefix}{queue_for(loc)}"
    with fleet_with(cfg, [loc], logs, concurrency=1) as (fleet, workers):
        # given a worker of concurrency 1 busy with a long job, holding the next job reserved
        # (prefetched, unacknowledged), with one more queued
        long, reserved = busy_holding_one(fleet, client, loc)
        queued = fleet.start("echo", "queued", locations=loc)
        eventually(lambda: client.llen(queue_key) == 1, timeout=10)
        # and holding it for longer than the lease: a live worker's lease is renewed
        time.sleep(lease_seconds(cfg) + 1.5)
        assert reserved.state is JobState.NOT_STARTED
        assert client.zcard(f"{cfg.prefix}{UNACKED_INDEX}") == 1
        assert client.llen(queue_key) == 1, "a live worker's reserved message was handed out"
        # when the worker is SIGKILLed (no warm shutdown gives the message back)
        killed = time.monotonic()
        os.killpg(workers.procs[0].pid, signal.SIGKILL)
        workers.procs[0].wait()
        workers.procs.clear()
        # and a new worker serves the location again
        with LocalWorkers(cfg, [[loc]], concurrency=1, extra_args=INCLUDE, log_dir=logs) as new:
            # (the dead worker's host key lives on for the host TTL: wait for the new one's)
            pid = new.procs[0].pid
            eventually(lambda: any(h.pid == pid for h in fleet.hosts()), timeout=20)
            back = time.monotonic()
            assert fleet.wait([reserved, queued], timeout=30, force=True)
            ran = time.monotonic()
            # then the reserved job ran, once, within the lease and a restore interval
            bound = lease_seconds(cfg) + cfg.heartbeat_interval
            after_kill, after_back = ran - killed, ran - back
            print(
                f"\nlease {lease_seconds(cfg):g} s + restore every {cfg.heartbeat_interval:g} s; "
                f"the reserved job ran {after_kill:.2f} s after the kill, "
                f"{max(0.0, after_back):.2f} s after the new worker was up; runs: "
                f"{len(list(fleet.receive(reserved, keep=True)))}"
            )
            assert reserved.state is JobState.COMPLETED and queued.state is JobState.COMPLETED
            assert list(fleet.receive(reserved)) == ["reserved"]
            assert list(fleet.receive(queued)) == ["queued"]
            assert after_kill <= bound + 5.0, f"stranded {after_kill:.1f} s (bound {bound:g} s)"
            # and the long job, which died with the worker, is failed, not run again
            assert fleet.wait([long], timeout=20, force=True)
            assert long.state is JobState.FAILED
            assert client.zcard(f"{cfg.prefix}{UNACKED_INDEX}") == 0
    client.close()
