"""No job is stranded by a Redis restart: a reserved job runs after it, once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, JobState
from fleetjobs.celery_app import lease_seconds
from fleetjobs.embedded import free_port, redis_server_binary
from fleetjobs.routing import UNACKED_INDEX

from ..conftest import FAST, eventually, make_cli, uniq
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


def test_a_job_reserved_across_a_redis_restart_runs_once(server: Server, tmp_path: Path) -> None:
    cfg = Config(redis_url=server.url, prefix=f"{uniq('rr')}:", **FAST)  # type: ignore[arg-type]
    loc = uniq("restart")
    logs = tmp_path / "logs"
    logs.mkdir()
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
        comes_back = threading.Timer(2.5, server.start)
        comes_back.start()
        # then a wait begun while Redis is away rides it out (by Ids: it must read the jobs)
        try:
            assert fleet.wait([busy.id, reserved.id], timeout=40, force=True)
        finally:
            comes_back.join()
        restarted = time.monotonic()
        # and the reserved job ran once the busy one was done, within the lease after that
        assert fleet.wait([busy, reserved], timeout=40, force=True)
        took = time.monotonic() - restarted
        runs = list(fleet.receive(reserved))
        print(
            f"\nRedis restarted: the reserved job ran {took:.2f} s later (busy job: 6 s, lease "
            f"{lease_seconds(cfg):g} s); runs: {len(runs)}; busy job {busy.state.value}"
        )
        assert reserved.state is JobState.COMPLETED and runs == ["reserved"]
        assert busy.state is JobState.COMPLETED and list(fleet.receive(busy)) == ["slept"]
    # and the worker said Redis was away in a line or two, not a traceback at every look
    log = (logs / "worker-0.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_the_waiting_verbs_begun_while_redis_is_away_ride_it_out(
    server: Server, logs: Path
) -> None:
    cfg = Config(redis_url=server.url, prefix=f"{uniq('rw')}:", **FAST)  # type: ignore[arg-type]
    loc = uniq("away")
    cli = make_cli(cfg)
    with fleet_with(cfg, [loc], logs, concurrency=1) as (fleet, _):
        job = fleet.start("echo", "kept", locations=loc)
        assert fleet.wait([job], timeout=20)
        # when `wait` and `receive --wait` are typed while Redis restarts (2 s away)
        for verb in (("wait", str(job.id)), ("receive", str(job.id), "--wait", "--keep")):
            server.stop()
            comes_back = threading.Timer(2.0, server.start)
            comes_back.start()
            try:
                done = cli(*verb, timeout=30)
            finally:
                comes_back.join()
            # then each waits for Redis and answers, as a wait begun before the restart does
            assert done.returncode == 0, (verb, done.stderr)
            assert ("Completed" if verb[0] == "wait" else "kept") in done.stdout
