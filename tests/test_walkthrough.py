"""The commands deploy/README.md shows to prove a fleet works, run on a fleet of one's own."""

from __future__ import annotations

from fleetjobs import Config, Fleet

from .conftest import make_cli


def test_hosts_and_ping_all_show_the_fleet(private: tuple[Config, Fleet]) -> None:
    cfg, _ = private
    run = make_cli(cfg)
    # given a fleet whose one host, solo, has a worker
    hosts = run("hosts")
    assert hosts.returncode == 0 and "solo" in hosts.stdout and "True" in hosts.stdout
    # when every host is pinged through its own worker
    pinged = run("ping", "--worker", "--all")
    # then each answers Online
    assert pinged.returncode == 0, pinged.stderr
    assert pinged.stdout.splitlines()[2].split() == ["solo", "True"]
    # and ping with neither servers nor --all is a usage error
    bad = run("ping")
    assert bad.returncode == 2 and "--all" in bad.stderr
