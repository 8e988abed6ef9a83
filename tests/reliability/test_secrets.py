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


def test_a_console_verb_given_a_url_with_a_password_keeps_it_off_its_command_line(
    locked_redis: str,
) -> None:
    # `wait` and `invoke` can run for hours with --redis-url in argv, which every user of the
    # host reads in ps; only the server verbs (worker, flower, beat, relay) moved it before
    prefix = f"{uniq('c')}:"
    with Fleet(config=Config(redis_url=locked_redis, prefix=prefix)) as fleet:
        job = fleet.start("echo", "x", locations=uniq("nowhere"), name=uniq("w"))
    env = {k: v for k, v in os.environ.items() if k != "FLEETJOBS_REDIS_URL"}
    env["FLEETJOBS_PREFIX"] = prefix
    fleetjobs = [sys.executable, "-m", "fleetjobs", "--redis-url", locked_redis]
    # a wait for a job no worker serves: it waits out its timeout, with the URL off its argv
    proc = subprocess.Popen(
        [*fleetjobs, "wait", str(job.id), "--timeout", "8"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started_again() -> bool:  # empty for a moment while it execs
            line = cmdline(proc.pid)
            return line.rstrip().endswith("--timeout 8") and "--redis-url" not in line

        eventually(started_again, timeout=10)
        assert SECRET not in cmdline(proc.pid)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert f"FLEETJOBS_REDIS_URL={locked_redis}".encode() in environ
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    # and it did its work on that URL: the job is still NotStarted when the timeout passes
    assert proc.returncode == 3 and "NotStarted 1" in err, err  # 3: the timeout passed
    assert SECRET not in out + err
    # a short verb too, its output whole through the new start
    done = subprocess.run(
        [*fleetjobs, "get", str(job.id), "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert '"State": "NotStarted"' in done.stdout or '"state": "NotStarted"' in done.stdout
