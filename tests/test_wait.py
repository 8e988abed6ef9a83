"""Wait: finished jobs in the order given, any, timeouts that return nothing."""

from __future__ import annotations

import time

from fleetjobs import Fleet, JobState


def test_wait_returns_every_finished_job_in_the_order_given(fleet: Fleet) -> None:
    slow = fleet.start("sleep", 1.0, locations="alpha")
    fast = fleet.start("sleep", 0.1, locations="beta")
    done = fleet.wait([slow, fast], timeout=15)
    assert [j.id for j in done] == [slow.id, fast.id]
    assert all(j.info.state is JobState.COMPLETED for j in done)


def test_wait_any_returns_as_soon_as_one_finishes(fleet: Fleet) -> None:
    slow = fleet.start("sleep", 30, locations="alpha")
    fast = fleet.start("sleep", 0.2, locations="beta")
    done = fleet.wait([slow, fast], timeout=15, any=True)
    assert [j.id for j in done] == [fast.id]
    assert slow.state is JobState.RUNNING
    fleet.stop(slow)


def test_a_timeout_returns_nothing_and_raises_nothing(fleet: Fleet) -> None:
    job = fleet.start("sleep", 30, locations="alpha")
    began = time.monotonic()
    assert fleet.wait([job], timeout=0.5) == []
    assert 0.4 < time.monotonic() - began < 10
    assert not job.wait(timeout=0)
    fleet.stop(job)
    assert job.wait(timeout=0)  # a timeout of 0 is a real poll


def test_a_finished_job_is_returned_by_a_zero_timeout(fleet: Fleet) -> None:
    job = fleet.start("echo", 1, locations="alpha")
    assert fleet.wait([job], timeout=15)
    assert [j.id for j in fleet.wait([job], timeout=0)] == [job.id]


def test_waiting_blocks_on_events_instead_of_polling_redis(fleet: Fleet) -> None:
    # given a job that takes 3 s
    job = fleet.start("sleep", 3, locations="alpha")
    # when a console waits for it, counting the commands this console sends
    sent: list[object] = []
    packer = fleet.store.r.connection_pool.connection_kwargs["command_packer"]
    real = packer.pack  # every command goes through it, a pipeline's one by one
    packer.pack = lambda *args: sent.append(args[0]) or real(*args)
    try:
        fleet.wait([job], timeout=20)
    finally:
        packer.pack = real
    # then the wait cost a few commands a second (its 1 s safety sweep, one read of the states
    # per event or second), not a busy loop
    print(f"{len(sent)} commands in a 3 s wait")
    assert 0 < len(sent) < 60, sent
