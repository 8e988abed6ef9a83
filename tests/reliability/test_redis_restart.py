"""No job is stranded by a Redis restart: a reserved job runs after it, once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, JobState
from fleetjobs.celery_app import lease_seconds
from fleetjobs.embedded import free_port, redis_server_binary
from fleetjobs.routing import UNACKED_INDEX

from ..conftest import FAST, eventually, uniq
from .support import fleet_with


class Server:
    """A redis-server with AOF (as deploy/ runs it) that a test can restart on its port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
                *("--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        eventually(lambda: _pings(client), timeout=10)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SHUTDOWN: the AOF is complete
            self.proc.wait(10)
            self.proc = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_a_job_reserved_across_a_redis_restart_runs_once(server: Server, logs: Path) -> None:
    cfg = Config(redis_url=server.url, prefix=f"{uniq('rr')}:", **FAST)  # type: ignore[arg-type]
    loc = uniq("restart")
    with fleet_with(cfg, [loc], logs, concurrency=1) as (fleet, _):
        client = redis.Redis.from_url(cfg.redis_url)
        # given a busy worker holding a job reserved
        busy = fleet.start("sleep", 6, "slept", locations=loc)
        eventually(lambda: busy.state is JobState.RUNNING, timeout=15)
        reserved = fleet.start("echo", "reserved", locations=loc)
        eventually(lambda: client.zcard(f"{cfg.prefix}{UNACKED_INDEX}") == 1, timeout=10)
        client.close()
        # when Redis restarts under it (the worker loses its connection and its reservations)
        server.stop()
        time.sleep(1.0)
        server.start()
        restarted = time.monotonic()
        # then the reserved job runs once the busy one is done, within the lease after that
        assert fleet.wait([busy, reserved], timeout=40, force=True)
        took = time.monotonic() - restarted
        runs = list(fleet.receive(reserved))
        print(
            f"\nRedis restarted: the reserved job ran {took:.2f} s later (busy job: 6 s, lease "
            f"{lease_seconds(cfg):g} s); runs: {len(runs)}; busy job {busy.state.value}"
        )
        assert reserved.state is JobState.COMPLETED and runs == ["reserved"]
        assert busy.state is JobState.COMPLETED and list(fleet.receive(busy)) == ["slept"]
