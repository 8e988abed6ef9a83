"""Schedules: RedBeat keeps them in Redis, real ``fleetjobs beat`` processes fire them.

Every beat here is a real subprocess on the test Redis, with RedBeat's timings made short
through the fleet's config (``FLEETJOBS_BEAT_INTERVAL=1``: the beat looks at the schedules
every second and a standby tries the lock as often; ``FLEETJOBS_BEAT_LOCK_TIMEOUT=5``). The
schedules fire every second, so a story takes a few seconds.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fleetjobs import Config, Fleet, JobState
from fleetjobs.embedded import LocalWorkers
from fleetjobs.errors import (
    ArgumentError,
    BadTriggerError,
    JobNotFoundError,
    NoHostError,
    UnknownActionError,
)

from .conftest import FAST, eventually, make_cli, uniq
from .schedule_support import Beat, beat, run_ids, sfleet

__all__ = ["beat", "sfleet"]  # the module-scoped fixtures, shared with test_schedule_faults


def test_a_schedule_fires_runs_that_get_lists_and_receive_reads(
    sfleet: tuple[Config, Fleet], beat: Beat
) -> None:
    # given a schedule added while the beat runs, every second, on the hosts tagged role=web
    _, fleet = sfleet
    name = uniq("tick")
    fleet.schedules.add(name, "echo", "hello", every=1, target=["role=web"])

    # then it fires runs named after it, each an ordinary parent with a child per host
    eventually(lambda: len(run_ids(fleet, name)) >= 3, timeout=30)
    fleet.schedules.disable(name)
    first = fleet.get(name=name)[0]
    assert sorted(c.location for c in first.children) == ["s1", "s2"]
    assert first.wait(20)
    assert first.receive() == ["hello", "hello"]
    # and the schedule says what it did
    info = fleet.schedules.show(name)
    assert info.last_run is not None and info.last_run.id == run_ids(fleet, name)[-1]
    assert [r.id for r in info.runs] == run_ids(fleet, name)
    fleet.schedules.remove(name)


def test_get_by_the_name_of_a_schedule_that_has_not_fired_says_so(
    sfleet: tuple[Config, Fleet],
) -> None:
    # README: a schedule's runs are listed by `get NAME`; before its first firing that said
    # only "no job named", as for a typo
    cfg, fleet = sfleet
    name = uniq("nightly")
    fleet.schedules.add(name, "echo", 1, cron="0 3 1 1 *", target=["role=web"])
    with pytest.raises(JobNotFoundError, match=f"schedule '{name}' has not fired yet"):
        fleet.get(name)
    res = make_cli(cfg)("get", name)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert f"(fleetjobs schedule show {name})" in res.stderr
    # and once it is gone, a plain "no job named"
    fleet.schedules.remove(name)
    with pytest.raises(JobNotFoundError) as gone:
        fleet.get(name)
    assert str(gone.value) == f"no job named {name!r}"


def test_only_the_newest_max_results_runs_are_kept(
    sfleet: tuple[Config, Fleet], beat: Beat
) -> None:
    # given a schedule that keeps 2 runs
    _, fleet = sfleet
    name = uniq("keep2")
    fleet.schedules.add(name, "echo", "x", every=1, locations="s1", max_results=2)
    seen: dict[int, str] = {}

    def five_fired() -> bool:
        for job in fleet.get(name=name):
            seen.setdefault(job.id, job.info.children[0].instance_id)
        return len(seen) >= 5

    # when it has fired at least five times
    eventually(five_fired, timeout=40, every=0.1)
    fleet.schedules.disable(name)
    time.sleep(1.5)  # a firing already under way when it was disabled
    # then two runs are left, the newest, and the older ones are gone with their output
    left = run_ids(fleet, name)
    assert len(left) == 2
    old = [i for i in seen if i < min(left)]
    assert len(old) >= 3
    registry = fleet.registry
    for job_id in old:  # the parent, its one child, the child's records
        assert not registry.r.exists(registry.keys.job(job_id), registry.keys.job(job_id + 1))
        assert not registry.r.exists(registry.keys.out(seen[job_id]))
    assert [r.id for r in fleet.schedules.show(name).runs] == left
    fleet.schedules.remove(name)


def test_overlap_skip_does_not_fire_while_the_previous_run_is_unfinished(
    sfleet: tuple[Config, Fleet], beat: Beat
) -> None:
    # given a schedule every second whose run takes 6 s, with the default policy (skip)
    _, fleet = sfleet
    name = uniq("slow")
    info = fleet.schedules.add(name, "sleep", 6, every=1, locations="s1")
    assert info.overlap == "skip"
    eventually(lambda: run_ids(fleet, name), timeout=30)
    # when it comes due again while that run is going
    eventually(lambda: fleet.schedules.show(name).skipped >= 2, timeout=20)
    # then no second run was started, and the skips are recorded with their reason
    runs = fleet.get(name=name)
    assert len(runs) == 1 and not runs[0].info.finished
    shown = fleet.schedules.show(name)
    assert shown.skips[0]["reason"].startswith(f"run {runs[0].id} is still ")
    assert shown.skips[0]["manual"] is False
    # and a run-now is skipped the same way
    assert fleet.schedules.run(name) is None
    assert fleet.schedules.show(name).skips[0]["manual"] is True
    fleet.schedules.remove(name)
    fleet.stop(runs)


def test_a_skip_schedules_run_on_a_host_down_fails_before_the_next_firing(
    sfleet: tuple[Config, Fleet],
) -> None:
    _, fleet = sfleet
    r, keys = fleet.store.r, fleet.store.keys

    def start_timeout(job: object) -> str | None:
        [child] = fleet.info(job.id).children  # type: ignore[attr-defined]
        value: str | None = r.hget(keys.job(child.id), "start_timeout")
        return value

    # given a skip schedule (the default) for a location no worker serves: add says so
    down, name = uniq("down"), uniq("blocked")
    info = fleet.schedules.add(name, "echo", "x", every=5, locations=down)
    assert [w.split(";")[0] for w in info.warnings] == [
        f"no worker serves location {down!r} now"
    ], info.warnings
    # when it fires, then its run fails a part no worker started before the next firing
    # (at least 60 s), so one host down does not hold every later run for ever
    run = fleet.schedules.run(name)
    assert run is not None and float(start_timeout(run) or 0) == 60
    fleet.schedules.remove(name)
    fleet.stop(run)
    # a cron's: until its next firing; one given, or a parallel schedule's, as given
    name = uniq("daily")
    fleet.schedules.add(name, "echo", "x", cron="0 3 * * *", locations=down)
    run = fleet.schedules.run(name)
    assert run is not None
    due = fleet.schedules.show(name).next_run or 0
    assert abs(float(start_timeout(run) or 0) - max(60, due - time.time())) < 5
    fleet.schedules.remove(name)
    fleet.stop(run)
    for kwargs in ({"start_timeout": 7}, {"overlap": "parallel"}):
        name = uniq("given")
        fleet.schedules.add(name, "echo", "x", every=5, locations=down, **kwargs)  # type: ignore[arg-type]
        run = fleet.schedules.run(name)
        assert run is not None
        assert start_timeout(run) == ("7" if kwargs.get("start_timeout") else None), kwargs
        fleet.schedules.remove(name)
        fleet.stop(run)


def test_a_firing_no_beat_made_shows_overdue(sfleet: tuple[Config, Fleet]) -> None:
    cfg, fleet = sfleet
    # given an hourly schedule last fired two hours ago, and no beat running since
    name = uniq("late")
    fleet.schedules.add(name, "echo", "x", every=3600, locations="s1")
    entry = fleet.schedules._entry(name)
    assert entry is not None
    entry.reschedule(datetime.now(UTC) - timedelta(hours=2))
    # then its next run is when it was due, an hour ago, and list says it is overdue
    info = fleet.schedules.show(name)
    assert info.next_run is not None and abs(info.next_run - (time.time() - 3600)) < 60
    listed = make_cli(cfg)("schedule", "list")
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(name)]
    assert row.endswith("(overdue: is a beat running?)"), row
    fleet.schedules.remove(name)


def test_overlap_stop_existing_stops_the_previous_run(sfleet: tuple[Config, Fleet]) -> None:
    _, fleet = sfleet
    name = uniq("stopper")
    fleet.schedules.add(
        name, "sleep", 30, cron="0 0 1 1 *", locations="s1", overlap="stop-existing"
    )
    first = fleet.schedules.run(name)
    assert first is not None
    eventually(lambda: first.state is JobState.RUNNING, timeout=20)
    second = fleet.schedules.run(name)
    assert second is not None
    assert first.wait(20) and first.state is JobState.STOPPED
    assert not second.done()
    fleet.remove([second], force=True)
    fleet.schedules.remove(name)


def test_disable_stops_firing_and_enable_resumes(sfleet: tuple[Config, Fleet], beat: Beat) -> None:
    _, fleet = sfleet
    name = uniq("pause")
    fleet.schedules.add(name, "echo", 1, every=1, locations="s2")
    eventually(lambda: run_ids(fleet, name), timeout=30)
    # when it is disabled, it fires no more (a firing under way may still land)
    assert fleet.schedules.disable(name).enabled is False
    time.sleep(1.5)
    before = run_ids(fleet, name)
    time.sleep(3)
    assert run_ids(fleet, name) == before
    assert fleet.schedules.show(name).next_run is None
    # when it is enabled again, it fires again
    assert fleet.schedules.enable(name).enabled is True
    eventually(lambda: len(run_ids(fleet, name)) > len(before), timeout=30)
    fleet.schedules.remove(name)


def test_run_now_starts_a_run_at_once(sfleet: tuple[Config, Fleet]) -> None:
    # given a yearly schedule (no beat needed for run-now)
    cfg, fleet = sfleet
    name = uniq("yearly")
    cli = make_cli(cfg)
    done = cli("schedule", "add", name, "--cron", "0 0 1 1 *", "-l", "s1,s2", "echo", "now")
    assert done.returncode == 0, done.stderr
    # when it is run now from the command line
    done = cli("schedule", "run", name, "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)[0]
    # then that run is a job like any: get lists it, receive reads it
    job = fleet.job(run["id"])
    assert job.name == name and job.wait(20)
    assert job.receive() == ["now", "now"]
    shown = json.loads(cli("schedule", "show", name, "--json").stdout)
    assert shown["last_run"]["id"] == run["id"] and shown["last_run"]["state"] == "Completed"
    assert shown["next_run"] is not None and shown["trigger"]["text"] == "cron 0 0 1 1 * (UTC)"
    assert cli("schedule", "remove", name).returncode == 0
    gone = cli("schedule", "show", name)
    assert gone.returncode == 1 and f"no schedule named {name!r}" in gone.stderr


def test_bad_schedules_are_refused_at_add_and_nothing_is_stored(
    sfleet: tuple[Config, Fleet],
) -> None:
    cfg, fleet = sfleet
    cli = make_cli(cfg)
    name = uniq("bad")
    cases = [
        (["--cron", "61 * * * *", "echo"], "bad cron expression '61 * * * *'"),
        (["--cron", "0 3 * *", "echo"], "five fields are needed"),
        # Celery's parser read a backwards range as wrapping round (1-0: every minute) and
        # said '8 > 6' of a day of week that may be 7
        (["--cron", "1-0 * * * *", "echo"], "the minute range 1-0 runs backwards"),
        (["--cron", "0 0 * * 8", "echo"], "day of week 8 is out of 0-7 (0 and 7 are Sunday)"),
        # the year 10000 in UTC: an internal error from deep in RedBeat
        (
            ["--at", "9999-12-31T23:59:59", "--timezone", "Etc/GMT+12", "-l", "s1", "echo"],
            "is past the year 9999 in UTC",
        ),
        (["--every", "10m", "-l", "s1", "no_such_action"], "unknown action 'no_such_action'"),
        (["--every", "10m", "--target", "role=nope", "echo"], "matched no online host"),
        (["--every", "10m", "-l", "zz*", "echo"], "matched no online host"),
        (["--at", "2001-01-01T00:00", "echo"], "is in the past"),
        (["--every", "10m", "--timezone", "Mars/Base", "echo"], "unknown time zone"),
        (["--every", "soon", "echo"], "bad interval 'soon'"),
        (["echo"], "give exactly one trigger"),
    ]
    for argv, message in cases:
        done = cli("schedule", "add", name, *argv)
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (argv, done.stderr)
    # a name far too long is not echoed whole
    done = cli("schedule", "add", "a" * 300, "--every", "1m", "echo")
    assert done.returncode == 2 and "invalid schedule name 'aaaa" in done.stderr
    assert done.stderr.count("\n") == 1 and len(done.stderr) < 200, done.stderr
    listed = cli("schedule", "list", "--json")
    assert name not in [s["name"] for s in json.loads(listed.stdout)]
    # the same from Python
    with pytest.raises(BadTriggerError):
        fleet.schedules.add(name, "echo", cron="every day")
    with pytest.raises(UnknownActionError):
        fleet.schedules.add(name, "nope", every="1h", locations="s1")
    with pytest.raises(NoHostError):
        fleet.schedules.add(name, "echo", every="1h", target=["role=nope"])
    # a call the action cannot take is refused at add, as start refuses it (it was stored,
    # and every firing was a Failed run)
    with pytest.raises(ArgumentError, match=r"^sleep: SECONDS must be a float, got 'abc'$"):
        fleet.schedules.add(name, "sleep", "abc", every="1h", locations="s1")
    with pytest.raises(ArgumentError, match="missing a required argument: 'seconds'"):
        fleet.schedules.add(name, "sleep", every="1h", locations="s1")
    # values of the wrong kind: one line naming them, not a TypeError or AttributeError
    for options, error, message in (
        ({"cron": 5}, BadTriggerError, "cron must be str, got 5"),
        ({"at": 5}, BadTriggerError, "at must be str or a datetime, got 5"),
        ({"every": "1h", "timezone": 5}, BadTriggerError, "timezone must be str"),
        ({"every": float("nan")}, BadTriggerError, "not a finite number of seconds"),
        ({"every": "1h", "max_results": 2.5}, ArgumentError, "max results must be a whole"),
        ({"every": "1h", "kwargs": 5}, ArgumentError, "kwargs must be a dict"),
        ({"every": "1h", "start_timeout": float("nan")}, ArgumentError, "start timeout must"),
    ):
        with pytest.raises(error, match=message):
            fleet.schedules.add(name, "echo", locations="s1", **options)  # type: ignore[arg-type]
    for verb in (fleet.schedules.show, fleet.schedules.remove, fleet.schedules.run):
        with pytest.raises(ArgumentError, match="a schedule is named by text, got None"):
            verb(None)  # type: ignore[arg-type]
    assert name not in [s.name for s in fleet.schedules.list()]
    # an interval may be a timedelta
    fleet.schedules.add(name, "echo", every=timedelta(hours=1), locations="s1")
    assert fleet.schedules.show(name).trigger.text == "every 1h"
    fleet.schedules.remove(name)
    # and a name is not taken twice
    fleet.schedules.add(name, "echo", every="1h", locations="s1")
    again = cli("schedule", "add", name, "--every", "1h", "-l", "s1", "echo")
    assert again.returncode == 2 and "exists" in again.stderr
    fleet.schedules.remove(name)


def test_a_firing_whose_target_matches_nothing_is_a_failed_run(
    sfleet: tuple[Config, Fleet], beat: Beat, logs: Path
) -> None:
    # given a schedule on the hosts tmp*, added while one was online
    cfg, fleet = sfleet
    name = uniq("gone")
    with LocalWorkers(cfg, [["tmp1"]], concurrency=1, log_dir=logs):
        eventually(lambda: any(h.location == "tmp1" and h.online for h in fleet.hosts()), 30)
        fleet.schedules.add(
            name, "echo", "x", every=1, locations="tmp*", max_results=3, overlap="parallel"
        )
    # when it fires after that host has gone
    eventually(lambda: not any(h.location == "tmp1" and h.online for h in fleet.hosts()), 30)
    failed = eventually(lambda: fleet.get(name=name, state="Failed"), timeout=30)
    # then the firing is a Failed run with the reason, that get lists
    job = failed[-1]  # type: ignore[index]
    assert job.reason == "location 'tmp*' matched no online host"
    assert fleet.job(job.id).state is JobState.FAILED
    assert fleet.schedules.show(name).last_run is not None
    # and a run fired by hand that fails so says why, and exits 1
    fired = make_cli(cfg)("schedule", "run", name)
    assert fired.returncode == 1, fired.stderr
    assert "Failed: location 'tmp*' matched no online host" in fired.stderr
    fleet.schedules.remove(name)
    fleet.remove(fleet.get(name=name), force=True)


def test_schedule_list_shows_the_columns_and_fleets_do_not_share_schedules(
    sfleet: tuple[Config, Fleet],
) -> None:
    cfg, fleet = sfleet
    name = uniq("listed")
    fleet.schedules.add(name, "echo", every="10m", target=["role=web"], timezone="Europe/Berlin")
    table = make_cli(cfg)("schedule", "list")
    assert table.returncode == 0, table.stderr
    head, _, *rows = table.stdout.splitlines()
    assert head.split() == ["Name", "Trigger", "Target", "Enabled", "Last", "run", "Next", "run"]
    row = next(r for r in rows if r.startswith(name))
    assert "every 10m" in row and "role=web" in row and "True" in row
    # its next run names the zone it is shown in (the console's: the trigger's may differ)
    zone = time.strftime("%Z")
    assert row.rstrip().endswith(f" {zone}"), (row, zone)
    # disabled from the command line, it says so
    cli = make_cli(cfg)
    assert cli("schedule", "disable", name).returncode == 0
    row = next(r for r in cli("schedule", "list").stdout.splitlines() if r.startswith(name))
    assert "False" in row and "(disabled)" in row
    shown = json.loads(cli("schedule", "enable", name, "--json").stdout)
    assert shown["enabled"] is True and shown["next_run"] is not None
    assert set(shown) >= {"name", "trigger", "command", "enabled", "last_run", "next_run"}
    assert shown["trigger"]["timezone"] == "Europe/Berlin"
    missing = cli("schedule", "disable", uniq("nope"))
    assert missing.returncode == 1 and "no schedule named" in missing.stderr
    # another fleet in the same Redis (its own prefix) sees none of them
    other_cfg = cfg.with_(prefix=f"{uniq('other')}:")
    with Fleet(config=other_cfg) as other:
        assert other.schedules.list() == []
    assert json.loads(make_cli(other_cfg)("schedule", "list", "--json").stdout) == []
    fleet.schedules.remove(name)


def test_a_one_shot_fires_once_and_a_cron_reads_its_time_zone(
    sfleet: tuple[Config, Fleet], beat: Beat
) -> None:
    _, fleet = sfleet
    # a one-shot two seconds from now fires once, then has no next run
    name = uniq("once")
    at = datetime.now(UTC) + timedelta(seconds=2)
    fleet.schedules.add(name, "echo", "once", at=at.isoformat(), locations="s1")
    eventually(lambda: run_ids(fleet, name), timeout=30)
    time.sleep(2.5)
    assert len(run_ids(fleet, name)) == 1
    assert fleet.schedules.show(name).next_run is None
    fleet.schedules.remove(name)
    # a cron's next run is its time in its own zone
    name = uniq("berlin")
    info = fleet.schedules.add(
        name, "echo", cron="30 3 * * *", timezone="Europe/Berlin", locations="s1"
    )
    assert info.next_run is not None
    local = datetime.fromtimestamp(info.next_run, ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (3, 30)
    assert 0 < info.next_run - time.time() <= 24 * 3600
    fleet.schedules.remove(name)
    # a day of week is read as crontab(5) reads it: 7 is Sunday, as 0 is
    name = uniq("sunday")
    info = fleet.schedules.add(name, "echo", cron="0 3 * * 7", locations="s1")
    assert info.trigger.text == "cron 0 3 * * 7 (UTC)"
    assert info.next_run is not None
    when = datetime.fromtimestamp(info.next_run, UTC)
    assert (when.weekday(), when.hour, when.minute) == (6, 3, 0)  # Sunday 03:00
    fleet.schedules.remove(name)
    name = uniq("weekend")
    info = fleet.schedules.add(name, "echo", cron="0 3 * * 6-7", locations="s1")
    assert info.next_run is not None
    assert datetime.fromtimestamp(info.next_run, UTC).weekday() in (5, 6)
    fleet.schedules.remove(name)


def _midnights(start: datetime, days: int) -> list[datetime]:
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    return [first + timedelta(days=n) for n in range(days + 1)]


def test_a_cron_with_a_day_of_month_and_a_day_of_week_fires_on_either_as_crontab5(
    sfleet: tuple[Config, Fleet],
) -> None:
    # "the 1st, the 15th and every Monday" (crontab(5): both fields restricted, either
    # matches); Celery's crontab asks both, and fired it only on a Monday the 1st or 15th
    from fleetjobs.triggers import cron_schedule

    start = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)  # a Tuesday
    sched = cron_schedule("0 0 1,15 * 1", "UTC")
    fired, t = [], start
    while t < datetime(2027, 1, 6, tzinfo=UTC):
        sched.nowfun = lambda t=t: t
        t = t + sched.remaining_estimate(t)
        fired.append(t.date().isoformat())
        t += timedelta(minutes=1)
    assert fired[:7] == [
        "2026-12-07", "2026-12-14", "2026-12-15", "2026-12-21", "2026-12-28", "2027-01-01",
        "2027-01-04",
    ]  # fmt: skip
    # one restricted field alone is that field: day of month only, day of week only
    for expr, first in (("0 0 15 * *", "2026-12-15"), ("0 0 * * 5", "2026-12-04")):
        one = cron_schedule(expr, "UTC")
        one.nowfun = lambda: start
        assert (start + one.remaining_estimate(start)).date().isoformat() == first, expr
    # and the next run a schedule shows is the first day that matches either
    _, fleet = sfleet
    name = uniq("either")
    info = fleet.schedules.add(name, "echo", cron="0 0 13 * 5", locations="s1")
    expected = next(
        d for d in _midnights(datetime.now(UTC), 8) if d > datetime.now(UTC)
        and (d.day == 13 or d.weekday() == 4)
    )  # fmt: skip
    assert info.next_run == expected.timestamp(), (info.next_run, expected)
    fleet.schedules.remove(name)


def test_two_beats_never_fire_a_schedule_twice(redis_url: str, logs: Path) -> None:
    # given a fleet of its own, a schedule every second, and two beats at once
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('two')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(cfg, [["b1"]], concurrency=4, log_dir=logs),
        Fleet(config=cfg) as fleet,
    ):
        eventually(lambda: any(h.online for h in fleet.hosts()), timeout=30)
        name = uniq("once")
        fleet.schedules.add(name, "echo", 1, every=1, locations="b1", max_results=100)
        first = Beat(cfg, logs / f"{uniq('beat-a')}.log")
        second = Beat(cfg, logs / f"{uniq('beat-b')}.log")
        try:
            eventually(lambda: first.holds_lock() or second.holds_lock(), timeout=30)
            # when they run side by side for a while
            eventually(lambda: len(run_ids(fleet, name)) >= 6, timeout=40)
            # then only one holds RedBeat's lock, and each firing happened once
            assert first.holds_lock() != second.holds_lock()
            active, standby = (first, second) if first.holds_lock() else (second, first)
            assert_fired_once(fleet, name)
            # when the active one is stopped (Ctrl-C), the standby takes over, still once
            assert active.stop(signal.SIGINT) == 0
            assert "Releasing lock" in active.text()
            eventually(standby.holds_lock, timeout=30)
            count = len(run_ids(fleet, name))
            eventually(lambda: len(run_ids(fleet, name)) >= count + 3, timeout=30)
            assert_fired_once(fleet, name)
            assert standby.stop(signal.SIGTERM) == 0
        finally:
            for b in (first, second):
                b.stop()
        fleet.schedules.remove(name)


def assert_fired_once(fleet: Fleet, name: str) -> None:
    """Each firing is one run: no two runs of an every-1-s schedule less than 0.5 s apart,
    and no more runs than seconds since the first."""
    times = [
        t
        for _, t in fleet.registry.r.zrange(
            f"{fleet.config.prefix}sched:{name}:runs", 0, -1, withscores=True
        )
    ]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) > 0.5, gaps
    assert len(times) <= (times[-1] - times[0]) + 2, times


def test_a_schedules_arguments_are_bound_to_the_actions_parameters(
    sfleet: tuple[Config, Fleet],
) -> None:
    # given fail_on's LOCATION parameter, a str
    cfg, fleet = sfleet
    name = uniq("bound")
    # when a schedule is added with a location that would parse as JSON
    done = make_cli(cfg)("schedule", "add", name, "--every", "10m", "-l", "s1", "fail_on", "123")
    assert done.returncode == 0, done.stderr
    # then it is kept as start would keep it: text, not the number 123
    assert fleet.schedules.show(name).args == ("123",)
    fleet.schedules.remove(name)
