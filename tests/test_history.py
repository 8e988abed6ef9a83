"""Finding past jobs: get --action/--location/--since/--until/--failed, served from indexes
that start, settle and remove keep."""

from __future__ import annotations

import json
import time

import pytest

from fleetjobs import ArgumentError, Fleet, JobState
from fleetjobs.history import History, parse_time
from fleetjobs.lifecycle import JobSpec

from .conftest import Layers, make_cli

S = JobState


def _job(w: Layers, action: str, locs: list[str], fail_on: str | None = None) -> int:
    pid, _, children = w.lifecycle.create(JobSpec(action, [], {}, action, locs))
    for c in children:
        w.lifecycle.claim(c.id, "w")
        state = S.FAILED if c.location == fail_on else S.COMPLETED
        w.lifecycle.finish(c.id, state, "broke" if state is S.FAILED else "")
    return pid


def test_the_indexes_answer_each_filter_and_their_combinations(layers: Layers) -> None:
    w = layers
    h = History(w.store)
    old = _job(w, "archive_logs", ["web01", "web02"], fail_on="web02")
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    ping = _job(w, "ping", ["web01", "db01"])
    archive = _job(w, "archive_logs", ["db01"])
    assert h.find(action="archive_logs") == [old, archive]
    assert h.find(action="arch*") == [old, archive]
    assert h.find(location="web01") == [old, ping]
    assert h.find(location="db*") == [ping, archive]
    assert h.find(failed=True) == [old]
    assert h.find(since=middle) == [ping, archive]
    assert h.find(until=middle) == [old]
    assert h.find(action="archive_logs", location="db01", since=middle) == [archive]
    assert h.find(action="archive_logs", failed=True, since=middle) == []
    assert h.find(action="nothing") == [] and h.find(location="nohost*") == []
    assert h.find() == [old, ping, archive]
    # removal takes a job out of every index
    w.lifecycle.remove(w.registry.load([old]))
    assert h.find(failed=True) == [] and h.find(location="web02") == []
    # and a bucket it leaves empty is gone, and out of its family's list
    assert w.store.r.exists(w.keys.ixdir("loc:web02"), w.keys.ix(0, "loc:web02")) == 0
    assert w.store.r.zrange(w.keys.ixdir("loc:web01"), 0, -1) == ["0"]  # ping is left there


def test_times_are_ages_or_iso_dates() -> None:
    now = 1_800_000_000.0
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1d", now) == now - 86400 and parse_time("30m", now) == now - 1800
    assert parse_time("2026-11-28T22:00+00:00") == 1795903200.0
    with pytest.raises(ArgumentError, match="neither an age"):
        parse_time("yesterday")


def test_get_filters_on_the_command_line(layers: Layers) -> None:
    w = layers
    ids = [
        _job(w, "archive_logs", ["web01", "web02"], fail_on="web02"),
        _job(w, "archive_logs", ["web01"]),
        _job(w, "ping", ["web02"]),
    ]
    cli = make_cli(w.store.config)
    got = cli("get", "--action", "archive_logs", "--location", "web02", "--failed", "--json")
    assert got.returncode == 0, got.stderr
    [doc] = json.loads(got.stdout)
    assert doc["id"] == ids[0] and doc["state"] == "Failed"
    # each child's location, state, times and Reason: which hosts failed, in one call
    kids = {c["location"]: c for c in doc["children"]}
    assert kids["web02"]["state"] == "Failed" and kids["web02"]["reason"] == "broke"
    assert kids["web01"]["state"] == "Completed" and kids["web01"]["end_time"]
    assert kids["web01"]["begin_time"] <= kids["web01"]["end_time"]
    got = cli("get", "--location", "web02", "--since", "1h", "--json")
    assert [d["id"] for d in json.loads(got.stdout)] == [ids[0], ids[2]]
    got = cli("get", "--action", "ping", "--until", "1h")
    assert got.returncode == 0 and got.stdout == ""
    got = cli("get", "--since", "last tuesday")
    assert got.returncode == 2 and "neither an age" in got.stderr
    with Fleet(config=w.store.config) as fleet:
        assert [j.id for j in fleet.get(state="Failed")] == [ids[0]]
        assert [j.id for j in fleet.get(action="archive_logs", name="nope")] == []
