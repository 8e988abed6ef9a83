"""Fan-out: parent and child jobs, targeting, throttling, start timeouts, hosts, invoke, ping.

These hosts are simulated (workers serving several location queues on this machine); the
namespaced-host tests run the same stories on hosts with their own hostname and address.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet, JobState, NoHostError
from fleetjobs.embedded import LocalWorkers
from fleetjobs.model import JobInfo

from .conftest import FAST, INCLUDE, CliRunner, eventually, make_cli, uniq


@pytest.fixture(scope="module")
def fleetcfg(redis_url: str, logs: Path) -> Iterator[Config]:
    """web01 and web02 (one worker, role=web) and db01 (another worker, role=db)."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fl')}:", **FAST)  # type: ignore[arg-type]
    web = LocalWorkers(
        cfg,
        [["web01", "web02"]],
        allow_shell=True,
        concurrency=4,
        extra_args=[*INCLUDE, "--tag", "role=web", "--tag", "env=prod"],
        log_dir=logs,
    )
    db = LocalWorkers(
        cfg,
        [["db01"]],
        allow_shell=True,
        concurrency=2,
        extra_args=[*INCLUDE, "--tag", "role=db", "--tag", "env=prod"],
        log_dir=logs,
    )
    with web, db:
        yield cfg


@pytest.fixture
def fl(fleetcfg: Config) -> Iterator[Fleet]:
    with Fleet(config=fleetcfg) as f:
        yield f


@pytest.fixture
def flcli(fleetcfg: Config) -> CliRunner:
    return make_cli(fleetcfg)


def locations(job: JobInfo) -> list[str]:
    return [c.location for c in job.children]


def test_one_start_makes_a_parent_and_a_child_per_host(fl: Fleet) -> None:
    job = fl.start("where", locations=["web01", "web02", "db01"])
    assert fl.wait([job], timeout=20)
    info = job.refresh().info
    assert info.location == "web01,web02,db01" and locations(info) == ["web01", "web02", "db01"]
    assert [c.id for c in info.children] == [info.id + 1, info.id + 2, info.id + 3]
    assert info.state is JobState.COMPLETED
    got = fl.receive(job)
    # each host's record is tagged with the host it came from, and really came from there
    assert sorted((r.location, r.data["Location"]) for r in got.records) == [
        ("db01", "db01"),
        ("web01", "web01"),
        ("web02", "web02"),
    ]
    pids = {r.location: r.data["Pid"] for r in got.records}
    assert pids["web01"] != pids["db01"]  # two different worker processes


def test_targeting_by_glob_tag_and_all(fl: Fleet) -> None:
    assert locations(fl.start("echo", 1, locations="web*").info) == ["web01", "web02"]
    assert locations(fl.start("echo", 1, target=["role=db"]).info) == ["db01"]
    assert locations(fl.start("echo", 1, target=["role=web", "env=prod"]).info) == [
        "web01",
        "web02",
    ]
    assert sorted(locations(fl.start("echo", 1, all_hosts=True).info)) == ["db01", "web01", "web02"]
    with pytest.raises(NoHostError, match="'mail\\*' matched no online host"):
        fl.start("echo", 1, locations="mail*")
    with pytest.raises(NoHostError, match="matched no online host"):
        fl.start("echo", 1, target=["role=cache"])
    with pytest.raises(NoHostError, match="not of the form key=value"):
        fl.start("echo", 1, target=["role"])


def test_hosts_lists_the_fleet(fl: Fleet, flcli: CliRunner) -> None:
    hosts = {h.location: h for h in fl.hosts()}
    assert set(hosts) == {"web01", "web02", "db01"}
    assert hosts["web01"].pid == hosts["web02"].pid != hosts["db01"].pid  # one worker, two names
    assert hosts["db01"].tags == {"role": "db", "env": "prod"}
    assert all(h.online and "archive_logs" in h.actions and h.allow_shell for h in hosts.values())
    rows = json.loads(flcli("hosts", "--json").stdout)
    assert {"location", "online", "tags", "running", "last_seen"} <= rows[0].keys()
    table = flcli("hosts").stdout.splitlines()
    assert table[0].split() == ["Location", "Online", "Tags", "Running", "Last", "seen"]


def test_a_failed_child_fails_the_parent_and_says_where(fl: Fleet) -> None:
    job = fl.start("fail_on", "web02", locations="web01,web02,db01")
    assert fl.wait([job], timeout=20)
    info = job.refresh().info
    assert [c.state for c in info.children] == [
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.COMPLETED,
    ]
    assert info.state is JobState.FAILED
    assert info.reason == "1 of 3 child jobs failed: web02: refused on web02"


def test_receive_one_host_by_location_or_by_the_child_id(fl: Fleet, flcli: CliRunner) -> None:
    job = fl.start("where", locations="web01,db01")
    fl.wait([job], timeout=20)
    db_child = job.refresh().info.children[1]
    only = json.loads(flcli("receive", "--json", str(job.id), "--location", "db01").stdout)
    assert [r["location"] for r in only] == ["db01"]
    assert list(fl.receive(db_child.id)) == []  # already taken through the parent
    rest = fl.receive(job.info.children[0].id)
    assert [r.location for r in rest.records] == ["web01"]
    assert not job.has_more_data


def test_stop_and_remove_on_a_parent_act_on_every_child(fl: Fleet) -> None:
    job = fl.start("sleep", 60, locations="web01,web02,db01")
    eventually(lambda: job.state is JobState.RUNNING)
    fl.stop(job)
    info = job.refresh().info
    assert info.state is JobState.STOPPED
    assert {c.state for c in info.children} == {JobState.STOPPED}
    fl.remove(job)
    r = fl.registry.r
    assert not any(r.exists(fl.store.keys.job(i)) for i in (job.id, *info.child_ids))


@pytest.fixture
def six(redis_url: str, logs: Path) -> Iterator[tuple[Config, list[str]]]:
    """A fleet of six locations on one worker that could run all six at once."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('six')}:", **FAST)  # type: ignore[arg-type]
    names = [f"node{i}" for i in range(1, 7)]
    with LocalWorkers(cfg, [names], concurrency=6, extra_args=INCLUDE, log_dir=logs):
        yield cfg, names


def test_throttle_limit_holds_on_the_workers_even_without_the_console(
    six: tuple[Config, list[str]],
) -> None:
    cfg, names = six
    # given a console that starts 6 one-second children with at most 2 at once, then leaves
    with Fleet(config=cfg) as first:
        job = first.start("sleep", 1, locations=names, throttle_limit=2)
    assert len(job.info.child_ids) == 6
    with Fleet(config=cfg) as other:
        # while it runs, those beyond the limit wait as NotStarted
        eventually(lambda: other.get(job.id)[0].info.state is JobState.RUNNING)
        states = [c.state for c in other.get(job.id)[0].info.children]
        assert states.count(JobState.NOT_STARTED) >= 4
        assert other.wait([job.id], timeout=60)
        children = other.get(job.id)[0].info.children
    # then, by the times the workers recorded, never more than 2 ran at once
    assert all(c.state is JobState.COMPLETED for c in children)
    events = sorted([(c.begin_time, 1) for c in children] + [(c.end_time, -1) for c in children])
    running = peak = 0
    for _, step in events:  # an end sorts before a begin at the same instant
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_a_location_with_no_worker_fails_after_the_start_timeout_and_never_runs(
    fl: Fleet, tmp_path: Path
) -> None:
    ghost = uniq("ghost")
    job = fl.start("mark", str(tmp_path), locations=["web01", ghost], start_timeout=1)
    assert any(ghost in w for w in job.warnings)
    assert fl.wait([job], timeout=20)
    info = job.refresh().info
    web, lost = info.children
    assert web.state is JobState.COMPLETED
    assert lost.state is JobState.FAILED
    assert lost.reason == f"no worker on {ghost} started the job within 1 s"
    assert info.state is JobState.FAILED
    # a worker that comes up for that location later does not run it
    with LocalWorkers(fl.config, [[ghost]], allow_shell=True, concurrency=1, extra_args=INCLUDE):
        probe = fl.start("echo", "later", locations=ghost)
        assert fl.wait([probe], timeout=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web01"]
    assert job.refresh().info.children[1].begin_time is None


def test_a_frozen_worker_is_disconnected_and_running_again_when_it_thaws(fl: Fleet) -> None:
    loc = uniq("frozen")
    workers = LocalWorkers(fl.config, [[loc]], concurrency=1, extra_args=INCLUDE)
    workers.start()
    try:
        job = fl.start("produce", 30, 0.1, locations=loc)
        eventually(lambda: job.state is JobState.RUNNING)
        os.killpg(workers.procs[0].pid, signal.SIGSTOP)  # a host cut off: it cannot heartbeat
        eventually(lambda: fl.get(job.id)[0].info.state is JobState.DISCONNECTED, timeout=15)
        os.killpg(workers.procs[0].pid, signal.SIGCONT)
        eventually(lambda: fl.get(job.id)[0].info.state is not JobState.DISCONNECTED, timeout=15)
        assert fl.wait([job], timeout=30, force=True)
        assert job.state is JobState.COMPLETED
        assert list(fl.receive(job)) == list(range(1, 31))
    finally:
        os.killpg(workers.procs[0].pid, signal.SIGCONT)
        workers.stop()


def test_invoke_prints_each_hosts_records_then_removes_the_job(fl: Fleet, flcli: CliRunner) -> None:
    res = flcli("invoke", "--name", "adhoc", "-l", "web01,db01", "where")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Location", "Pid"]
    assert sorted(line.split()[0] for line in lines[2:]) == ["db01", "web01"]
    assert fl.get(name="adhoc") == []
    text = flcli("invoke", "-l", "web01,web02", "echo", "hi")
    assert sorted(text.stdout.splitlines()) == ["web01: hi", "web02: hi"]


def test_invoke_exits_non_zero_if_any_host_failed(fl: Fleet, flcli: CliRunner) -> None:
    res = flcli("invoke", "--name", "partly", "-l", "web01,db01", "fail_on", "db01")
    assert res.returncode == 1
    assert "web01: web01" in res.stdout
    assert "ERROR: [db01] refused on db01" in res.stderr
    assert "fleetjobs: db01: Failed: refused on db01" in res.stderr
    assert fl.get(name="partly") == []


def test_ping_prints_the_seeds_table_with_false_for_a_host_with_no_worker(
    flcli: CliRunner, fl: Fleet
) -> None:
    res = flcli("ping", "--worker", "web01", "web02", "Server03", "db01", "--timeout", "1")
    assert res.returncode == 0, res.stderr
    assert [line.split() for line in res.stdout.splitlines()] == [
        ["Server", "Online"],
        ["------", "------"],
        ["web01", "True"],
        ["web02", "True"],
        ["Server03", "False"],
        ["db01", "True"],
    ]
    assert fl.get(name="Job*") == [] or all("ping" not in j.command for j in fl.get())


def test_ping_a_target_from_a_host(fl: Fleet, fleetcfg: Config) -> None:
    port = int(fleetcfg.redis_url.rsplit(":", 1)[1].split("/")[0])
    job = fl.start("ping", "127.0.0.1", locations="web01", kwargs={"port": port})
    closed = fl.start("ping", "127.0.0.1", locations="web01", kwargs={"port": 1})
    fl.wait([job, closed], timeout=20)
    [up] = list(fl.receive(job))
    assert up["Server"] == "127.0.0.1" and up["Online"] is True and up["Method"] == "tcp"
    assert fl.receive(closed)[0]["Online"] is True  # refused, so it answers


def test_archive_logs_on_every_host(fl: Fleet, tmp_path: Path, flcli: CliRunner) -> None:
    import time as _time

    logs, archive = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    old = _time.time() - 9 * 86400
    for name in ("a.log", "b.log", "keep.txt"):
        (logs / name).write_text(name)
        os.utime(logs / name, (old, old))
    (logs / "new.log").write_text("new")
    res = flcli(
        "invoke", "-l", "web01", "archive_logs", str(logs), str(archive), "--days", "7", "--dry-run"
    )
    assert res.returncode == 0 and "would archive" in res.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["a.log", "b.log", "keep.txt", "new.log"]
    job = fl.start("archive_logs", str(logs), str(archive), locations="web01")
    fl.wait([job], timeout=20)
    [summary] = list(fl.receive(job))
    assert summary == {"Server": "web01", "Archived": 2, "Bytes": 10, "Skipped": 0}
    assert sorted(p.name for p in archive.iterdir()) == ["a.log", "b.log"]
    again = fl.start("archive_logs", str(logs), str(archive), locations="web01")
    fl.wait([again], timeout=20)
    assert fl.receive(again)[0]["Archived"] == 0
    missing = fl.start("archive_logs", str(tmp_path / "nope"), str(archive), locations="db01")
    fl.wait([missing], timeout=20)
    got = fl.receive(missing)
    assert got[0]["Archived"] == 0 and "Log path not found" in got.warnings[0]


def test_a_start_timeout_counts_from_a_throttled_childs_turn(
    six: tuple[Config, list[str]],
) -> None:
    cfg, names = six
    with Fleet(config=cfg) as fleet:
        # three one-second children, one at a time, each to be started within 1.5 s
        job = fleet.start("sleep", 1, locations=names[:3], throttle_limit=1, start_timeout=1.5)
        assert fleet.wait([job], timeout=30)
        # none waited more than 1.5 s once it was its turn, so all ran
        assert [c.state for c in job.refresh().info.children] == [JobState.COMPLETED] * 3


def test_a_child_started_in_time_leaves_the_start_deadlines_at_once(fleet: Fleet) -> None:
    # a quick job with a long start timeout: claimed, it is no longer watched for its start
    # (the sweep would only drop it once the deadline passed, 60 s from now)
    job = fleet.start("echo", "in time", locations=["alpha", "beta"], start_timeout=60)
    assert fleet.wait([job], timeout=30) and job.state is JobState.COMPLETED
    store = fleet.registry.store
    left = store.r.zmscore(store.keys.deadlines, [str(c) for c in job.info.child_ids])
    assert left == [None, None]
