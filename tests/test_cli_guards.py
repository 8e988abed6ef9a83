"""What a person can get wrong at the command line gets one line and an exit code, and takes
nothing: a receive with no job named, words JSON cannot carry, a name no reference finds, a
Redis URL that cannot work, a remove or an auto-remove that leaves some jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fleetjobs import Config, Fleet, JobState
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

from .conftest import FAST, CliRunner, eventually, make_cli, uniq


def one_line(res: object, code: int, text: str) -> None:
    stderr = res.stderr  # type: ignore[attr-defined]
    assert res.returncode == code, (res.returncode, stderr)  # type: ignore[attr-defined]
    assert text in stderr, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr


def test_receive_takes_only_the_jobs_named_or_all_when_asked(
    private: tuple[Config, Fleet],
) -> None:
    cfg, fleet = private
    cli = make_cli(cfg)
    first = fleet.start("echo", "from the first", locations="solo")
    second = fleet.start("echo", "from the second", locations="solo")
    assert len(fleet.wait([first, second], timeout=20)) == 2

    # taking records empties them for every console: no job named is no receive at all
    one_line(cli("receive"), 2, "name the jobs to receive, or use --all")
    one_line(cli("receive", "--wait", "--auto-remove"), 2, "or use --all")
    one_line(cli("receive", "--all", str(first.id)), 2, "do not name jobs with it")
    assert {j.id for j in fleet.get()} == {first.id, second.id}
    assert all(j.has_more_data for j in fleet.get())

    res = cli("receive", "--all")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["from the first", "from the second"]
    assert list(fleet.receive(first)) == [] and list(fleet.receive(second)) == []


def test_words_json_cannot_carry_reach_the_action_as_text(cli: CliRunner, fleet: Fleet) -> None:
    # Python's JSON reader takes NaN, Infinity and 1e999 (as inf): no JSON carries them on
    words = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
    res = cli("start", "--json", "-l", "alpha", "echo", *words, "2.5")
    assert res.returncode == 0, res.stderr
    job_id = json.loads(res.stdout)["id"]
    assert fleet.wait([job_id], timeout=20)
    assert list(fleet.receive(job_id)) == [*words, 2.5]
    one_line(cli("start", "-l", "alpha", "echo", '{"a": NaN}'), 2, "looks like JSON but is not")
    one_line(cli("start", "-l", "alpha", "echo", "[Infinity]"), 2, "looks like JSON but is not")


def test_a_name_no_reference_could_find_is_refused(cli: CliRunner, fleet: Fleet) -> None:
    for name in (" padded", "padded ", "\tpadded"):
        res = cli("start", "-l", "alpha", "--name", name, "echo", "x")
        one_line(res, 2, "must not begin or end with white space")
    assert fleet.get(name="*padded*") == []


def test_redis_url_mistakes_are_input_errors(config: Config, cli: CliRunner) -> None:
    base = config.redis_url.rsplit("/", 1)[0]  # redis://host:port
    host_port = base.split("//", 1)[1]
    cases = [
        ("redis://[::1/0", "invalid Redis URL: Invalid IPv6 URL"),
        (f"{base}/0?socket_timeout=0", "?socket_timeout= in the Redis URL"),
        (f"{base}/0?socket_connect_timeout=0", "must be a positive number"),
        (f"{base}/99", "has no database 99"),
        (f"redis+sentinel://{host_port}/mymaster/0", "are no Redis Sentinels"),
    ]
    for url, text in cases:
        one_line(cli("--redis-url", url, "get"), 2, text)
    # a health check interval of 0 is none at all: still a URL that works
    ok = cli("--redis-url", f"{base}/0?health_check_interval=0", "get", "--newest", "1")
    assert ok.returncode == 0, ok.stderr


def test_a_remove_that_leaves_some_says_which_went(cli: CliRunner, fleet: Fleet) -> None:
    done = fleet.start("echo", "x", locations="alpha", name=uniq("Fin"))
    assert fleet.wait([done], timeout=20)
    running = fleet.start("sleep", 60, locations="alpha", name=uniq("Long"))
    res = cli("remove", str(done.id), str(running.id))
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0] == f"fleetjobs: removed 1 job: {done.id} ({done.name})", lines
    assert f"job {running.id} ({running.name}) is " in lines[1] and "not removed" in lines[1]
    assert [j.id for j in fleet.get(name=done.name)] == []
    fleet.stop(running)
    fleet.remove(running)


def test_auto_remove_of_a_job_that_asks_says_to_answer_it(cli: CliRunner, fleet: Fleet) -> None:
    job = fleet.start("ask_where", locations="alpha", name=uniq("Asks"))
    eventually(lambda: fleet.info(job.id).state is JobState.BLOCKED, timeout=20)
    res = cli("receive", "--wait", "--auto-remove", str(job.id), timeout=60)
    assert res.returncode == 1
    child = fleet.info(job.id).children[0]
    asks = f"Blocked: job {child.id} on alpha asks: 'Reboot alpha?' [yes/no]"
    assert f"{asks} — fleetjobs answer {child.id} yes|no" in res.stderr.splitlines()
    last = res.stderr.splitlines()[-1]
    assert last == (
        f"fleetjobs: error: job {job.id} ({job.name}) is Blocked: not removed (it asks a "
        "question: answer it (fleetjobs answer), then receive again)"
    ), res.stderr
    assert "--force" not in res.stderr and "stop it first" not in res.stderr
    assert fleet.info(job.id).state is JobState.BLOCKED  # still there, still asking
    fleet.stop(job)
    fleet.remove(job)


def test_options_that_would_do_nothing_are_refused(cli: CliRunner) -> None:
    one_line(
        cli("start", "-l", "alpha", "--default-answer", "yes", "ask_where"),
        2,
        "--default-answer needs --prompt-timeout",
    )


def test_many_offline_locations_are_a_few_warning_lines(cli: CliRunner, fleet: Fleet) -> None:
    offline = [uniq("gone") for _ in range(7)]
    res = cli("start", "--json", "-l", ",".join(offline), "echo", "x")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith("WARNING: no worker serves location") for line in lines[:4])
    assert lines[4].startswith("WARNING: and 3 more (of 7 warnings:")
    job = json.loads(res.stdout)
    fleet.stop(job["id"])
    fleet.remove(job["id"])


def test_a_command_run_on_a_host_does_not_see_the_workers_credentials(
    cli: CliRunner, config: Config, fleet: Fleet
) -> None:
    # the worker's Redis URL holds its password: a command's output is a job's records,
    # which whoever may read the fleet receives
    script = (
        'echo "url=${FLEETJOBS_REDIS_URL:-none} path=${PATH:+set}"; '
        'env | grep -c "^FLEETJOBS_" || true'
    )
    res = cli("invoke", "-l", "alpha", "run", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["url=none path=set", "0"], (res.stdout, res.stderr)
    assert config.redis_url not in res.stdout
    # nor from its parent's environment: the worker's processes are not dumpable, so their
    # /proc/PID/environ is root's to read, not every process of the worker's user
    job = fleet.start("dumpable", locations="alpha")
    assert fleet.wait([job], timeout=20) and list(fleet.receive(job)) == [0]


def test_beat_and_relay_given_the_url_keep_it_off_their_command_line(config: Config) -> None:
    # ps shows a command line, and a URL holds the password: the worker and Flower already
    # moved it into their environment; beat and relay ran on with it in argv
    env = {k: v for k, v in os.environ.items() if k != "FLEETJOBS_REDIS_URL"}
    env["FLEETJOBS_PREFIX"] = f"{uniq('u')}:"
    for verb, given in (
        ("beat", ["--redis-url", config.redis_url]),
        ("relay", [f"--redis-url={config.redis_url}"]),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetjobs", *given, verb],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            cmdline = Path(f"/proc/{proc.pid}/cmdline")

            def started_again(c: Path = cmdline, v: bytes = verb.encode()) -> bool:
                words = c.read_bytes().split(b"\0")  # empty for a moment while it execs
                return words[-2:] == [v, b""] and not any(b"--redis-url" in w for w in words)

            eventually(started_again, timeout=10)
            assert b"redis://" not in cmdline.read_bytes()
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
            assert f"FLEETJOBS_REDIS_URL={config.redis_url}".encode() in environ
            time.sleep(1.0)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_small_slips_get_a_plain_answer(cli: CliRunner, fleet: Fleet) -> None:
    # an action's option before ACTION was taken for the action's name
    one_line(cli("start", "-l", "alpha", "--top", "2", "processes"), 2, "no such option: --top")
    # a count below one listed nothing and said nothing
    res = cli("invoke", "-l", "alpha", "processes", "--top", "-5")
    assert res.returncode == 1 and "top must be a whole number of processes" in res.stderr
    # the Command column shows an option as it is typed
    job = fleet.start("archive_logs", "/nowhere", "/nowhere", dry_run=True, locations="alpha")
    assert job.command == "archive_logs /nowhere /nowhere --dry-run=true"
    assert fleet.wait([job], timeout=20)
    # receive --location takes a glob, as get --location does
    two = fleet.start("echo", "both", locations=["alpha", "beta"])
    assert fleet.wait([two], timeout=20)
    got = cli("receive", str(two.id), "--location", "al*")
    assert got.returncode == 0 and got.stdout == "both\n", got.stderr
    fleet.remove([job, two])


def test_a_start_whose_answer_redis_stalled_past_the_timeout_is_not_said_lost() -> None:
    # given a fleet whose Redis stalls (a VM pause, a slow fork) past the socket timeout
    # just as the script that writes a job is sent
    with EmbeddedRedis(tcp=True) as server:
        cfg = Config(redis_url=server.url + "?socket_timeout=1", prefix=f"{uniq('st')}:")
        with Fleet(config=cfg) as fleet:
            fleet.start("echo", "warm", locations="nowhere")  # the scripts known to Redis
            scripts = fleet.store.scripts
            proc = server.proc
            assert proc is not None

            def stalling(name: str, *args: object) -> object:
                if name == "create":
                    os.kill(proc.pid, signal.SIGSTOP)
                    threading.Timer(2.5, os.kill, (proc.pid, signal.SIGCONT)).start()
                return scripts(name, *args)

            fleet.store.scripts = stalling  # type: ignore[assignment]
            # when the job is started, then the start learns the job was written (Redis ran
            # the script when it came back) and returns it, where it said 'cannot reach
            # Redis' (exit 4) and a retry ran the job twice
            job = fleet.start("echo", "once", name=uniq("Stalled"), locations="nowhere")
            fleet.store.scripts = scripts
            assert [j.id for j in fleet.get(name=job.name)] == [job.id]
            assert fleet.info(job).state is JobState.NOT_STARTED


def test_a_full_redis_still_shows_the_fleet_and_remove_frees_it(logs: Path) -> None:
    # given a fleet with a finished job whose Redis reaches its maxmemory, evicting nothing
    with EmbeddedRedis(tcp=True) as server:
        cfg = Config(redis_url=server.url, prefix=f"{uniq('oom')}:", **FAST)  # type: ignore[arg-type]
        with LocalWorkers(cfg, [["full"]], concurrency=1, log_dir=logs), Fleet(config=cfg) as f:
            job = f.start("echo", "x" * 1000, locations="full")
            assert f.wait([job], timeout=20)
            r = f.store.r
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", "100000")  # well below what it holds
            cli = make_cli(cfg)
            # then the read verbs read (the sweep they do is a write: it is left for later)
            for args in (["get"], ["wait", str(job.id)], ["receive", "--keep", str(job.id)]):
                res = cli(*args)
                assert res.returncode == 0, (args, res.stderr)
            # a write says so in one line
            res = cli("start", "-l", "full", "echo", "more")
            assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
            assert "is full: it takes no writes past its maxmemory" in res.stderr
            # and remove frees it
            res = cli("remove", str(job.id))
            assert res.returncode == 0, res.stderr
            assert f.get() == []
            r.config_set("maxmemory", "0")
