"""Receive never loses what it took: records leave Redis only once handed on, in bounded
batches, and a job's output is capped with a warning instead of filling Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetjobs import Fleet, JobState
from fleetjobs.records import BATCH

from ..conftest import ROOT, fleet_with_worker_settings

DYING_CONSOLE = """
import os, sys
import fleetjobs.records
fleetjobs.records.LEASE = 1.0  # the lease this console's takes carry
from fleetjobs import Config, Fleet
fleet = Fleet(config=Config(redis_url=sys.argv[1], prefix=sys.argv[2]))
for i, rec in enumerate(fleet.stream(int(sys.argv[3]))):
    print(rec.data, flush=True)
    if i == 9:
        os._exit(9)  # killed mid-receive: no acknowledgement, no clean-up
"""


def test_a_console_killed_mid_receive_loses_nothing(fleet: Fleet) -> None:
    # given a finished job with 2,500 records (more than one batch)
    job = fleet.start("produce", 2500, locations="alpha")
    assert fleet.wait(job, timeout=30)
    # when a console takes a batch, prints 10 records and is killed
    cfg = fleet.config
    dying = subprocess.run(
        [sys.executable, "-c", DYING_CONSOLE, cfg.redis_url, cfg.prefix, str(job.id)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert dying.returncode == -9 or dying.returncode == 9, dying.stderr
    printed = [int(x) for x in dying.stdout.split()]
    assert printed == list(range(1, 11))
    # then the job still has more data, and once the dead console's lease is over the next
    # receive gets every record, in order: nothing was lost (the 10 it printed come again)
    assert job.has_more_data
    time.sleep(1.2)
    got = list(fleet.receive(job))
    print(f"records lost: {2500 - len(set(got))}, printed twice: {len(got) - 2490}")
    assert got == list(range(1, 2501))
    assert not job.has_more_data


def test_a_receive_stopped_part_way_hands_the_rest_to_the_next(fleet: Fleet) -> None:
    # given a finished job with 1,500 records
    job = fleet.start("produce", 1500, locations="alpha")
    assert fleet.wait(job, timeout=30)
    # when a reader takes 10 of them and stops (a Ctrl-C, a closed pipe)
    stream = fleet.stream(job)
    first = [next(stream).data for _ in range(10)]
    stream.close()
    # then the next receive gets exactly the rest, in order: each record exactly once
    assert first == list(range(1, 11))
    assert list(fleet.receive(job)) == list(range(11, 1501))


def test_ctrl_c_while_a_console_prints_a_record_gives_it_and_the_rest_back_at_once(
    fleet: Fleet,
) -> None:
    # given a finished job with 1,500 records
    job = fleet.start("produce", 1500, locations="alpha")
    assert fleet.wait(job, timeout=30)
    # when a console printing them (a record is handed on once it asks for the next) is
    # interrupted while it prints the 10th
    stream = fleet.stream(job, handed_on_next=True)
    first = [next(stream).data for _ in range(10)]
    with pytest.raises(KeyboardInterrupt):
        stream.throw(KeyboardInterrupt())
    # then the next receive gets the 10th again and all the rest, at once, not a lease later
    assert first == list(range(1, 11))
    assert list(fleet.receive(job)) == list(range(10, 1501))


def test_ctrl_c_while_a_list_of_records_is_built_gives_back_what_it_had(fleet: Fleet) -> None:
    # given a finished job with 1,500 records
    job = fleet.start("produce", 1500, locations="alpha")
    assert fleet.wait(job, timeout=30)
    # when Ctrl-C lands while fleet.receive builds its list (list() of the records, which
    # throws away what it was given), 10 records into the first batch
    records = fleet.records.drain(job.refresh().info.children, whole=True)
    assert [next(records).data for _ in range(10)] == list(range(1, 11))
    with pytest.raises(KeyboardInterrupt):
        records.throw(KeyboardInterrupt())
    # then those 10 go back with the rest of their batch, at once
    assert list(fleet.receive(job)) == list(range(1, 1501))


def test_ctrl_c_inside_the_take_gives_its_batch_back_at_once(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a finished job with 1,500 records
    job = fleet.start("produce", 1500, locations="alpha")
    assert fleet.wait(job, timeout=30)
    # when Ctrl-C lands in a receive's take, once Redis has run it (the batch held under
    # its token) and before the console has the answer
    take = fleet.records._take

    def interrupted(*args: object) -> object:
        take(*args)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(fleet.records, "_take", interrupted)
    with pytest.raises(KeyboardInterrupt):
        next(fleet.stream(job))
    monkeypatch.undo()
    # then the next receive gets every record at once, not the held batch a lease later
    assert list(fleet.receive(job)) == list(range(1, 1501))


TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def test_receives_interrupted_part_way_lose_nothing(fleet: Fleet) -> None:
    # given a finished job with 40,000 records
    n = 40_000
    job = fleet.start("produce_in_batches", n, 1000, locations="alpha")
    assert fleet.wait(job, timeout=60)
    env = {**os.environ, "FLEETJOBS_REDIS_URL": fleet.config.redis_url}
    env["FLEETJOBS_PREFIX"] = fleet.config.prefix
    printed: list[int] = []
    # when receive after receive is interrupted part-way through: Ctrl-C (SIGINT), and a
    # SIGTERM (timeout, a service's stop)
    for delay, sig in ((0.5, signal.SIGINT), (0.6, signal.SIGTERM), (0.7, signal.SIGINT)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetjobs", "receive", str(job.id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            # as a terminal leaves them (a shell's background job, nohup, ignore some)
            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in TERMINAL_SIGNALS],
        )
        time.sleep(delay)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        # (the last line may be cut short by the interrupt: the record comes again)
        lines = out.decode().split("\n")[:-1]
        printed += [int(x) for x in lines if x.isdigit()]
    # then one more receive, at once, prints the rest: every record printed, at most the
    # one each interrupt cut short printed twice
    printed += list(fleet.receive(job))
    print(f"\nprinted {len(printed)} of {n} records, {len(printed) - len(set(printed))} twice")
    assert set(printed) == set(range(1, n + 1))
    assert len(printed) - n <= 3


def test_receive_takes_in_bounded_batches(fleet: Fleet) -> None:
    # given a job with more records than a batch
    job = fleet.start("produce", BATCH * 2 + 5, locations="beta")
    assert fleet.wait(job, timeout=60)
    [child] = job.refresh().info.children
    # when a receive has been handed one record
    stream = fleet.stream(job)
    assert next(stream).data == 1
    # then only one batch has left the job's list (the rest waits in Redis)
    left = fleet.store.r.llen(fleet.store.keys.out(child.instance_id))
    assert left == BATCH + 5
    stream.close()
    assert list(fleet.receive(job)) == list(range(2, BATCH * 2 + 6))  # 1 was handed on


def test_receive_json_prints_each_record_as_it_is_taken(fleet: Fleet) -> None:
    # given a job writing one record every 0.3 s
    job = fleet.start("produce", 4, 0.3, locations="beta")
    env = {**os.environ, "FLEETJOBS_REDIS_URL": fleet.config.redis_url}
    env["FLEETJOBS_PREFIX"] = fleet.config.prefix
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "receive", str(job.id), "--wait", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    # then the first record is on stdout while the job still runs
    lines = [proc.stdout.readline() for _ in range(2)]
    assert lines == ["[\n", "  {\n"]
    assert job.state is JobState.RUNNING
    rest = proc.stdout.read()
    assert proc.wait(30) == 0
    # and the whole is one JSON array of every record
    records = json.loads("".join(lines) + rest)
    assert [r["data"] for r in records if r["stream"] == "output"] == [1, 2, 3, 4]


@pytest.fixture
def capped(redis_url: str, logs: Path) -> Iterator[Fleet]:
    """A fleet whose worker keeps at most 2,000 bytes of records per job."""
    settings = {"FLEETJOBS_MAX_OUTPUT": "2000"}
    with fleet_with_worker_settings(redis_url, logs, "capped", settings) as fleet:
        yield fleet


@pytest.mark.parametrize(
    "action, args",
    [
        ("produce", [1000]),  # written one by one while it runs
        ("produce_in_batches", [1000]),  # written 100 to a write while it runs
        ("echo", list(range(1, 1001))),  # returned whole: written with the job's finish
        ("echo", list(range(1, 2501))),  # more than a finish carries: the first go before it
    ],
)
def test_output_past_the_cap_ends_with_a_truncated_warning(
    capped: Fleet, action: str, args: list[int]
) -> None:
    # given a job writing far more than the worker's 2,000-byte output cap
    job = capped.start(action, *args, locations="capped")
    assert capped.wait(job, timeout=60)
    # then it completes, its output stops short, and one warning says why
    got = capped.receive(job)
    assert job.state is JobState.COMPLETED
    assert 0 < len(got) < 1000 and list(got) == list(range(1, len(got) + 1))
    assert got.warnings == [
        "output truncated: the job wrote more than 2000 bytes of records; later ones were "
        "dropped (FLEETJOBS_MAX_OUTPUT)"
    ]
    assert got.records[-1].stream == "warning"
