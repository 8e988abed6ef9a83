"""Nothing waits for ever for a message that was lost: the worker serving a location sends
again the message of a child that is on no queue and reserved by no worker, and leaves alone
the ones that are merely waiting their turn or reserved.

A message is lost when a worker is SIGKILLed between taking it off its queue and claiming its
job, or a console or worker between releasing a throttled child and sending it; the soak
kills workers at random moments. Here the loss is made exact: the message is taken out of the
real queue, as the dead process took it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from fleetjobs import Job, JobState
from fleetjobs.celery_app import lease_seconds
from fleetjobs.routing import queue_for

from ..conftest import eventually, uniq
from .support import busy_holding_one, fleet_with, own_config


def _message_of(client: redis.Redis, queue_key: str, job: Job) -> bytes:
    iid = job.info.children[0].instance_id
    for raw in client.lrange(queue_key, 0, -1):
        if json.loads(raw)["headers"]["id"] == iid:
            return bytes(raw)
    raise AssertionError(f"no message of job {job.id} on {queue_key}")


def _resent(logs: Path) -> list[str]:
    return [
        line
        for log in logs.glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "re-sending" in line
    ]


def test_a_lost_message_is_sent_again_and_its_job_runs_once(redis_url: str, logs: Path) -> None:
    cfg = own_config(redis_url)
    loc = uniq("lost")
    client = redis.Redis.from_url(cfg.redis_url)
    queue_key = f"{cfg.prefix}{queue_for(loc)}"
    with fleet_with(cfg, [loc], logs, concurrency=1) as (fleet, _):
        # given a worker of concurrency 1 busy with a long job, holding the next one reserved
        long, reserved = busy_holding_one(fleet, client, loc)
        # and two more waiting on its queue, the older of which loses its message
        lost = fleet.start("echo", "lost", locations=loc)
        waiting = fleet.start("echo", "waiting", locations=loc)
        eventually(lambda: client.llen(queue_key) == 2, timeout=10)
        before = len(_resent(logs))
        assert client.lrem(queue_key, 1, _message_of(client, queue_key, lost)) == 1
        # when more than the lease and a look pass
        time.sleep(lease_seconds(cfg) * 2 + cfg.heartbeat_interval * 2)
        # then the lost one's message is on the queue again, and only it: the reserved and
        # the waiting ones were not copied
        assert client.llen(queue_key) == 2
        _message_of(client, queue_key, lost)
        _message_of(client, queue_key, waiting)
        resent = _resent(logs)[before:]
        assert len(resent) == 1, resent
        assert str(lost.info.children[0].id) in resent[0] and "1 job(s)" in resent[0]
        # and once the long job ends, each of the others runs, once
        fleet.stop(long)
        done = fleet.wait([reserved, lost, waiting], timeout=30)
        assert [j.state for j in done] == [JobState.COMPLETED] * 3
        assert list(fleet.receive(reserved)) == ["reserved"]
        assert list(fleet.receive(lost)) == ["lost"]
        assert list(fleet.receive(waiting)) == ["waiting"]
        # and nothing is left to re-send
        assert client.zcard(f"{cfg.prefix}inq:{loc}") == 0
    client.close()


def test_a_release_queues_the_kept_message_itself(redis_url: str, logs: Path) -> None:
    cfg = own_config(redis_url)
    first, second = uniq("rel"), uniq("rel")
    client = redis.Redis.from_url(cfg.redis_url)
    with fleet_with(cfg, [first], logs) as (fleet, _):
        # given a throttled job over two locations: its child on `second` (no worker serves
        # it) holds the one slot, its child on `first` waits, its message kept, not queued
        job = fleet.start("echo", "hi", locations=[second, first], throttle_limit=1)
        child = {c.location: c for c in job.info.children}
        assert client.exists(f"{cfg.prefix}msg:{child[first].instance_id}")
        # when the child on `second` ends (the script a finishing worker runs)
        _, due = fleet.lifecycle.finish(child[second].id, JobState.COMPLETED)
        # then the same script queued the released child's message: no process has to live
        # on to send it, and none makes (or signs) one
        assert due == []
        # and it runs, once; its kept message is gone with the claim
        assert fleet.wait(job, timeout=20)
        got = {c.location: c.state for c in fleet.get(job)[0].info.children}
        assert got == {second: JobState.COMPLETED, first: JobState.COMPLETED}
        assert list(fleet.receive(job)) == ["hi"]
        assert not client.exists(f"{cfg.prefix}msg:{child[first].instance_id}")
    client.close()


def test_a_copy_delivered_while_its_job_runs_does_not_run_it_again(
    redis_url: str, logs: Path, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    first, second = uniq("copy"), uniq("copy")
    client = redis.Redis.from_url(cfg.redis_url)
    with fleet_with(cfg, [first, second], logs, concurrency=2) as (fleet, _):
        # given a job whose second child's kept message someone copied while it waited
        job = fleet.start(
            "tally_slowly", str(tmp_path), 3, locations=[first, second], throttle_limit=1
        )
        child = job.info.children[1]
        copy = client.get(f"{cfg.prefix}msg:{child.instance_id}")
        assert copy
        # when the copy is pushed onto the queue while the child runs: the worker's other
        # pool process takes it (the same worker: the copy's claim is not "asking again")
        eventually(lambda: fleet.get(child.id)[0].info.state is JobState.RUNNING, timeout=20)
        client.lpush(f"{cfg.prefix}{queue_for(second)}", copy)
        # then the child ran once
        assert fleet.wait(job, timeout=30)
        assert (tmp_path / second).read_text().count("\n") == 1
        assert (tmp_path / first).read_text().count("\n") == 1
    client.close()
