"""Facts: each worker reports what its host is, and a start selects hosts by them (--where)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator

import pytest

from fleetjobs import ArgumentError, Config, Fleet, NoHostError
from fleetjobs.embedded import LocalWorkers
from fleetjobs.facts import Where

from .conftest import FAST, INCLUDE, CliRunner, eventually, make_cli, uniq


@pytest.fixture(scope="module")
def fleet_of_two(redis_url: str) -> Iterator[tuple[Config, Fleet]]:
    """Two hosts, fa1 (role=web) and fa2 (role=db), with the test module's custom facts."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fa')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(cfg, [["fa1"]], concurrency=1, extra_args=[*INCLUDE, "--tag", "role=web"]),
        LocalWorkers(cfg, [["fa2"]], concurrency=1, extra_args=[*INCLUDE, "--tag", "role=db"]),
        Fleet(config=cfg) as fleet,
    ):
        eventually(lambda: all(h.facts for h in fleet.hosts()) and len(fleet.hosts()) == 2)
        yield cfg, fleet


def test_each_worker_reports_its_hosts_facts(fleet_of_two: tuple[Config, Fleet]) -> None:
    cfg, _ = fleet_of_two
    cli: CliRunner = make_cli(cfg)
    got = cli("hosts", "fa1", "--json")
    assert got.returncode == 0, got.stderr
    [host] = json.loads(got.stdout)
    facts = host["facts"]
    assert facts["kernel"] == platform.release() and facts["arch"] == platform.machine()
    assert facts["cpu_count"] == os.cpu_count() and facts["memory_gb"] > 0
    assert facts["python"] == platform.python_version() and facts["fleetjobs"]
    assert facts["hostname"] and facts["fqdn"] and facts["os"] and facts["boot_time"]
    assert isinstance(facts["addresses"], list)
    assert facts["tags"] == {"role": "web"}
    # the operator's own @fact functions (a value, and a dict of several)
    assert (facts["rack"], facts["disk_count"], facts["disk_kind"]) == ("r12", 2, "nvme")
    table = cli("hosts", "--facts")
    assert "Kernel" in table.stdout and platform.release() in table.stdout
    assert "role=db" in table.stdout
    assert cli("hosts", "nohost*").returncode == 1


def test_a_custom_fact_that_is_not_json_is_left_out_and_the_others_stay(redis_url: str) -> None:
    # given a worker whose operator's facts include a set and a NaN
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fb')}:", **FAST)  # type: ignore[arg-type]
    bad = ["--include", "tests.support_bad_facts"]
    with (
        LocalWorkers(cfg, [["fb1"]], concurrency=1, extra_args=[*INCLUDE, *bad]),
        Fleet(config=cfg) as fleet,
    ):
        eventually(lambda: fleet.hosts() and fleet.hosts()[0].facts)
        # then its host's facts are there, its good custom ones too, and only those left out
        facts = fleet.hosts()[0].facts
        assert facts["os"] and facts["kernel"] and facts["rack"] == "r12"
        assert facts["ratio_ok"] == 0.5
        assert "seen_on" not in facts and "ratio_bad" not in facts and "disks" not in facts
        # and --json prints JSON a strict reader takes
        got = make_cli(cfg)("hosts", "--json")
        assert got.returncode == 0, got.stderr
        json.loads(got.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


def test_facts_are_written_only_when_they_change(fleet_of_two: tuple[Config, Fleet]) -> None:
    from fleetjobs.workers.facts import FactsReporter

    _, fleet = fleet_of_two
    r, keys = fleet.store.r, fleet.store.keys
    reporter = FactsReporter(fleet.store, ["fa-probe"], {"role": "probe"})
    # the first report writes; the next ones, with nothing changed, only read
    assert reporter.report() is True
    written = r.hget(keys.facts, "fa-probe")
    assert reporter.report() is False and reporter.report() is False
    # a change (here: what Redis holds, changed by hand) is written at the next report
    r.hset(keys.facts, "fa-probe", "{}")
    assert reporter.report() is True and r.hget(keys.facts, "fa-probe") == written
    r.hdel(keys.facts, "fa-probe")


def test_where_selects_hosts_by_facts_and_tags(fleet_of_two: tuple[Config, Fleet]) -> None:
    _, fleet = fleet_of_two
    facts = fleet.hosts()[0].facts
    major = platform.release().split(".")[0]

    def chosen(**kw: object) -> list[str]:
        job = fleet.start("echo", 1, **kw)  # type: ignore[arg-type]
        fleet.wait(job, timeout=20)
        fleet.remove(job)
        return sorted(c.location for c in job.info.children)

    both = ["fa1", "fa2"]
    assert chosen(where=[f"os={facts['os']}", "memory_gb>=0.1", f"kernel={major}.*"]) == both
    assert chosen(where=[f"kernel>={major}", "rack=R1*"]) == both  # versions; globs ignore case
    assert chosen(where=["role=db"]) == ["fa2"]  # a tag, by name
    assert chosen(where=["rack=r12"], target=["role=web"]) == ["fa1"]
    assert chosen(where=["disk_count>1"], locations="fa*") == both
    with pytest.raises(NoHostError, match="'cpu_count>=100000' matched none of the 2 hosts"):
        fleet.start("echo", 1, where=["os=*", "cpu_count>=100000"])
    with pytest.raises(ArgumentError, match="NAME OP VALUE"):
        fleet.start("echo", 1, where=["memory"])


def test_where_on_the_command_line_names_the_filter_that_matched_nothing(
    fleet_of_two: tuple[Config, Fleet],
) -> None:
    cfg, _ = fleet_of_two
    got = make_cli(cfg)("start", "--where", "os=plan9", "echo", "x")
    assert got.returncode == 2
    assert "--where 'os=plan9' matched none" in got.stderr


def test_filters_compare_numbers_versions_globs_and_lists() -> None:
    f = {"kernel": "6.1.0-18-amd64", "memory_gb": 15.6, "addresses": ["10.0.0.7", "fe80::1"]}
    assert Where.parse("kernel>=6.1").matches(f) and not Where.parse("kernel>6.1").matches(f)
    assert Where.parse("kernel<6.10").matches(f)  # versions, not decimals
    assert Where.parse("memory_gb>=8").matches(f) and not Where.parse("memory_gb<8").matches(f)
    assert Where.parse("addresses=10.0.*").matches(f)
    assert not Where.parse("addresses!=10.0.*").matches(f)
    assert not Where.parse("missing=*").matches(f)
    with pytest.raises(ArgumentError, match="needs a number"):
        Where.parse("os>=debian")
