"""Wait: finished jobs in the order given, any, timeouts that return nothing."""

from __future__ import annotations

import threading
import time

import redis

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


def test_a_wait_wakes_for_the_end_of_a_job_not_for_each_change(fleet: Fleet) -> None:
    # given a console listening on every job channel of the fleet, and one counting the
    # times a wait looks at the registry
    listener = fleet.store.r.pubsub(ignore_subscribe_messages=True)
    listener.psubscribe(fleet.store.keys.events("*"))
    listener.get_message(timeout=1.0)  # its confirmation: listening from here on
    looks: list[object] = []
    real = fleet.registry.poll
    fleet.registry.poll = lambda *a, **k: looks.append(a) or real(*a, **k)  # type: ignore[method-assign]
    try:
        # when a job that runs for a moment on two locations is started and waited for
        job = fleet.start("sleep", 0.5, locations="alpha,beta")
        assert fleet.wait([job], timeout=20)
    finally:
        fleet.registry.poll = real  # type: ignore[method-assign]
    heard: dict[str, list[str]] = {}
    while (msg := listener.get_message(timeout=0.5)) is not None:
        if msg["data"] != "r":  # a record written (the sleep's own): a wait ignores them
            heard.setdefault(msg["channel"].rsplit(":", 1)[-1], []).append(msg["data"])
    listener.close()
    # then the job and each child said 'state' when it began running and 'end' when it
    # finished (so a wait sleeps through the first) ...
    assert heard[job.instance_id] == ["state", "end"], heard
    for child in job.children:
        assert heard[child.instance_id] == ["state", "end"], heard
    # ... and the wait looked once before the job ended and once after, with no look for the
    # start of the job or its subscription's confirmation
    assert len(looks) == 2, looks


def test_junk_on_a_jobs_channel_does_not_end_a_wait(fleet: Fleet) -> None:
    # given a job that runs for a moment, and bytes that are not UTF-8 published on its
    # channel while a console waits (anyone who may publish on jobs' channels can)
    job = fleet.start("sleep", 1.5, locations="alpha")
    raw = redis.Redis.from_url(fleet.config.redis_url)
    stop = threading.Event()

    def junk() -> None:
        while not stop.wait(0.1):
            raw.publish(fleet.store.keys.events(job.info.instance_id), b"\xff\xfe")

    sender = threading.Thread(target=junk, daemon=True)
    sender.start()
    try:
        # then the wait goes on to the job's end (it raised UnicodeDecodeError)
        assert fleet.wait([job], timeout=20) and job.state is JobState.COMPLETED
    finally:
        stop.set()
        sender.join()
        raw.close()
