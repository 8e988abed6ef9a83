"""get lists the newest N jobs (Get-Job -Newest), says so when older ones exist, --all all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fleetjobs import Config, Fleet

from .conftest import ROOT, make_cli


def test_get_lists_the_newest_jobs_and_says_when_older_ones_exist(
    private: tuple[Config, Fleet],
) -> None:
    cfg, fleet = private
    ids = [fleet.start("echo", i, locations="solo", name=f"N{i}").id for i in range(5)]
    cli = make_cli(cfg)
    # the newest 2, oldest first, and a note on stderr that older ones exist
    res = cli("get", "--json", "--newest", "2")
    assert res.returncode == 0, res.stderr
    assert [j["id"] for j in json.loads(res.stdout)] == ids[-2:]
    assert "older ones exist" in res.stderr
    # as many as there are: every one, no note
    res = cli("get", "--json", "--newest", "5")
    assert [j["id"] for j in json.loads(res.stdout)] == ids and res.stderr == ""
    # --all, and JOBs named, list every job asked for
    assert [j["id"] for j in json.loads(cli("get", "--json", "--all", "-N", "1").stdout)] == ids
    named = cli("get", "--json", "-N", "1", *map(str, ids)).stdout
    assert [j["id"] for j in json.loads(named)] == ids
    # a filter first, then the newest of what it selects
    res = cli("get", "--json", "--name", "N*", "--newest", "3")
    assert [j["id"] for j in json.loads(res.stdout)] == ids[-3:]
    table = cli("get", "--newest", "1")
    assert table.stdout.splitlines()[2].split()[:2] == [str(ids[-1]), "N4"]
    # the API: newest=N, oldest first
    assert [j.id for j in fleet.get(newest=3)] == ids[-3:]
    assert [j.id for j in fleet.get(action="echo", newest=2)] == ids[-2:]
    fleet.wait(ids, timeout=30)


def test_get_all_as_json_prints_every_job_read_a_batch_at_a_time(
    private: tuple[Config, Fleet],
) -> None:
    cfg, fleet = private
    # given more jobs than one read takes (500)
    ids = [fleet.start("echo", i, locations="solo", name=f"B{i % 2}").id for i in range(1100)]
    assert fleet.wait(ids, timeout=120)
    cli = make_cli(cfg)
    # then --all --json prints them all, oldest first, as get's snapshots say
    res = cli("get", "--json", "--all")
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert [j["id"] for j in printed] == ids
    assert printed == [j.info.to_dict() for j in fleet.get()]
    # with a filter, only what it selects; nothing selected is an empty array
    res = cli("get", "--json", "--all", "--name", "B1")
    assert [j["id"] for j in json.loads(res.stdout)] == ids[1::2]
    assert cli("get", "--json", "--all", "--name", "nothing*").stdout == "[]\n"
    # an unknown job is a one-line error before anything is printed
    res = cli("get", "--json", str(ids[-1] + 1000))
    assert res.returncode != 0 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # a reader that goes away (`| head -3`) ends it quietly (click's EPIPE handling)
    env = {**os.environ, "FLEETJOBS_REDIS_URL": cfg.redis_url, "FLEETJOBS_PREFIX": cfg.prefix}
    piped = subprocess.run(
        f"{sys.executable} -m fleetjobs get --json --all | head -3",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        executable="/bin/bash",
    )
    assert piped.stdout.splitlines()[:2] == ["[", "  {"] and piped.stderr == ""
    # the API gives the same one at a time
    assert [j.id for j in fleet.each(action="echo")] == ids
    # and jobs removed while a listing is under way (a purge, another console) shift none of
    # the later ones out of it
    listing = fleet.each()
    head = [next(listing).id for _ in range(500)]
    fleet.remove(ids[:100])
    assert head + [j.id for j in listing] == ids
