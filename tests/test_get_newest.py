"""get lists the newest N jobs (Get-Job -Newest), says so when older ones exist, --all all."""

from __future__ import annotations

import json

from fleetjobs import Config, Fleet

from .conftest import make_cli


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
