"""No secret on a command line: the Redis password is in no worker process's argv."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, Fleet, JobState
from fleetjobs.embedded import LocalWorkers, free_port, redis_server_binary, stop_process_groups

from ..conftest import FAST, INCLUDE, ROOT, eventually, uniq
from .support import cmdline, descendants

SECRET = "s3cret-" + uniq("pw")


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own that wants a password."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"),
            *("--requirepass", SECRET, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        eventually(lambda: _pings(client), timeout=10)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def test_no_worker_process_shows_the_password(locked_redis: str, logs: Path) -> None:
    cfg = Config(redis_url=locked_redis, prefix=f"{uniq('s')}:", **FAST)  # type: ignore[arg-type]
    via_module, via_cli = uniq("mod"), uniq("cli")
    env = {
        **os.environ,
        "FLEETJOBS_REDIS_URL": cfg.redis_url,
        "FLEETJOBS_PREFIX": cfg.prefix,
        "FLEETJOBS_HEARTBEAT_INTERVAL": str(cfg.heartbeat_interval),
        "FLEETJOBS_HOST_TTL": str(cfg.host_ttl),
    }
    # given a worker started as the deploy docs do (`fleetjobs worker`, URL from the env file)
    with open(logs / f"{via_cli}.log", "ab") as out:
        cli_worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "fleetjobs", "worker", "--location", via_cli),
                *("--concurrency", "2", "--allow-shell"),
            ],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # and one started by the embedded mode, as the tests and the demo do
    try:
        with (
            LocalWorkers(
                cfg, [[via_module]], concurrency=2, allow_shell=True, extra_args=INCLUDE
            ) as workers,
            Fleet(config=cfg) as fleet,
        ):
            eventually(lambda: {via_cli, via_module} <= {h.location for h in fleet.hosts()}, 20)
            # with a job running `run` on each, so every kind of process is there
            job = fleet.start("run", "sleep 30", locations=[via_cli, via_module])
            eventually(lambda: job.state is JobState.RUNNING, timeout=20)
            time.sleep(0.5)
            # when every process of both workers is read as `ps` reads it
            roots = [cli_worker.pid, workers.procs[0].pid]
            procs = [pid for root in roots for pid in descendants(root)]
            lines = {pid: cmdline(pid) for pid in procs}
            print(
                f"\nworker processes read: {len(lines)}; showing the password: "
                f"{sum(SECRET in line for line in lines.values())}"
            )
            for pid, line in lines.items():
                print(f"  {pid}: {line[:110]}")
            # then the password is in none of them (the main processes, the pools, the jobs)
            assert len(lines) >= 2 * 4, lines  # main + 2 pool processes + a job, per worker
            assert all(SECRET not in line for line in lines.values()), lines
            assert all("--redis-url" not in line for line in lines.values()), lines
            fleet.stop([job])
    finally:
        stop_process_groups([cli_worker], 15)
