"""Schedules under faults: a damaged definition, consoles racing on one schedule, a beat
meeting a schedule a console is firing, a schedule that names no host. Real beat and workers
(tests/schedule_support.py), as in test_schedules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetjobs import Config, Fleet
from fleetjobs.config import default_location
from fleetjobs.embedded import LocalWorkers
from fleetjobs.errors import ScheduleExistsError
from fleetjobs.triggers import FleetEntry

from .conftest import FAST, INCLUDE, ROOT, eventually, make_cli, uniq
from .schedule_support import BEAT_ENV, Beat, beat, run_ids, sfleet

__all__ = ["beat", "sfleet"]  # the module-scoped fixtures this module's tests take


def test_a_damaged_schedule_stops_no_other_and_remove_deletes_it(
    sfleet: tuple[Config, Fleet], beat: Beat
) -> None:
    cfg, fleet = sfleet
    cli = make_cli(cfg)
    good, bad, half = uniq("good"), uniq("damaged"), uniq("half")
    # given schedules whose stored definitions were damaged (by hand, or a bad restore): one
    # not JSON, one whose interval lost its length (RedBeat's decoding raises KeyError, on
    # which RedBeat would drop it from its index, unseen)
    fleet.schedules.add(bad, "echo", 1, every=1, locations="s1")
    key = fleet.schedules._entry_key(bad)
    fleet.registry.r.hset(key, "definition", "not json")
    fleet.schedules.add(half, "echo", 1, every=1, locations="s1")
    half_key = fleet.schedules._entry_key(half)
    doc = json.loads(fleet.registry.r.hget(half_key, "definition"))
    doc["schedule"] = {"__type__": "interval"}
    fleet.registry.r.hset(half_key, "definition", json.dumps(doc))
    # and two whose definition reads but holds what a firing cannot use: a max_results of
    # "abc", locations that are a number (each fired, then failed at every tick)
    odd = {uniq("odd"): ("max_results", "abc"), uniq("odd"): ("locations", 5)}
    for name, (field, value) in odd.items():
        fleet.schedules.add(name, "echo", 1, every=1, locations="s1")
        odd_key = fleet.schedules._entry_key(name)
        doc = json.loads(fleet.registry.r.hget(odd_key, "definition"))
        doc["kwargs"][field] = value
        fleet.registry.r.hset(odd_key, "definition", json.dumps(doc))
    # when another schedule is due beside it
    fleet.schedules.add(good, "echo", 2, every=1, locations="s2")
    # then the other fires, and the beat says once which one cannot be read
    eventually(lambda: len(run_ids(fleet, good)) >= 2, timeout=30)
    eventually(lambda: f"schedule {bad!r} cannot be read" in beat.text(), timeout=10)
    assert beat.text().count(f"schedule {bad!r} cannot be read") == 1
    eventually(lambda: f"schedule {half!r} cannot be read (KeyError" in beat.text(), timeout=10)
    assert run_ids(fleet, bad) == [] and run_ids(fleet, half) == []
    for name, (field, _) in odd.items():  # none fires; each is said once, with its field
        eventually(lambda n=name: f"schedule {n!r} cannot be read" in beat.text(), timeout=10)
        assert beat.text().count(f"schedule {name!r} cannot be read") == 1
        assert f"its {field} must be" in beat.text()
        assert run_ids(fleet, name) == [] and fleet.get(name=name) == []
        ran = cli("schedule", "run", name)  # refused in one line, nothing started
        assert ran.returncode == 1 and ran.stderr.count("\n") == 1, ran.stderr
        assert f"schedule {name!r} cannot be read" in ran.stderr
        assert fleet.get(name=name) == []
        assert cli("schedule", "remove", name).returncode == 0
    listed = cli("schedule", "list")
    assert f"schedule {half!r} cannot be read" in listed.stderr, listed.stderr
    assert cli("schedule", "remove", half).returncode == 0
    # and the CLI lists the rest, names the damaged one, and refuses it in one line
    listed = cli("schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert good in {s["name"] for s in json.loads(listed.stdout)}
    assert f"schedule {bad!r} cannot be read" in listed.stderr
    shown = cli("schedule", "show", bad)
    assert shown.returncode == 1 and shown.stderr.count("\n") == 1
    assert f"'fleetjobs schedule remove {bad}' deletes it" in shown.stderr
    # and remove deletes it
    removed = cli("schedule", "remove", bad)
    assert removed.returncode == 0, removed.stderr
    assert not fleet.registry.r.exists(key)
    assert cli("schedule", "show", bad).returncode == 1
    assert "cannot be read" not in cli("schedule", "list").stderr
    fleet.schedules.remove(good)


def test_a_schedule_with_no_host_named_runs_on_the_machine_that_added_it(
    sfleet: tuple[Config, Fleet],
) -> None:
    _, fleet = sfleet
    name = uniq("here")
    # when a schedule names no host
    info = fleet.schedules.add(name, "echo", 1, cron="0 0 1 1 *")
    # then it keeps this machine's name, so a beat on another machine fires it here
    assert info.locations == (default_location(),)
    assert fleet.schedules.show(name).target_text == default_location()
    fleet.schedules.remove(name)


def test_consoles_racing_on_one_schedule_add_it_once_and_skip_fires_once(
    sfleet: tuple[Config, Fleet],
) -> None:
    cfg, fleet = sfleet
    name = uniq("race")
    consoles = [Fleet(config=cfg) for _ in range(6)]
    try:

        def together(call: Any) -> list[Any]:
            gate = threading.Barrier(len(consoles))

            def one(console: Fleet) -> Any:
                gate.wait()
                try:
                    return call(console)
                except Exception as exc:  # what each console was told
                    return exc

            with ThreadPoolExecutor(len(consoles)) as pool:
                return list(pool.map(one, consoles))

        # when six consoles add the same name at once
        added = together(
            lambda c: c.schedules.add(name, "sleep", 20, cron="0 0 1 1 *", locations="s1")
        )
        # then one is told it was added and five that it exists
        assert sum(not isinstance(a, Exception) for a in added) == 1, added
        assert all(isinstance(a, ScheduleExistsError) for a in added if isinstance(a, Exception))
        # and when six consoles run it at once (overlap skip), one run starts, five skip
        runs = together(lambda c: c.schedules.run(name))
        assert len([r for r in runs if r is not None]) == 1, runs
        assert fleet.schedules.show(name).skipped == 5
        assert len(run_ids(fleet, name)) == 1
    finally:
        for console in consoles:
            console.close()
        fleet.stop(run_ids(fleet, name), timeout=10)
        fleet.schedules.remove(name)


def test_a_beat_does_not_wait_long_on_a_schedule_a_console_is_firing(
    sfleet: tuple[Config, Fleet],
) -> None:
    _, fleet = sfleet
    name = uniq("held")
    fleet.schedules.add(name, "echo", 1, cron="0 0 1 1 *", locations="s1")
    spec = fleet.schedules._entry(name).kwargs  # type: ignore[union-attr]
    # given a console in the middle of firing it (its lock held)
    lock = fleet.registry.r.lock(f"{fleet.config.prefix}sched:{name}:lock", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        # when the beat's firing comes (it waits a moment, not the whole lock's life)
        assert fleet.schedules.fire(name, dict(spec), wait=0.3) is None
        # then it is a skip that says why, and no run
        shown = fleet.schedules.show(name)
        assert shown.skipped == 1 and run_ids(fleet, name) == []
        assert shown.skips[0]["reason"] == "another firing of it was under way"
    finally:
        lock.release()
    fleet.schedules.remove(name)


@pytest.mark.parametrize("verb", ["enable", "disable"])
def test_an_enable_or_disable_racing_a_remove_leaves_nothing_behind(
    sfleet: tuple[Config, Fleet], monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    cfg, fleet = sfleet
    name = uniq(verb)
    fleet.schedules.add(name, "echo", "x", every=3600, locations="s1")
    if verb == "enable":
        fleet.schedules.disable(name)
    # given a console slow to write the schedule back (its save takes a moment)
    save = FleetEntry.save

    def slow_save(entry: FleetEntry) -> None:
        time.sleep(0.3)
        save(entry)

    monkeypatch.setattr(FleetEntry, "save", slow_save)
    other = Fleet(config=cfg)
    try:
        # when it enables (or disables) the schedule while another console removes it
        toggling = threading.Thread(target=getattr(other.schedules, verb), args=(name,))
        toggling.start()
        time.sleep(0.1)
        fleet.schedules.remove(name)
        toggling.join()
    finally:
        other.close()
    # then it is gone whole: not listed again, no key left (its meta alone), no time left in
    # the schedules' sorted set
    key, conf = fleet.schedules._entry_key(name), fleet.schedules.app.redbeat_conf
    assert all(s.name != name for s in fleet.schedules.list())
    assert not fleet.registry.r.exists(key)
    assert fleet.registry.r.zscore(conf.schedule_key, key) is None


STALLING_BEAT = """
import time
from fleetjobs import beat
from fleetjobs.config import Config
check = beat.FleetScheduler._still_mine
stalled = []

def still_mine(self):
    ok = check(self)
    if ok and not stalled:  # paused right after its lock check (SIGSTOP, a VM pause)
        stalled.append(1)
        time.sleep(9)
    return ok

beat.FleetScheduler._still_mine = still_mine
beat.setup_logging("INFO")
raise SystemExit(beat.run_beat(Config.from_env()))
"""


BACK = ("not fired", "started run")


def test_a_beat_that_stalls_after_its_lock_check_does_not_fire_what_the_standby_fired(
    redis_url: str, logs: Path
) -> None:
    # given a fleet of its own with a schedule that fires once, a few seconds from now
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('stall')}:", **FAST)  # type: ignore[arg-type]
    env = {
        **os.environ,
        **BEAT_ENV,
        "FLEETJOBS_REDIS_URL": cfg.redis_url,
        "FLEETJOBS_PREFIX": cfg.prefix,
    }
    name = uniq("once")
    with (
        LocalWorkers(cfg, [["t1"]], extra_args=INCLUDE, log_dir=logs),
        Fleet(config=cfg) as fleet,
    ):
        at = datetime.now(UTC) + timedelta(seconds=6)
        fleet.schedules.add(name, "echo", "x", at=at.isoformat(), locations="t1")
        # a beat that will stall right after its lock check, and a standby beat
        procs: list[subprocess.Popen[bytes]] = []
        logs_ = [logs / f"{name}-a.log", logs / f"{name}-b.log"]
        try:
            with logs_[0].open("wb") as out:
                procs.append(_popen([sys.executable, "-c", STALLING_BEAT], out, env))
            eventually(lambda: "Acquired lock" in logs_[0].read_text(), timeout=30)
            with logs_[1].open("wb") as out:
                procs.append(_popen([sys.executable, "-m", "fleetjobs", "beat"], out, env))
            # when the first stalls at the firing, the standby takes over and fires it
            # and the first, back, either fires it or finds it fired
            eventually(lambda: any(w in logs_[0].read_text() for w in BACK), timeout=40)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(15)
        # then it ran once: the stalled beat, back, found it fired already
        texts = [log.read_text() for log in logs_]
        assert len(run_ids(fleet, name)) == 1, texts
        assert "another beat fired this time already" in texts[0], texts[0][-2000:]


def _popen(argv: list[str], out: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
