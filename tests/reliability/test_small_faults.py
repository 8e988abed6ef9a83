"""The smaller faults of issue 6, each with a test: bad URLs, unsafe names, huge arguments,
consoles racing each other, queues of removed jobs, read-only consoles, retention without
consoles, and consoles riding out a Redis restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from fleetjobs import ArgumentError, Config, Fleet, JobState, deadletters
from fleetjobs.embedded import LocalWorkers, free_port, redis_server_binary

from ..conftest import (
    FAST,
    INCLUDE,
    ROOT,
    CliRunner,
    eventually,
    fleet_with_worker_settings,
    make_cli,
    uniq,
)
from .support import acl_rule


def test_a_malformed_url_is_one_line_and_exit_2(cli: CliRunner) -> None:
    for url in ("redis://127.0.0.1:99999/0", "redis://:secret@127.0.0.1:abc/0"):
        res = cli("--redis-url", url, "get")
        assert res.returncode == 2
        assert res.stderr.count("\n") == 1 and "invalid Redis URL" in res.stderr
        assert "secret" not in res.stderr and "Traceback" not in res.stderr


def test_names_with_control_characters_are_refused(fleet: Fleet, cli: CliRunner) -> None:
    for name in ("evil\x1b[2J", "two\nlines", "x" * 201):
        with pytest.raises(ArgumentError):
            fleet.start("echo", 1, name=name, locations="alpha")
    res = cli("start", "--name", "bad\x1b]0;pwned\x07", "-l", "alpha", "echo", "1")
    assert res.returncode == 2 and "control characters" in res.stderr
    assert fleet.get(name="bad*") == []


def test_a_huge_argument_is_refused_and_a_large_one_is_stored_once(fleet: Fleet) -> None:
    # a 2 MiB argument: a clear error, nothing queued
    before = fleet.store.r.get(fleet.store.keys.seq)
    with pytest.raises(ArgumentError, match="FLEETJOBS_MAX_ARGUMENTS"):
        fleet.start("echo", "x" * 2**21, locations="alpha")
    assert fleet.store.r.get(fleet.store.keys.seq) == before
    # a 600 kB argument to two hosts: kept once (on the parent), shortened in Command
    big = "y" * 600_000
    job = fleet.start("echo", big, locations="alpha,beta")
    assert fleet.wait(job, timeout=30)
    r, keys = fleet.store.r, fleet.store.keys
    sizes = {i: r.memory_usage(keys.job(i), samples=0) for i in (job.id, *job.info.child_ids)}
    print("bytes per job record:", sizes)
    assert sizes[job.id] > 600_000
    assert all(sizes[c] < 10_000 for c in job.info.child_ids)
    assert len(job.command) < 120
    assert list(fleet.receive(job)) == [big, big]


def test_consoles_racing_to_stop_and_remove_everything_all_succeed(
    private: tuple[Config, Fleet],
) -> None:
    cfg, fleet = private
    # given running and queued jobs
    for _ in range(6):
        fleet.start("sleep", 30, locations="solo")
    cli = make_cli(cfg)
    # when eight consoles at once stop '*' and remove --all --force
    verbs = [("stop", "*"), ("remove", "--all", "--force")] * 4
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda v: cli(*v), verbs))
    # then each one succeeds (a job already gone by the same request is no error)
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert fleet.get() == []


def test_removing_a_job_for_a_host_never_served_empties_its_queue(fleet: Fleet) -> None:
    loc = uniq("ghost")
    job = fleet.start("echo", 1, locations=loc)
    queue = fleet.store.keys.queue(loc)
    assert fleet.store.r.llen(queue) == 1
    fleet.remove(job, force=True)
    assert fleet.store.r.llen(queue) == 0


def test_a_read_only_console_lists_and_waits_while_a_host_is_dead(
    redis_url: str, logs: Path
) -> None:
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('ro')}:", **FAST)  # type: ignore[arg-type]
    admin = redis.Redis.from_url(redis_url)
    user = uniq("viewer")
    # the read-only rule deploy/redis-acl.conf ships, on this test's prefix
    admin.execute_command("ACL", "SETUSER", user, *acl_rule("fleet-viewer", cfg.prefix, "viewpw"))
    try:
        # given a job on a host whose worker then dies (a sweep would now write)
        with (
            LocalWorkers(cfg, [["ro-host"]], extra_args=INCLUDE, log_dir=logs) as workers,
            Fleet(config=cfg) as fleet,
        ):
            job = fleet.start("sleep", 60, locations="ro-host")
            eventually(lambda: job.state is JobState.RUNNING)
            for proc in workers.procs:
                os.killpg(proc.pid, 9)
        ro = cfg.with_(redis_url=redis_url.replace("redis://", f"redis://{user}:viewpw@"))
        cli = make_cli(ro)
        # then a console that may only read still lists and checks jobs
        res = cli("get", "--json")
        assert res.returncode == 0, res.stderr
        assert f'"id": {job.id}' in res.stdout
        assert cli("wait", str(job.id), "--timeout", "0").returncode == 3
        with Fleet(config=ro) as viewer:
            assert viewer.get(job.id)[0].state in (JobState.RUNNING, JobState.DISCONNECTED)
            # and the host list, whose dead host shows offline once its liveness runs out
            eventually(
                lambda: [(h.location, h.online) for h in viewer.hosts()] == [("ro-host", False)]
            )
        hosts = cli("hosts", "--json")
        assert hosts.returncode == 0, hosts.stderr
        assert '"ro-host"' in hosts.stdout
        # and the dead letters, a confined host's among them
        letter = deadletters.DeadLetter(time.time(), "q", "ro-host", "not a job")
        with Fleet(config=cfg) as console:  # as the relay keeps it
            deadletters.push_for_host(console.store, letter)
        shown = cli("deadletters", "--json")
        assert shown.returncode == 0, shown.stderr
        assert [d["reason"] for d in json.loads(shown.stdout)] == ["not a job"]
        # while what writes is refused in one line that says the user may not
        refused = cli("start", "-l", "ro-host", "echo", "x")
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1
        assert "refused this user the command" in refused.stderr, refused.stderr
        # and a receive, which takes (writes), says what reads instead, without the script's
        # SHA and line in the way
        took = cli("receive", str(job.id))
        assert took.returncode != 0 and took.stderr.count("\n") == 1, took.stderr
        assert "receives with --keep" in took.stderr and "@user_script" not in took.stderr
        kept = cli("receive", str(job.id), "--keep")
        assert kept.returncode == 0, kept.stderr
    finally:
        admin.execute_command("ACL", "DELUSER", user)


@pytest.fixture
def short_retention(redis_url: str, logs: Path) -> Iterator[Fleet]:
    """A fleet whose worker keeps a finished job one second."""
    settings = {"FLEETJOBS_RETENTION": "1"}
    with fleet_with_worker_settings(redis_url, logs, "keeper", settings) as fleet:
        yield fleet


def test_an_idle_fleets_workers_purge_jobs_past_retention(short_retention: Fleet) -> None:
    fleet = short_retention
    job = fleet.start("echo", "old", locations="keeper")
    assert fleet.wait(job, timeout=20)
    # no console starts anything: the workers' heartbeats purge it
    eventually(lambda: fleet.store.r.exists(fleet.store.keys.job(job.id)) == 0, timeout=15)


def test_a_waiting_console_rides_out_a_redis_restart(tmp_path: Path, logs: Path) -> None:
    port = free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir",
            str(tmp_path), "--appendonly", "yes", "--save", ""]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    eventually(lambda: _answers(url))
    cfg = Config(redis_url=url, prefix="rs:", **FAST)  # type: ignore[arg-type]
    try:
        with LocalWorkers(cfg, [["steady"]], extra_args=INCLUDE, log_dir=logs):
            with Fleet(config=cfg) as fleet:
                job = fleet.start("sleep", 5, locations="steady")
                eventually(lambda: job.state is JobState.RUNNING)
            env = {**os.environ, "FLEETJOBS_REDIS_URL": url, "FLEETJOBS_PREFIX": "rs:"}
            waiting = subprocess.Popen(
                [sys.executable, "-m", "fleetjobs", "wait", str(job.id), "--timeout", "40"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # once the console is waiting (subscribed to the job's events)
            channel = f"rs:ev:{job.instance_id}"
            probe = redis.Redis.from_url(url)
            eventually(lambda: probe.pubsub_numsub(channel)[0][1] > 0, timeout=20)
            # when Redis stops for three seconds and comes back with its data
            redis.Redis.from_url(url).shutdown(save=True)
            server.wait(10)
            time.sleep(3)
            server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
            eventually(lambda: _answers(url))
            # then the console carries on and sees the job finish
            out, err = waiting.communicate(timeout=60)
            assert waiting.returncode == 0, err
            assert "Completed" in out
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.exceptions.ConnectionError:
        return False


def test_the_shipped_console_and_worker_acl_users_run_a_fleet(redis_url: str, logs: Path) -> None:
    # given the console and worker users deploy/redis-acl.conf ships, on this test's prefix
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('acl')}:", **FAST)  # type: ignore[arg-type]
    admin = redis.Redis.from_url(redis_url)
    users = {role: uniq(role) for role in ("fleet-console", "fleet-worker")}
    for role, name in users.items():
        admin.execute_command("ACL", "SETUSER", name, *acl_rule(role, cfg.prefix, "pw"))
    as_user = {
        role: cfg.with_(redis_url=redis_url.replace("redis://", f"redis://{name}:pw@"))
        for role, name in users.items()
    }
    try:
        # when a worker runs as the worker user and a console as the console user
        with (
            LocalWorkers(as_user["fleet-worker"], [["acl-host"]], extra_args=INCLUDE, log_dir=logs),
            Fleet(config=as_user["fleet-console"]) as fleet,
        ):
            job = fleet.start("produce", 3, locations="acl-host")
            # then jobs run, and are waited for, received and removed
            assert fleet.wait(job, timeout=30)
            assert job.state is JobState.COMPLETED and list(fleet.receive(job)) == [1, 2, 3]
            fleet.remove(job)
        # and the users reach nothing outside their fleet's prefix
        console = redis.Redis.from_url(as_user["fleet-console"].redis_url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            console.get("other-fleet:seq")
        console.close()
    finally:
        for name in users.values():
            admin.execute_command("ACL", "DELUSER", name)
