"""High availability on the engine Redis already has: a primary, a replica and three real
sentinels on loopback; the primary is killed mid-load and the fleet goes on after the
failover (consoles, workers and Celery's broker all find the new primary)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, Fleet, FleetJobsError, JobState
from fleetjobs.embedded import LocalWorkers, free_port, redis_server_binary

from ..conftest import FAST, INCLUDE, eventually

SERVICE = "fleet"


class Sentinels:
    """A primary, a replica and three sentinels watching them, all on loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _server(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            [redis_server_binary(), *args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # each in a folder of its own: a replica's full sync writes dump.rdb to its --dir
        for name in ("primary", "replica"):
            (self.folder / name).mkdir(exist_ok=True)
        self._server(
            "primary",
            "--port",
            str(self.primary_port),
            "--dir",
            str(self.folder / "primary"),
            *common,
        )
        self._server(
            "replica",
            "--dir",
            str(self.folder / "replica"),
            "--port",
            str(self.replica_port),
            "--replicaof",
            "127.0.0.1",
            str(self.primary_port),
            *common,
        )
        for i, port in enumerate(self.sentinel_ports):
            conf = self.folder / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica_port}\n"
            )
            self._server(f"sentinel{i}", str(conf), "--sentinel")
        replica = redis.Redis(port=self.replica_port)
        eventually(lambda: _try(lambda: replica.info("replication")["master_link_status"] == "up"))
        # every sentinel must know the others and the replica before the primary may die: a
        # sentinel learns of a replica from the primary's INFO, every 10 s, and with none known
        # it aborts the failover ("-failover-abort-no-good-slave")
        for port in self.sentinel_ports:
            watcher = redis.Redis(port=port)
            eventually(
                lambda w=watcher: _try(
                    lambda: (
                        w.sentinel_master(SERVICE)["num-other-sentinels"] == 2
                        and w.sentinel_master(SERVICE)["num-slaves"] == 1
                    )
                ),
                timeout=30,
            )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary(self) -> int:
        watcher = redis.Redis(port=self.sentinel_ports[0], decode_responses=True)
        return int(watcher.sentinel_get_master_addr_by_name(SERVICE)[1])

    def kill_primary(self) -> None:
        self.procs["primary"].kill()
        self.procs["primary"].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)


def _try(check: object) -> bool:
    try:
        return bool(check())  # type: ignore[operator]
    except (redis.exceptions.RedisError, KeyError):
        return False


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    s = Sentinels(tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.mark.timeout(180)
def test_jobs_go_on_after_the_primary_is_killed(sentinels: Sentinels, logs: Path) -> None:
    cfg = Config(redis_url=sentinels.url, prefix="ha:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(cfg, [["ha1"], ["ha2"]], extra_args=INCLUDE, log_dir=logs),
        Fleet(config=cfg) as fleet,
    ):
        # given jobs flowing through the fleet, started one every 0.1 s
        started, refused = [], 0
        killed_at = failed_over_at = None
        before = sentinels.primary()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if len(started) == 20 and killed_at is None:
                # when the primary dies mid-load
                sentinels.kill_primary()
                killed_at = time.time()
            if killed_at and not failed_over_at and _try(lambda: sentinels.primary() != before):
                failed_over_at = time.time()
            try:
                started.append(fleet.start("echo", len(started), locations="ha1,ha2"))
            except FleetJobsError:
                refused += 1  # a start while there is no primary: refused, in one line
            if failed_over_at and time.time() - failed_over_at > 3 and len(started) > 40:
                break
            time.sleep(0.1)
        assert killed_at and failed_over_at, "no failover happened"
        assert sentinels.primary() == sentinels.replica_port
        # then every job started after the failover runs to completion on both hosts
        after = [j for j in started if j.info.created > failed_over_at]
        assert len(after) >= 10
        done = fleet.wait(after, timeout=60, force=True)
        assert [j.info.state for j in done] == [JobState.COMPLETED] * len(after)
        # and of the jobs started before it, each either completed or is gone with the writes
        # the replica had not received when the primary died (asynchronous replication)
        before_jobs = [j for j in started if j.info.created <= failed_over_at]
        existing = fleet.get([j.id for j in before_jobs if _exists(fleet, j.id)])
        fleet.wait(existing, timeout=60, force=True)
        states = [j.state for j in existing]
        lost = len(before_jobs) - len(existing)
        print(
            f"failover took {failed_over_at - killed_at:.1f} s; starts refused meanwhile: "
            f"{refused}; jobs before: {len(before_jobs)}, lost with the primary: {lost}, "
            f"states of the rest: {sorted(s.value for s in states)}; after: {len(after)} "
            "all Completed"
        )
        assert all(s.finished for s in states)
        # no job ran twice: each of its two children wrote its one value once
        for job in after:
            got = list(fleet.receive(job))
            assert len(got) == 2 and got[0] == got[1] == job.info.args[0]


def _exists(fleet: Fleet, job_id: int) -> bool:
    return bool(fleet.store.r.exists(fleet.store.keys.job(job_id)))
