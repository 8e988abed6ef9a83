"""The fleetjobs command, run as a separate process per call: another console each time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from fleetjobs import ArgumentError, Config, Fleet, JobState
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

from .conftest import (
    CHILD_KEYS,
    JOB_KEYS,
    ROOT,
    CliRunner,
    console,
    console_env,
    default_signals,
    eventually,
    make_cli,
    on_a_terminal,
    uniq,
)


def test_start_prints_the_job_row_and_returns_at_once(cli: CliRunner) -> None:
    name = uniq("Backup")
    res = cli("start", "--name", name, "--location", "alpha", "sleep", "5", "Backup done")
    assert res.returncode == 0, res.stderr
    header, dashes, row = res.stdout.splitlines()
    assert header.split() == ["Id", "Name", "State", "HasMoreData", "Location", "Command"]
    assert set(dashes.replace(" ", "")) == {"-"}
    assert name in row and "alpha" in row and "sleep 5 'Backup done'" in row
    cli("stop", name)


def test_the_verbs_end_to_end_with_json(cli: CliRunner) -> None:
    name = uniq("Report")
    started = json.loads(
        cli(
            "start",
            "--json",
            "--name",
            name,
            "-l",
            "beta",
            "echo",
            "Report done",
            "--warning",
            "careful",
        ).stdout
    )
    assert started.keys() >= JOB_KEYS and started["children"][0].keys() >= CHILD_KEYS
    assert started["name"] == name and started["location"] == "beta"

    waited = json.loads(cli("wait", "--json", name, "--timeout", "20").stdout)
    assert [j["state"] for j in waited] == ["Completed"]

    got = json.loads(cli("get", "--json", "--state", "completed", "--name", name).stdout)
    assert [j["id"] for j in got] == [started["id"]] and got[0]["has_more_data"] is True

    records = json.loads(cli("receive", "--json", str(started["id"])).stdout)
    assert [(r["stream"], r["data"]) for r in records] == [
        ("output", "Report done"),
        ("warning", "careful"),
    ]
    assert {"job", "location", "stream", "data", "time"} <= records[0].keys()
    assert records[0]["location"] == "beta"
    assert json.loads(cli("receive", "--json", name).stdout) == []

    removed = cli("remove", "--json", started["instance_id"])
    assert removed.returncode == 0 and json.loads(removed.stdout)[0]["id"] == started["id"]
    gone = cli("get", name)
    assert (
        gone.returncode == 1 and gone.stderr.strip() == f"fleetjobs: error: no job named {name!r}"
    )


def test_receive_prints_objects_as_a_table_and_streams_on_stderr(
    cli: CliRunner, fleet: Fleet
) -> None:
    job = fleet.start("interleave", locations="alpha")
    fleet.wait([job], timeout=15)
    res = cli("receive", str(job.id))
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["first", "Name   Size", "----   ----", "second 2", "last"]
    assert res.stderr.splitlines() == [
        "ERROR: an error",
        "WARNING: a warning",
        "VERBOSE: a verbose line",
        "DEBUG: a debug line",
        "INFO: an information line",
        "PROGRESS: 50% half way",
    ]


def test_a_jobs_output_and_reason_cannot_drive_the_terminal(cli: CliRunner, fleet: Fleet) -> None:
    # given output and a failure reason that carry escape sequences: a clipboard write (OSC
    # 52), a window title, a bare CR that overwrites the line, a C1 CSI
    osc52, title = "\x1b]52;c;ZWNobyBwd25lZA==\x07x", "kaboom \x1b]0;T\x07\r\n  line two"
    job = fleet.start(
        "echo", osc52, "a\rb", "\u009b31mZ", "tab\there", "1\u00a0234 👨\u200d👩", locations="alpha"
    )
    failed = fleet.start("fail_with", title, locations="alpha")
    fleet.wait([job, failed], timeout=15)
    # when they are received
    res, bad = cli("receive", str(job.id)), cli("receive", str(failed.id))
    # then every control character prints escaped, but a tab stays a tab, and text that
    # moves no cursor (a no-break space, an emoji's joiner) stays as written
    assert res.stdout.splitlines() == [
        "\\x1b]52;c;ZWNobyBwd25lZA==\\x07x",
        "a\\rb",
        "\\x9b31mZ",
        "tab\there",
        "1\u00a0234 👨\u200d👩",
    ]
    assert bad.returncode == 1
    # a reason's own line breaks stay line breaks (CRLF too)
    assert bad.stderr.splitlines() == ["ERROR: kaboom \\x1b]0;T\\x07", "  line two"]
    for out in (res.stdout, res.stderr, bad.stdout, bad.stderr):
        assert not set(out) & {"\x1b", "\x07", "\r", "\x9b"}


def test_arguments_parse_as_json_when_they_parse(cli: CliRunner, fleet: Fleet) -> None:
    res = cli(
        "start",
        "--json",
        "-l",
        "alpha",
        "echo",
        "5",
        "true",
        "[1,2]",
        '{"a":1}',
        "plain text",
        '"5"',
    )
    job_id = json.loads(res.stdout)["id"]
    fleet.wait([job_id], timeout=15)
    assert list(fleet.receive(job_id)) == [5, True, [1, 2], {"a": 1}, "plain text", "5"]


def test_wait_timeout_prints_nothing_and_exits_3(cli: CliRunner, fleet: Fleet) -> None:
    job = fleet.start("sleep", 30, locations="alpha")
    res = cli("wait", str(job.id), "--timeout", "0.5")
    assert res.returncode == 3 and res.stdout == ""
    fleet.stop(job)


def test_stop_and_remove_from_the_command_line(cli: CliRunner, fleet: Fleet) -> None:
    name = uniq("Forever")
    cli("start", "--name", name, "-l", "alpha", "sleep", "3600")
    refused = cli("remove", name)
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    stopped = json.loads(cli("stop", "--json", name).stdout)
    assert stopped[0]["state"] == "Stopped"
    assert cli("remove", name).returncode == 0
    assert fleet.get(name=name) == []


def test_bad_input_is_one_line_and_a_non_zero_exit(cli: CliRunner) -> None:
    cases = [
        (("get", "987654"), 1, "no job with Id 987654"),
        (("receive", "no-such"), 1, "no job named 'no-such'"),
        (("start", "-l", "alpha", "nope"), 2, "unknown action 'nope'"),
        (("start", "-l", "alpha", "--kw", "novalue", "echo"), 2, "is not KEY=VALUE"),
        (("start", "-l", "alpha", "echo", "--no.such", "1"), 2, "takes no option --no.such"),
        (("start", "-l", "alpha", "echo", '{"a":'), 2, "looks like JSON but is not"),
        (("get", "--state", "Sleeping"), 2, "unknown state 'Sleeping'"),
        (("remove",), 2, "--state STATE or --all"),
        (("start", "-l", "bad/name", "echo"), 2, "invalid location"),
        (("frobnicate",), 2, "No such command"),
        # numbers a job's record cannot hold, and no location at all
        (("start", "-l", "alpha", "--start-timeout", "nan", "echo"), 2, "not a finite number"),
        (("start", "-l", "alpha", "--timeout", "1e12", "echo"), 2, "0<x<=1000000000"),
        (("start", "-l", "alpha", "--batch", "1.5", "echo"), 2, "neither a host count"),
        (("start", "-l", "", "echo"), 2, "no location named in ''"),
        (("schedule", "add", "s", "--every", "1m", "-l", ",", "echo"), 2, "no location named"),
        (("wait", "1", "--timeout", "nan"), 2, "not a finite number of seconds"),
        (("receive", "1", "--wait", "--auto-remove", "--keep"), 2, "not with --keep"),
        (("actions", "--location", "nohost*"), 1, "no online host matches 'nohost*'"),
        (("ping", ""), 2, "a SERVER to ping is an empty name"),
        # a name another verb would read as an Id or an InstanceId
        (("start", "-l", "alpha", "--name", "36", "echo"), 2, "must not read as an Id"),
        (
            ("start", "-l", "alpha", "-n", "0b8f5b9e-8e4b-4f7e-9d3c-2f1a2b3c4d5e", "echo"),
            2,
            "Id or an InstanceId",
        ),
        (("start", "-l", "alpha", "echo", "[" * 3000 + "]" * 3000), 2, "nests deeper than JSON"),
        (("start", "-l", "alpha", "echo", "\udc9b31m"), 2, "is not valid UTF-8 text"),
        (("ping", "--timeout", "inf", "alpha"), 2, "0<x<=1000000000"),
        (("schedule", "add", "s", "--every", "9999999999d", "echo"), 2, "is over 1000000000 s"),
        (("schedule", "add", "s", "--every", "1m", "--max-results", "9" * 20, "echo"), 2, "most"),
    ]
    for args, code, text in cases:
        res = cli(*args)
        assert res.returncode == code, (args, res.returncode, res.stderr)
        assert text in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        assert res.stderr.count("\n") == 1, res.stderr


def test_run_refused_by_a_host_is_an_input_error(cli: CliRunner, locked: object) -> None:
    res = cli("start", "-l", "locked", "run", "id")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("fleetjobs: error: the worker on locked does not allow")


def test_redis_unreachable_with_no_url_given_says_how_to_give_one() -> None:
    # a newcomer with nothing set reached for redis://127.0.0.1:6379/0 and was told only that
    # it could not be reached; run where no network is (a namespace of its own, as root)
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a process with no network")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}
    argv = ["unshare", "-n", sys.executable, "-m", "fleetjobs", "get"]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 4 and res.stderr.count("\n") == 1, res.stderr
    assert "cannot reach Redis at redis://127.0.0.1:6379/0" in res.stderr
    assert res.stderr.rstrip().endswith(
        "(no URL was given: set FLEETJOBS_REDIS_URL or --redis-url)"
    ), res.stderr
    # and with a URL given, the error is about that URL alone
    given = subprocess.run(
        [*argv[:-1], "--redis-url", "redis://127.0.0.1:6379/0", "get"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert given.returncode == 4 and "no URL was given" not in given.stderr, given.stderr


def test_redis_unreachable_names_the_url_without_its_password(config: Config) -> None:
    down = make_cli(config.with_(redis_url="redis://admin:s3cret@127.0.0.1:1/0"))
    res = down("get")
    assert res.returncode == 4
    assert res.stderr.startswith(
        "fleetjobs: error: cannot reach Redis at redis://admin:***@127.0.0.1:1/0"
    )
    assert "s3cret" not in res.stderr and res.stderr.count("\n") == 1
    # no sentinel answers: one readable line, not redis-py's repr of its pools
    down = make_cli(config.with_(redis_url="redis+sentinel://:s3cret@127.0.0.1:1/fleet/0"))
    res = down("get")
    assert res.returncode == 4 and res.stderr.count("\n") == 1, res.stderr
    assert "No master found for 'fleet' (no sentinel answered" in res.stderr
    assert "s3cret" not in res.stderr and len(res.stderr) < 300


def test_credentials_redis_refuses_are_bad_input_said_at_once(config: Config) -> None:
    # given a URL whose user and password the (running) Redis does not know
    url = config.redis_url.replace("redis://", "redis://nobody:wr0ng@", 1)
    assert url != config.redis_url
    refused = make_cli(config.with_(redis_url=url))
    # when a verb that rides out a Redis away runs with it (wait, at once and for ever),
    # then it says so in one line, exit 2 (the URL is wrong), and does not wait for a
    # credential to come right (it rode it out 10 s, then said "cannot reach Redis", exit 4)
    for args in (["get"], ["wait", "1", "--timeout", "0"], ["wait", "1"]):
        res = refused(*args, timeout=8)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("fleetjobs: error: Redis at redis://nobody:***@"), res.stderr
        assert "refused the credentials" in res.stderr and "wr0ng" not in res.stderr
        assert res.stderr.count("\n") == 1, res.stderr


def test_a_wait_rides_out_a_redis_away_no_longer_than_its_timeout(config: Config) -> None:
    down = make_cli(config.with_(redis_url="redis://127.0.0.1:1/0"))
    # --timeout 0 checks once (it rode a Redis away out for 10 s first)
    res = down("wait", "1", "--timeout", "0", timeout=8)
    assert res.returncode == 4 and res.stderr.startswith("fleetjobs: error: cannot reach Redis")
    # and in Python, a timeout that is no number of seconds is an ArgumentError at once
    with Fleet(config=config) as fleet:
        for bad in ("5", float("nan"), -1):
            with pytest.raises(ArgumentError, match=r"^timeout must"):
                fleet.wait(1, timeout=bad)  # type: ignore[arg-type]


def test_a_worker_that_cannot_reach_redis_exits_4_as_the_verbs_do() -> None:
    env = {**os.environ, "FLEETJOBS_REDIS_URL": "redis://admin:s3cret@127.0.0.1:1/0"}

    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "fleetjobs.workers", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    res = worker("--location", "nowhere")
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith(
        "fleetjobs worker: error: cannot reach Redis at redis://admin:***@"
    )
    assert "s3cret" not in res.stderr and res.stderr.count("\n") == 1
    # and its bad input is exit 2, checked before Redis is asked
    for args, text in (
        (["--location", ""], "no location named in --location ''"),
        (["--concurrency", "99999999999"], "--concurrency must be from 1 to 1024"),
        (["--concurrency", "0"], "--concurrency must be from 1 to 1024, got 0"),
        (["--loglevel", "BOGUS"], "argument --loglevel: invalid choice: 'BOGUS'"),
        # the first would be dropped without a word, and --target role=web miss the host
        (["--location", "x", "--tag", "role=web", "--tag", "role=db"], "--tag role is given twice"),
    ):
        res = worker(*args)
        assert res.returncode == 2 and text in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


def test_receive_wait_prints_as_records_arrive(cli: CliRunner, fleet: Fleet) -> None:
    job = fleet.start("produce", 4, 0.3, locations="beta")
    res = cli("receive", "--wait", "--auto-remove", str(job.id))
    assert res.stdout.split() == ["1", "2", "3", "4"]
    assert fleet.registry.r.exists(fleet.store.keys.job(job.id)) == 0


def test_a_job_started_from_one_process_is_seen_by_another(cli: CliRunner, fleet: Fleet) -> None:
    name = uniq("Shared")
    cli("start", "--name", name, "-l", "alpha", "echo", "from the first console")
    [job] = fleet.get(name=name)
    fleet.wait([job], timeout=15)
    assert cli("receive", name).stdout == "from the first console\n"


def test_python_dash_m_and_help(cli: CliRunner) -> None:
    res = cli("--help")
    assert res.returncode == 0 and "Exit codes" in res.stdout
    for verb in ("start", "get", "wait", "receive", "stop", "remove", "worker", "demo", "hosts"):
        assert verb in res.stdout
    assert "--allow-shell" in cli("worker", "--help").stdout
    # what a JOB is, where a verb takes one; every exit code a verb can end with
    assert "130 interrupted" in res.stdout and "A JOB is" not in res.stdout
    assert "A JOB is" in cli("get", "--help").stdout
    for verb in (["hosts"], ["actions"], ["ping"], ["schedule", "list"], ["start"]):
        assert "A JOB is" not in cli(*verb, "--help").stdout, verb
    # every option says what it does
    assert "--count INTEGER RANGE Echo" in " ".join(cli("ping", "--help").stdout.split())
    for verb in (["schedule", "add"], ["start"], ["invoke"]):
        words = " ".join(cli(*verb, "--help").stdout.split())
        assert "--throttle-limit INTEGER RANGE At most" in words, verb
    # the bare program (or a group of verbs) shows what it offers, as asked, not as an error
    for bare in ([], ["schedule"]):
        res = cli(*bare)
        assert res.returncode == 0 and res.stderr == "", (bare, res.stderr)
        assert res.stdout.startswith(f"Usage: {' '.join(['fleetjobs', *bare])} [OPTIONS]")


def test_interrupting_receive_wait_leaves_the_job_alone(config: Config, fleet: Fleet) -> None:
    job = fleet.start("produce", 50, 0.2, locations="alpha")
    # its signals as a terminal leaves them: the suite run as a shell's background job (or
    # under nohup) would hand it SIGINT ignored, and the Ctrl-C would never come
    proc = console(config, "receive", "--wait", str(job.id), stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "1\n"  # it is receiving
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert job.state is JobState.RUNNING
    fleet.stop(job)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_invoke_ended_by_a_signal_stops_and_removes_its_job(
    config: Config, fleet: Fleet, sig: signal.Signals
) -> None:
    # given an invoke running a job (Ctrl-C, timeout's SIGTERM, a closed terminal's SIGHUP)
    name = uniq("inv")
    invoke = ["invoke", "-n", name, "-l", "alpha", "produce", "50", "0.2"]
    proc = console(config, *invoke, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "1\n"  # it is running
    # when the signal comes
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    # then the job was stopped and removed, as for Ctrl-C, and the exit says which signal
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    assert "Traceback" not in err and all(j.name != name for j in fleet.get())


def test_an_invoke_whose_terminal_closes_stops_and_removes_its_job(
    config: Config, fleet: Fleet
) -> None:
    # given an invoke on a terminal of its own, showing its live display
    name = uniq("tty")
    pid, master = on_a_terminal(config, "invoke", "-n", name, "-l", "alpha", "produce", "50", "0.2")
    seen = b""
    while b"1" not in seen:  # it is running
        seen += os.read(master, 1024)
    # when the terminal goes away (SIGHUP, and every write after it fails with EIO)
    os.close(master)
    _, status = os.waitpid(pid, 0)
    # then the job was stopped and removed all the same, not left running everywhere
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0
    eventually(lambda: all(j.name != name for j in fleet.get()), timeout=20)


def test_an_invoke_that_cannot_write_its_output_leaves_its_job_running(
    config: Config, fleet: Fleet
) -> None:
    # given an invoke whose output goes to a full disk
    name = uniq("full")
    invoke = ["invoke", "-n", name, "-l", "alpha", "produce", "50", "0.1"]
    with open("/dev/full", "w") as full:
        code, said = _into(full, invoke, console_env(config))
    # then it fails saying so, and what runs on the hosts is not undone for it: the job is
    # left, with its output, for a receive
    err = "\n".join(said)
    assert code == 1 and "No space left on device" in err, err
    [job] = [j for j in fleet.get() if j.name == name]
    assert f"job {job.id} left running: fleetjobs receive {job.id}" in err
    fleet.stop(job, timeout=10)
    fleet.remove(job, force=True)


def test_an_invoke_under_nohup_outlives_a_hangup(config: Config, fleet: Fleet) -> None:
    # given an invoke that ignores SIGHUP (nohup fleetjobs invoke ... &)
    name = uniq("nohup")
    invoke = ["invoke", "-n", name, "-l", "alpha", "produce", "5", "0.2"]
    proc = console(
        config,
        *invoke,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: (default_signals(), signal.signal(signal.SIGHUP, signal.SIG_IGN)),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "1\n"
    # when the terminal hangs up, then the invoke goes on to its end
    proc.send_signal(signal.SIGHUP)
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    assert rest.split() == ["2", "3", "4", "5"]


def test_a_reader_that_goes_away_ends_every_verb_alike(config: Config, fleet: Fleet) -> None:
    job = fleet.start("echo", "x", locations="alpha")
    assert fleet.wait([job], timeout=20)
    env = {**os.environ, "FLEETJOBS_REDIS_URL": config.redis_url, "FLEETJOBS_PREFIX": config.prefix}
    for verb in (["get"], ["get", "--json"], ["receive", "--keep", str(job.id)], ["hosts"]):
        # when the reader of its output is gone before it prints (| head, its line read)
        read, write = os.pipe()
        os.close(read)
        try:
            code, said = _into(write, verb, env)
        finally:
            os.close(write)
        # then it ends as a Unix tool SIGPIPE ends: 141, with nothing on stderr
        assert (code, said) == (141, []), verb


def _into(stdout: Any, verb: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """``fleetjobs VERB`` with its output into ``stdout``: its exit code and what it said on
    stderr, less the note that older jobs exist (the fleet these tests share may hold more
    than get lists)."""
    done = subprocess.run(
        [sys.executable, "-m", "fleetjobs", *verb],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    return done.returncode, [ln for ln in done.stderr.splitlines() if "older ones exist" not in ln]


def test_output_that_cannot_be_written_is_one_line_and_a_failure(
    config: Config, fleet: Fleet
) -> None:
    job = fleet.start("echo", "x", locations="alpha")
    assert fleet.wait([job], timeout=20)
    env = {**os.environ, "FLEETJOBS_REDIS_URL": config.redis_url, "FLEETJOBS_PREFIX": config.prefix}
    buffered = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}  # as a shell runs it
    unbuffered = {**env, "PYTHONUNBUFFERED": "1"}  # each write fails as the verb makes it
    verbs = (["get"], ["get", "--json"], ["receive", "--keep", str(job.id)])
    for verb, env in ((v, e) for v in verbs for e in (buffered, unbuffered)):
        # when its output goes to a full disk (the end of a table is written last)
        with open("/dev/full", "w") as full:
            code, said = _into(full, verb, env)
        # then it says so in one line and fails, not a success with the output cut short
        assert (code, said) == (
            1,
            ["fleetjobs: error: the output could not be written: No space left on device"],
        ), verb


def test_redis_going_away_mid_wait_is_one_line_and_exit_4() -> None:
    # given a fleet of its own whose Redis is about to go away
    with EmbeddedRedis(tcp=True) as server:
        cfg = Config(redis_url=server.url, prefix="gone:", heartbeat_interval=0.5, host_ttl=3.0)
        with LocalWorkers(cfg, [["solo"]], concurrency=1, stop_timeout=2):
            with Fleet(config=cfg) as fleet:
                job = fleet.start("sleep", 60, locations="solo")
            env = {
                **os.environ,
                "FLEETJOBS_REDIS_URL": cfg.redis_url,
                "FLEETJOBS_PREFIX": cfg.prefix,
            }
            waiting = subprocess.Popen(
                [sys.executable, "-m", "fleetjobs", "wait", str(job.id)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            # when Redis stops while a console waits
            time.sleep(2)
            server.stop()
            _, err = waiting.communicate(timeout=60)
    # then the console says so in one line and exits 4
    assert waiting.returncode == 4, err
    assert err.startswith(f"fleetjobs: error: cannot reach Redis at {cfg.safe_url}")
    assert err.count("\n") == 1 and "Traceback" not in err
