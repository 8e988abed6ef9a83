"""PowerShell's verbs where they used to differ: remove of several jobs, children, failures
made visible, arguments bound to the action's parameters, keyword calls, ping."""

from __future__ import annotations

import json
import os
import signal
import time
from urllib.parse import urlsplit

import pytest

from fleetjobs import ArgumentError, Config, Fleet, JobState, JobStateError
from fleetjobs.embedded import LocalWorkers

from .conftest import FAST, CliRunner, eventually, make_cli, uniq


def test_remove_all_without_force_removes_the_finished_and_names_each_unfinished(
    private: tuple[Config, Fleet],
) -> None:
    cfg, fleet = private
    cli = make_cli(cfg)
    done = fleet.start("echo", 1, locations="solo")
    fleet.wait(done, timeout=15)
    a = fleet.start("sleep", 60, locations="solo")
    b = fleet.start("sleep", 60, locations="solo")
    res = cli("remove", "--all")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == f"fleetjobs: removed 1 job: {done.id} ({done.name})"  # which went
    assert f"job {a.id} " in lines[1] and "not removed" in lines[1]
    assert f"job {b.id} " in lines[2]
    assert sorted(j.id for j in fleet.get()) == [a.id, b.id]
    fleet.remove(force=True, all_jobs=True)


def test_a_child_cannot_be_removed_on_its_own_while_its_parent_exists(fleet: Fleet) -> None:
    job = fleet.start("echo", 1, locations="alpha,beta")
    fleet.wait(job, timeout=15)
    child = job.children[0]
    with pytest.raises(JobStateError, match=f"remove job {job.id}"):
        fleet.remove(child.id)
    assert [c.id for c in fleet.info(job.id).children] == list(job.info.child_ids)
    fleet.remove(job)


def test_receive_of_a_failed_job_prints_its_reason_and_exits_1(
    fleet: Fleet, cli: CliRunner
) -> None:
    # a job no worker started in time has no records: its Reason is what tells
    job = fleet.start("echo", 1, locations=uniq("nobody"), start_timeout=0.3)
    fleet.wait(job, timeout=15)
    res = cli("receive", str(job.id))
    assert res.returncode == 1
    assert res.stderr.startswith("ERROR: no worker on nobody-")
    # and wait says so too: 1 when a job it returns Failed, 0 when all Completed
    assert cli("wait", str(job.id)).returncode == 1
    ok = fleet.start("echo", 1, locations="alpha")
    assert cli("wait", str(ok.id)).returncode == 0
    # a Stopped job did not complete either: `wait J && receive J` does not go on
    stopped = fleet.start("sleep", 30, locations="alpha")
    fleet.stop(stopped)
    res = cli("wait", str(stopped.id))
    assert res.returncode == 1 and "Stopped" in res.stdout


@pytest.mark.parametrize("message", ["no disk", "no disk " + "x" * 5000])
def test_an_action_failure_prints_its_reason_once(
    fleet: Fleet, cli: CliRunner, message: str
) -> None:
    # (a message past 2,000 characters: the job's Reason is it cut, its error record whole)
    job = fleet.start("fail_with", message, locations="alpha")
    fleet.wait(job, timeout=15)
    res = cli("receive", str(job.id))
    assert res.returncode == 1
    assert res.stderr.count("no disk") == 1 and message in res.stderr


def test_arguments_follow_the_actions_parameters(fleet: Fleet, cli: CliRunner) -> None:
    # a str parameter stays a string: the command `true`
    res = cli("start", "--json", "-l", "alpha", "run", "true")
    assert res.returncode == 0, res.stderr
    job = json.loads(res.stdout)
    [done] = fleet.wait(job["id"], timeout=15)
    assert done.info.state is JobState.COMPLETED
    # run takes every word after ACTION, options included, without --
    res = cli("invoke", "-l", "alpha", "run", "grep", "--count", "root", "/etc/passwd")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().isdigit()
    # an option the action does not take is refused before anything is queued
    before = len(fleet.get())
    res = cli("start", "-l", "alpha", "echo", "x", "--json")
    assert res.returncode == 2
    assert "echo takes no option --json" in res.stderr
    assert "options of the verb go before ACTION" in res.stderr
    assert len(fleet.get()) == before
    # a number where the action wants one
    res = cli("start", "-l", "alpha", "sleep", "soon")
    assert res.returncode == 2 and "SECONDS must be a float" in res.stderr


def test_action_keywords_are_python_keywords(fleet: Fleet) -> None:
    job = fleet.start("processes", locations="alpha", top=3)
    fleet.wait(job, timeout=15)
    assert len(fleet.receive(job)) == 3
    with pytest.raises(ArgumentError, match=r"processes: .*'bogus'.*its parameters: \[TOP=10\]"):
        fleet.start("processes", locations="alpha", bogus=1)


def test_actions_lists_what_the_workers_offer(cli: CliRunner) -> None:
    res = cli("actions", "--location", "alpha", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["action"]: r for r in json.loads(res.stdout)}
    assert rows["sleep"]["suspendable"] is True and rows["echo"]["suspendable"] is False
    assert [p["name"] for p in rows["run"]["parameters"]] == ["command", "argv", "keep_children"]
    assert rows["sleep"]["locations"] == ["alpha"]
    table = cli("actions")
    assert "run" in table.stdout and "COMMAND [ARGV ...] [--keep-children]" in table.stdout


def test_ping_answers_from_this_machine_from_a_host_or_by_worker(
    config: Config, cli: CliRunner
) -> None:
    port = str(urlsplit(config.redis_url).port)
    res = cli("ping", "127.0.0.1", "no-such-host.invalid", "--port", port, "--json")
    assert res.returncode == 0, res.stderr
    assert [r["Online"] for r in json.loads(res.stdout)] == [True, False]
    res = cli("ping", "--from", "alpha", "127.0.0.1", "--port", port, "--json")
    assert [r["Online"] for r in json.loads(res.stdout)] == [True]
    # a location no worker ever served is False at once, not after the timeout
    began = time.monotonic()
    res = cli("ping", "--worker", "alpha", uniq("never"), "--timeout", "60")
    assert time.monotonic() - began < 30
    assert [line.split()[1] for line in res.stdout.splitlines()[2:]] == ["True", "False"]


def test_ping_by_worker_says_a_busy_worker_is_alive(redis_url: str) -> None:
    # given a host whose worker's one slot runs a long job
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('busy')}:", **FAST)  # type: ignore[arg-type]
    with LocalWorkers(cfg, [["busy1"]], concurrency=1), Fleet(config=cfg) as fleet:
        job = fleet.start("sleep", 60, locations="busy1")
        eventually(lambda: job.state is JobState.RUNNING)
        # when its worker is pinged, then it is alive (its heartbeat), and said to be busy
        res = make_cli(cfg)("ping", "--worker", "busy1", "--timeout", "1", "--json")
        assert res.returncode == 0, res.stderr
        assert [r["Online"] for r in json.loads(res.stdout)] == [True]
        assert "busy1: its worker is alive (heartbeat) but busy" in res.stderr
        fleet.stop(job, timeout=10)


def test_ping_by_worker_says_false_for_a_worker_just_killed(redis_url: str) -> None:
    # given an idle worker killed a moment ago (its last heartbeat still fresh)
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('dead')}:", **FAST)  # type: ignore[arg-type]
    with LocalWorkers(cfg, [["dead1"]], concurrency=2) as workers:
        eventually(lambda: make_cli(cfg)("hosts", "dead1").returncode == 0)
        for proc in workers.procs:
            os.killpg(proc.pid, signal.SIGKILL)
        # when it is pinged, then it is not alive (its heartbeat is fresh, but not busy)
        res = make_cli(cfg)("ping", "--worker", "dead1", "--timeout", "1", "--json")
        assert res.returncode == 0, res.stderr
        assert [r["Online"] for r in json.loads(res.stdout)] == [False]


def test_start_options_and_action_keywords_coexist(
    redis_url: str, fleet: Fleet, workers: LocalWorkers
) -> None:
    # start's own options stay start's; an action parameter of the same name goes in kwargs
    job = fleet.start("echo", "x", name=uniq("n"), locations="alpha", kwargs={"warning": "w"})
    fleet.wait(job, timeout=15)
    got = fleet.receive(job)
    assert list(got) == ["x"] and got.warnings == ["w"]
