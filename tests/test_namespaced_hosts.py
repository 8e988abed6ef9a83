"""Stories on real hosts: workers in network namespaces with their own hostname and address.

One fleet for the module (see :mod:`tests.netns`): a bridge and a redis-server in the root
namespace, and three servers, web01, web02 and db01, each a network namespace whose worker
knows only its hostname (no ``--location``). The console here is in the root namespace, as an
operator's machine is. Every server sees its own folder at one shared path, ``<tmp>/srv``, as
each real server has its own ``/var/log``: the worker runs in a mount namespace of its own where
``<tmp>/<host>/srv`` is mounted over ``<tmp>/srv``. It holds ``logs`` and ``archive`` folders;
db01's archive is another file system (a tmpfs), so its logs are copied across.
"""

from __future__ import annotations

import itertools
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetjobs import Fleet, JobState
from fleetjobs.model import JobInfo

from .conftest import INCLUDE, eventually
from .netns import Fleetnet, can_make_hosts

CAN, WHY = can_make_hosts()
pytestmark = pytest.mark.skipif(
    not CAN, reason=f"needs root and network namespaces (ip netns, unshare); CI runs as root: {WHY}"
)

HOSTS = ("web01", "web02", "db01")
# a host is offline TTL s after its last heartbeat; a job running there fails GRACE s after that
TTL, GRACE = 3.0, 4.0
DAY = 86_400.0


@dataclass
class Servers:
    net: Fleetnet
    root: Path  # root/<host>/srv is what <host> sees at root/srv

    @property
    def srv(self) -> Path:
        """The path every server has, each with its own contents behind it."""
        return self.root / "srv"

    def own(self, host: str) -> Path:
        """Where the root namespace sees what ``host`` sees at :attr:`srv`."""
        return self.root / host / "srv"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("servers")
    with Fleetnet(root, heartbeat_interval=0.5, host_ttl=TTL, disconnect_grace=GRACE) as net:
        box = Servers(net, root)
        box.srv.mkdir()
        for host in HOSTS:
            (box.own(host) / "logs").mkdir(parents=True)
            (box.own(host) / "archive").mkdir()
        net.mount_tmpfs(box.own("db01") / "archive")  # before db01 starts: its view copies it
        for host in HOSTS:
            net.add_host(
                host, extra_args=INCLUDE, binds={str(box.srv): str(box.own(host))}, wait=False
            )
        net.wait_online(*HOSTS)
        yield box


@pytest.fixture
def fleet(servers: Servers) -> Iterator[Fleet]:
    with Fleet(config=servers.net.config) as f:
        yield f


def children(fleet: Fleet, job_id: int) -> list[JobInfo]:
    return list(fleet.info(job_id).children)


def max_overlap(kids: Sequence[JobInfo]) -> int:
    """The most children running at one instant, from the begin and end times workers wrote."""
    edges = [(k.begin_time, 1) for k in kids] + [(k.end_time, -1) for k in kids]
    assert all(t is not None for t, _ in edges), kids
    now = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a begin at a tie
        now += step
        most = max(most, now)
    return most


# ---- fan-out ------------------------------------------------------------------------------


def test_a_job_fans_out_to_three_real_hosts_and_each_answers_as_itself(
    servers: Servers, fleet: Fleet
) -> None:
    # given three hosts known only by their hostnames
    hosts = {h.location: h for h in fleet.hosts()}
    assert all(hosts[h].online and hosts[h].hostname == h for h in HOSTS)
    # when one job runs `hostname` on all of them
    job = fleet.start("run", "hostname", locations=list(HOSTS))
    assert fleet.wait([job], timeout=30, force=True)
    # then each child printed the name of the host it ran on, which is its location
    got = fleet.receive(job)
    assert sorted(got) == sorted(HOSTS)
    assert all(rec.location == rec.data for rec in got.records if rec.stream == "output")
    assert job.state is JobState.COMPLETED
    assert job.location == "web01,web02,db01"
    kids = children(fleet, job.id)
    assert [k.location for k in kids] == list(HOSTS)
    assert all(k.state is JobState.COMPLETED for k in kids)
    assert all((k.worker or "").startswith(f"{k.location}.") for k in kids)


def test_ping_answers_for_each_host_and_reaches_a_neighbour_but_not_an_empty_address(
    servers: Servers, fleet: Fleet
) -> None:
    # when each host is asked whether it is up
    job = fleet.start("ping", locations=list(HOSTS))
    assert fleet.wait([job], timeout=30, force=True)
    # then each answers for itself
    answers = {a["Server"]: (a["Online"], a["Method"]) for a in fleet.receive(job)}
    assert answers == {h: (True, "worker") for h in HOSTS}
    # when web01 pings web02's address over the bridge, then web02 answers ICMP
    web02 = servers.net.hosts["web02"].address
    job = fleet.start("ping", web02, locations="web01", kwargs={"timeout": 2.0})
    assert fleet.wait([job], timeout=30, force=True)
    [answer] = fleet.receive(job)
    assert answer["Server"] == web02 and answer["Online"] is True and answer["Method"] == "icmp"
    # when web01 pings an address of the subnet that no host has, then nothing answers
    nobody = servers.net.address(250)
    job = fleet.start("ping", nobody, locations="web01", kwargs={"timeout": 0.5, "port": None})
    assert fleet.wait([job], timeout=30, force=True)
    assert list(fleet.receive(job)) == [
        {"Server": nobody, "Online": False, "RttMs": None, "Method": "icmp"}
    ]
    assert job.state is JobState.COMPLETED


# ---- throttle limit -------------------------------------------------------------------------


def watch_states(fleet: Fleet, job_id: int, timeout: float = 30.0) -> list[list[JobState]]:
    """The children's states, sampled until the job finishes."""
    samples: list[list[JobState]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = fleet.info(job_id)
        samples.append([k.state for k in info.children])
        if info.finished:
            return samples
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {samples[-1]}")


def test_throttle_limit_one_runs_the_hosts_one_after_another(fleet: Fleet) -> None:
    # when a one-second job on three hosts may run on one host at a time
    job = fleet.start("sleep", 1, locations=list(HOSTS), throttle_limit=1)
    samples = watch_states(fleet, job.id)
    # then the others wait as NotStarted while one runs, and never two run at once
    assert [JobState.RUNNING, JobState.NOT_STARTED, JobState.NOT_STARTED] in samples
    assert max(s.count(JobState.RUNNING) for s in samples) == 1
    # and the times the workers wrote show each host began after the one before it ended
    kids = children(fleet, job.id)
    assert all(k.state is JobState.COMPLETED for k in kids) and job.state is JobState.COMPLETED
    assert max_overlap(kids) == 1
    ordered = sorted(kids, key=lambda k: k.begin_time or 0)
    for before, after in itertools.pairwise(ordered):
        assert (after.begin_time or 0) >= (before.end_time or 0)


def test_throttle_limit_two_runs_two_hosts_at_once_and_the_third_after(fleet: Fleet) -> None:
    # when the same job may run on two hosts at a time
    job = fleet.start("sleep", 1, locations=list(HOSTS), throttle_limit=2)
    samples = watch_states(fleet, job.id)
    # then two run while the third waits, and that is the most ever running
    assert [JobState.RUNNING, JobState.RUNNING, JobState.NOT_STARTED] in samples
    kids = children(fleet, job.id)
    assert all(k.state is JobState.COMPLETED for k in kids)
    assert max_overlap(kids) == 2


def test_the_throttle_holds_after_the_console_that_started_the_job_is_closed(
    servers: Servers,
) -> None:
    # given a job started from a console that is closed right after the start
    with Fleet(config=servers.net.config) as starter:
        job_id = starter.start("sleep", 1, locations=list(HOSTS), throttle_limit=1).id
    # when another console watches it (the workers alone release each next host)
    with Fleet(config=servers.net.config) as watcher:
        samples = watch_states(watcher, job_id)
        kids = children(watcher, job_id)
    # then every host ran it, one at a time
    assert max(s.count(JobState.RUNNING) for s in samples) == 1
    assert [k.state for k in kids] == [JobState.COMPLETED] * 3
    assert max_overlap(kids) == 1


# ---- a host with no worker ------------------------------------------------------------------


def test_a_location_with_no_worker_fails_at_the_start_timeout_and_never_runs_later(
    servers: Servers, fleet: Fleet, tmp_path: Path
) -> None:
    # given a job whose every child leaves a mark named after the host it ran on
    mark = f"touch {shlex.quote(str(tmp_path))}/$(hostname)"
    locations = ["web01", "web02", "ghost01"]
    # when it is started with a 2 s start timeout on a host no worker serves
    job = fleet.start("run", mark, locations=locations, start_timeout=2)
    assert any("ghost01" in w for w in job.warnings)
    assert fleet.wait([job], timeout=15, force=True)
    # then that child fails with the reason, the others complete, and the parent fails
    kids = {k.location: k for k in children(fleet, job.id)}
    assert kids["ghost01"].state is JobState.FAILED
    assert kids["ghost01"].reason == "no worker on ghost01 started the job within 2 s"
    assert kids["web01"].state is kids["web02"].state is JobState.COMPLETED
    assert job.state is JobState.FAILED
    assert sorted(os.listdir(tmp_path)) == ["web01", "web02"]
    # when a worker for ghost01 comes up later and runs a job after the one left in its queue
    servers.net.add_host("ghost01", extra_args=INCLUDE)
    try:
        probe = fleet.start("run", f"{mark}-probe", locations="ghost01")
        assert fleet.wait([probe], timeout=30, force=True) and probe.state is JobState.COMPLETED
        # then the timed-out child never ran there
        assert sorted(os.listdir(tmp_path)) == ["ghost01-probe", "web01", "web02"]
        ghost = fleet.info(kids["ghost01"].id)
        assert ghost.state is JobState.FAILED and ghost.begin_time is None
        assert ghost.reason == "no worker on ghost01 started the job within 2 s"
        assert fleet.receive(ghost.id).records == []
    finally:
        servers.net.remove_host("ghost01", timeout=2)


# ---- a host cut off mid-job -----------------------------------------------------------------


def child_state(fleet: Fleet, job_id: int) -> JobState:
    return fleet.get(job_id, include_children=True)[1].info.state  # get() also sweeps


def cut_mid_job(fleet: Fleet, net: Fleetnet, host: str) -> int:
    """Start ``produce 200 0.1`` on ``host``, cut the host off, return once it is Disconnected."""
    job = fleet.start("produce", 200, 0.1, locations=host)
    eventually(lambda: child_state(fleet, job.id) is JobState.RUNNING)
    net.cut(host)
    eventually(lambda: child_state(fleet, job.id) is JobState.DISCONNECTED, timeout=TTL + 3)
    return job.id


def assert_back_from_disconnected(fleet: Fleet, job_id: int) -> None:
    """The child's first state after Disconnected is Running: it came back within grace."""
    state = eventually(
        lambda: (s := child_state(fleet, job_id)) is not JobState.DISCONNECTED and s,
        timeout=GRACE + 2,
    )
    why = fleet.info(job_id).children[0].reason
    assert state is JobState.RUNNING, f"the child turned {state} instead, reason: {why}"


def test_a_host_cut_off_mid_job_is_disconnected_and_running_again_once_it_is_back(
    servers: Servers, fleet: Fleet
) -> None:
    # given a job writing 200 values on web02, when web02 drops off the network
    try:
        job_id = cut_mid_job(fleet, servers.net, "web02")
        # then its child and the parent are Disconnected, and the host is offline
        assert fleet.info(job_id).state is JobState.DISCONNECTED
        assert not {h.location: h.online for h in fleet.hosts()}["web02"]
    finally:
        # when it comes back at once
        servers.net.restore("web02")
    # then the child is Running again, and ends Completed with every value once, in order
    assert_back_from_disconnected(fleet, job_id)
    [job] = fleet.wait([job_id], timeout=60, force=True)
    assert job.state is JobState.COMPLETED, f"the job {job.state}: {job.reason}"
    assert list(fleet.receive(job)) == list(range(1, 201))


def test_a_job_survives_its_host_being_off_the_network_for_most_of_the_grace_period(
    servers: Servers, fleet: Fleet
) -> None:
    # given a job writing 200 values on web02, cut off and Disconnected
    try:
        job_id = cut_mid_job(fleet, servers.net, "web02")
        # when the host stays off for half the grace period more (about 5 s off in all)
        time.sleep(GRACE / 2)
    finally:
        servers.net.restore("web02")
    # then the job goes on as it did after a short cut: Running, then Completed, nothing lost
    assert_back_from_disconnected(fleet, job_id)
    [job] = fleet.wait([job_id], timeout=60, force=True)
    assert job.state is JobState.COMPLETED, f"the job {job.state}: {job.reason}"
    assert list(fleet.receive(job)) == list(range(1, 201))


def test_a_host_left_cut_off_fails_its_job_after_the_grace_period(
    servers: Servers, fleet: Fleet
) -> None:
    # given a job writing 200 values on a host of its own
    net = servers.net
    net.add_host("web03", extra_args=INCLUDE)
    try:
        # when the host drops off the network and stays off
        job = fleet.job(cut_mid_job(fleet, net, "web03"))
        lost = time.monotonic()
        # then the job fails once the grace period is over, not before, with the reason why
        assert fleet.wait([job], timeout=GRACE + 4, force=True)
        assert time.monotonic() - lost >= GRACE - 0.5
        assert job.state is JobState.FAILED
        [kid] = children(fleet, job.id)
        assert kid.state is JobState.FAILED
        assert "host web03 stopped answering while the job ran" in (kid.reason or "")
        assert "stopped answering" in (job.reason or "")
        written = list(fleet.receive(job))
        assert written == list(range(1, len(written) + 1))
        # and when the host comes back, the job stays Failed
        net.restore("web03")
        eventually(lambda: {h.location: h.online for h in fleet.hosts()}["web03"], timeout=10)
        time.sleep(1.5)  # a few heartbeats and sweeps
        assert child_state(fleet, job.id) is JobState.FAILED and job.state is JobState.FAILED
    finally:
        net.remove_host("web03", timeout=2)


# ---- archiving each server's logs ---------------------------------------------------------


def make_file(folder: Path, name: str, age_days: float, content: bytes) -> None:
    path = folder / name
    path.write_bytes(content)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


def test_archive_logs_moves_each_servers_old_logs_into_its_own_archive_and_loses_none(
    servers: Servers, fleet: Fleet
) -> None:
    # given on every server its own logs: old ones, new ones, and files that are not logs
    ages = {"app.log": 10, "app-2024-01.log": 40, "week.log": 6.5, "today.log": 0.1, "old.txt": 30}
    old_logs = ["app-2024-01.log", "app.log"]
    content = {h: {n: f"{h} {n}\n".encode() * 100 for n in ages} for h in HOSTS}
    for host in HOSTS:
        for name, age in ages.items():
            make_file(servers.own(host) / "logs", name, age, content[host][name])
    own_dev = os.stat(servers.own("db01") / "logs").st_dev
    assert os.stat(servers.own("db01") / "archive").st_dev != own_dev  # db01: across file systems
    # when one job archives srv/logs into srv/archive on every server at once
    logs, archive = str(servers.srv / "logs"), str(servers.srv / "archive")
    job = fleet.start("archive_logs", logs, archive, locations=list(HOSTS))
    assert fleet.wait([job], timeout=30, force=True)
    # then each server moved its own two old logs and says so
    assert job.state is JobState.COMPLETED
    summaries = {s["Server"]: s for s in fleet.receive(job)}
    for host in HOSTS:
        size = sum(len(content[host][n]) for n in old_logs)
        assert summaries[host] == {"Server": host, "Archived": 2, "Bytes": size, "Skipped": 0}
    # and every file is in exactly one place, with its content and its date
    for host in HOSTS:
        left = sorted(os.listdir(servers.own(host) / "logs"))
        moved = sorted(os.listdir(servers.own(host) / "archive"))
        assert left == ["old.txt", "today.log", "week.log"], host
        assert moved == old_logs, host
        for name in moved:
            path = servers.own(host) / "archive" / name
            assert path.read_bytes() == content[host][name]
            assert abs(path.stat().st_mtime - (time.time() - ages[name] * DAY)) < 120
    assert os.listdir(servers.srv) == []  # the shared path itself was never written
    # when it runs again, then nothing new is archived and nothing moves
    again = fleet.start("archive_logs", logs, archive, locations=list(HOSTS))
    assert fleet.wait([again], timeout=30, force=True)
    assert sorted((s["Server"], s["Archived"], s["Skipped"]) for s in fleet.receive(again)) == [
        (h, 0, 0) for h in sorted(HOSTS)
    ]
    for host in HOSTS:
        assert sorted(os.listdir(servers.own(host) / "archive")) == old_logs


def test_facts_tell_real_hosts_apart_and_a_rolling_run_over_them_halts_at_a_failure(
    servers: Servers, fleet: Fleet
) -> None:
    # given three servers, each reporting the facts of its own namespace
    eventually(lambda: all(h.facts for h in fleet.hosts() if h.location in HOSTS), timeout=15)
    facts = {h.location: h.facts for h in fleet.hosts() if h.location in HOSTS}
    assert {loc: f["hostname"] for loc, f in facts.items()} == {h: h for h in HOSTS}
    web02 = servers.net.hosts["web02"].address
    assert web02 in facts["web02"]["addresses"] and web02 not in facts["web01"]["addresses"]
    # when hosts are picked by their facts: by hostname glob, by address
    by_name = fleet.start("echo", 1, where=["hostname=web*"])
    by_addr = fleet.start("echo", 1, where=[f"addresses={web02}"])
    assert sorted(by_name.info.location.split(",")) == ["web01", "web02"]
    assert by_addr.info.location == "web02"
    assert fleet.wait([by_name, by_addr], timeout=30, force=True)
    # and a rolling run, one server at a time, fails on web02 (its second wave)
    job = fleet.start(
        "fail_at", "web02", locations=["web01", "web02", "db01"], batch=1, max_failures=0
    )
    assert fleet.wait([job], timeout=30, force=True)
    # then db01 never started, and the parent says why
    kids = {c.location: c for c in job.refresh().info.children}
    assert [kids[h].state for h in ("web01", "web02", "db01")] == [
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.STOPPED,
    ]
    assert kids["db01"].begin_time is None
    assert (job.reason or "").startswith("rollout halted after 1 failure: hosts web02")
