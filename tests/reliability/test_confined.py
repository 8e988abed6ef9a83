"""Confined workers: a worker's Redis user writes only its own location's keys (the rule
deploy/redis-acl.conf ships), and ``fleetjobs relay`` writes the rest for it, checked.

Real Redis ACL users on a real redis-server, real workers, a real ``fleetjobs relay`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, Fleet, JobState, deadletters
from fleetjobs.embedded import LocalWorkers, process_env
from fleetjobs.keys import Keys
from fleetjobs.records import WRITE_BATCH
from fleetjobs.relaycall import RelayClient
from fleetjobs.routing import queue_for
from fleetjobs.version import __version__

from ..conftest import FAST, INCLUDE, ROOT, eventually, make_cli, uniq
from .support import acl_rule


class RelayProcess:
    """``fleetjobs relay`` as its own process, with a console's user; stop and start again."""

    def __init__(self, cfg: Config, log: Path) -> None:
        self.env = process_env(cfg)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fleetjobs", "relay"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            assert self.proc.wait(timeout=15) == 0  # SIGTERM: a clean exit
            self.proc = None


@contextlib.contextmanager
def confined_fleet(
    redis_url: str, logs: Path, locations: list[str]
) -> Iterator[tuple[Config, Fleet, dict[str, Config], RelayProcess]]:
    """A fleet of its own: a console (admin user), a running ``fleetjobs relay``, and for
    each location its own confined ACL user, as the worker's settings. Workers not started."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('cf')}:", **FAST)  # type: ignore[arg-type]
    admin = redis.Redis.from_url(redis_url)
    users = {loc: uniq(f"w-{loc}") for loc in locations}
    hosts: dict[str, Config] = {}
    for loc, user in users.items():
        admin.execute_command(
            "ACL", "SETUSER", user, *acl_rule("fleet-worker-web01", cfg.prefix, "pw", loc)
        )
        url = redis_url.replace("redis://", f"redis://{user}:pw@")
        hosts[loc] = cfg.with_(redis_url=url, confined_to=loc)
    relay = RelayProcess(cfg, logs / f"relay-{cfg.prefix.strip(':')}.log")
    relay.start()
    try:
        with Fleet(config=cfg) as fleet:
            yield cfg, fleet, hosts, relay
    finally:
        relay.stop()
        for user in users.values():
            admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_confined_workers_run_a_throttled_fan_out_through_the_relay(
    redis_url: str, logs: Path
) -> None:
    locs = [uniq("cfa"), uniq("cfb")]
    # given one confined worker per host, each with its own location's Redis user
    with (
        confined_fleet(redis_url, logs, locs) as (_cfg, fleet, hosts, _relay),
        contextlib.ExitStack() as stack,
    ):
        for loc in locs:
            stack.enter_context(LocalWorkers(hosts[loc], [[loc]], extra_args=INCLUDE, log_dir=logs))
        # when a job fans out to both, one at a time (the first host's finish releases
        # the second host's child: a write onto another host's queue, made by the relay)
        job = fleet.start("produce", 2, locations=",".join(locs), throttle_limit=1)
        assert fleet.wait(job, timeout=60), fleet.get(job.id)
        # then both ran, wrote their records, and the hosts show online
        assert job.refresh().state is JobState.COMPLETED
        assert sorted(fleet.receive(job)) == [1, 1, 2, 2]
        assert {h.location: h.online for h in fleet.hosts()} == dict.fromkeys(locs, True)
        # and their records say the relay's version, beside the worker's: a job there keeps
        # no InstanceId index entry (the relay finds a job by the Id its InstanceId carries)
        seen = {h.location: (h.confined, h.relay_version, h.version) for h in fleet.hosts()}
        assert seen == dict.fromkeys(locs, (True, __version__, __version__))
        iids = [job.instance_id, *(c.instance_id for c in job.refresh().info.children)]
        assert len(iids) == 3 and fleet.store.r.hmget(fleet.store.keys.iids, iids) == [None] * 3
        # and records written a thousand to a write (as run relays a command's lines) go
        # through the relay whole and in order
        many = fleet.start("produce_in_batches", 2500, 1000, locations=locs[0])
        assert fleet.wait(many, timeout=60) and many.state is JobState.COMPLETED
        assert list(fleet.receive(many)) == list(range(1, 2501))
        # and a stop reaches a confined worker's running job
        slow = fleet.start("sleep", 60, locations=locs[0])
        eventually(lambda: slow.refresh().state is JobState.RUNNING, timeout=20)
        fleet.stop(slow, timeout=20)
        assert slow.refresh().state is JobState.STOPPED
        # and one host's credential cannot beat for the other host's worker (which would
        # keep it alive once dead: its jobs would never be failed)
        r, keys = fleet.store.r, fleet.store.keys
        workers = {k: json.loads(r.get(k))["locations"] for k in r.scan_iter(keys.worker("*"))}
        other = [k.rsplit("wk:", 1)[1] for k, where in workers.items() if where == [locs[1]]]
        stolen = redis.Redis.from_url(hosts[locs[0]].redis_url, decode_responses=True)
        relay = RelayClient(stolen, keys, locs[0])
        doc = json.dumps({"locations": [locs[0]]})
        for worker in (other[0], "somehost.123.abcdef01", f"{locs[1]}/x", f"{locs[0]}x/y"):
            with pytest.raises(redis.exceptions.NoPermissionError, match="the relay refused"):
                relay.call("script", "beat", "beat", worker, doc, 60000, locs[0])
        stolen.close()


def test_a_confined_worker_credential_cannot_start_a_job_on_another_host(
    redis_url: str, logs: Path
) -> None:
    mine, theirs = uniq("cfm"), uniq("cft")
    with confined_fleet(redis_url, logs, [mine, theirs]) as (cfg, fleet, hosts, _relay):
        # given a job waiting on the other host (its worker is down: its message waits)
        job = fleet.start("echo", "harmless", locations=theirs)
        child = job.info.children[0]
        queue, kept = fleet.store.keys.queue(theirs), fleet.store.keys.msg(child.instance_id)
        message = fleet.store.r.get(kept)
        assert fleet.store.r.llen(queue) == 1 and message
        # and a stolen credential of this host
        stolen = redis.Redis.from_url(hosts[mine].redis_url, decode_responses=True)
        keys = fleet.store.keys
        denied = redis.exceptions.NoPermissionError
        # then it may read the fleet, but write nothing that makes another host run
        # anything: its queue, its job records, the kept messages, a new job, a schedule
        assert stolen.hget(keys.job(child.id), "location") == theirs
        forged = json.loads(message)
        for attempt in (
            lambda: stolen.lpush(queue, message),  # a copy of a real message
            lambda: stolen.lpush(queue, json.dumps(forged)),
            lambda: stolen.hset(keys.job(child.id), "state", "NotStarted"),
            lambda: stolen.hset(keys.job(job.id), "args", '["rm -rf /"]'),
            lambda: stolen.set(kept, message),
            lambda: stolen.incr(keys.seq),
            lambda: stolen.hset(f"{cfg.prefix}redbeat:evil", "definition", "{}"),
            lambda: stolen.eval(f"return redis.call('LPUSH', '{queue}', 'x')", 0),
            # a function library is server-wide: code a console's FCALL would run as itself
            lambda: stolen.function_load(
                "#!lua name=fj\nredis.register_function('claim', function() return 1 end)"
            ),
            lambda: stolen.function_flush(),
            lambda: stolen.sadd(f"{cfg.prefix}_kombu.binding.x", "y") and stolen.delete(queue),
            # kombu's routing tables other than its own queue's binding: one member that is
            # not kombu's made every trusted worker's remote-control replies fail (celery
            # inspect, Flower's worker pages: ValueError in kombu's get_table), and another
            # host's table would route that host's messages elsewhere
            lambda: stolen.sadd(f"{cfg.prefix}_kombu.binding.reply.celery.pidbox", "junk"),
            lambda: stolen.sadd(f"{cfg.prefix}_kombu.binding.celery.pidbox", "junk"),
            lambda: stolen.sadd(f"{cfg.prefix}_kombu.binding.{queue_for(theirs)}", "junk"),
            lambda: stolen.sadd(f"{cfg.prefix}_kombu.binding_permanent.{queue_for(theirs)}", "x"),
        ):
            with pytest.raises(redis.exceptions.ResponseError) as refused:
                attempt()
            # NOPERM, or inside a script "can't access at least one of the keys"
            assert isinstance(refused.value, denied) or "can't access" in str(refused.value)
        # nor can it have the relay do it: requests about another host's jobs are refused
        relay = RelayClient(stolen, keys, mine)
        for op, *args in (
            ("script", "resend", child.instance_id),
            ("script", "claim", child.id, "w", theirs, child.instance_id, "a"),
            ("script", "finish", child.id, "Completed", ""),
            ("script", "beat", "beat", "w-evil", "{}", 60000, theirs),
            ("script", "create", "{}"),
            ("script", "stop", job.id, "x"),
            ("script", "stop", child.id, "x"),
            ("progress", child.id, {"percent": 1}),
            ("hostdoc", json.dumps({"location": theirs})),
        ):
            with pytest.raises(denied, match="the relay refused"):
                relay.call(op, *args)
        # (a claim of it for this host goes through, and the claim itself refuses it)
        answer = relay.call("script", "claim", child.id, f"{mine}/w", mine, child.instance_id, "a")
        assert answer[0][0].startswith(f"Refused: job {child.id} belongs to location {theirs}")
        # and requests that make no sense are answered (or dropped), and the relay goes on
        for op, *args in (("progress",), ("script",), ("script", "finish", "x"), ("hostdoc", 5)):
            with pytest.raises(redis.exceptions.ResponseError):
                relay.call(op, *args)
        for junk in ("not json", "[]", '{"id": "../x", "op": "script", "args": []}'):
            stolen.rpush(keys.relay(mine), junk)
            stolen.lpush(keys.bell, mine)
        stolen.lpush(keys.bell, "no such location!")
        # and nothing changed for that job: one message, still waiting, never claimed
        assert fleet.store.r.llen(queue) == 1
        assert child.instance_id in fleet.store.r.lindex(queue, 0)
        fresh = fleet.get(job.id)[0].info.children[0]
        assert fresh.state is JobState.NOT_STARTED and fresh.worker in (None, "")
        stolen.close()
        # while its own host's worker, with the same credential, runs its own jobs
        with LocalWorkers(hosts[mine], [[mine]], extra_args=INCLUDE, log_dir=logs):
            own = fleet.start("echo", "fine", locations=mine)
            assert fleet.wait(own, timeout=60)
            assert list(fleet.receive(own)) == ["fine"]
        assert fleet.get(job.id)[0].state is JobState.NOT_STARTED


def test_jobs_of_confined_workers_wait_for_the_relay_and_run_once_it_is_back(
    redis_url: str, logs: Path
) -> None:
    loc = uniq("cfr")
    with (
        confined_fleet(redis_url, logs, [loc]) as (_cfg, fleet, hosts, relay),
        LocalWorkers(hosts[loc], [[loc]], extra_args=INCLUDE, log_dir=logs),
    ):
        # given a confined worker whose relay then stops
        relay.stop()
        # when a job is started for it: it cannot be claimed (the claim is the relay's)
        job = fleet.start("echo", "late", locations=loc)
        time.sleep(3)
        assert job.refresh().state is JobState.NOT_STARTED
        # then once a relay runs again the job runs, once, and its output is whole
        relay.start()
        assert fleet.wait(job, timeout=90, force=True), job.refresh()
        assert job.refresh().state is JobState.COMPLETED
        assert list(fleet.receive(job)) == ["late"]


def test_the_relay_settles_the_jobs_of_a_confined_worker_that_died(
    redis_url: str, logs: Path
) -> None:
    loc = uniq("cfd")
    with confined_fleet(redis_url, logs, [loc]) as (cfg, fleet, hosts, _relay):
        # given a confined worker running a job, SIGKILLed (confined workers sweep nothing)
        workers = LocalWorkers(hosts[loc], [[loc]], extra_args=INCLUDE, log_dir=logs)
        workers.start()
        try:
            job = fleet.start("sleep", 60, locations=loc)
            eventually(lambda: job.refresh().state is JobState.RUNNING, timeout=20)
            for proc in workers.procs:
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            workers.stop()
        # then the relay's sweep fails it once the host's TTL and grace have passed
        bound = cfg.host_ttl + cfg.disconnect_grace + 3 * cfg.heartbeat_interval
        eventually(lambda: job.refresh().state is JobState.FAILED, timeout=bound + 10)
        assert "stopped answering" in (job.refresh().info.reason or "")


def test_a_confined_workers_beat_writes_its_liveness_and_its_document_only_when_it_changed(
    redis_url: str, logs: Path
) -> None:
    loc = uniq("cfb")
    with confined_fleet(redis_url, logs, [loc]) as (_cfg, fleet, hosts, _relay):
        r, keys = fleet.store.r, fleet.store.keys
        own = redis.Redis.from_url(hosts[loc].redis_url, decode_responses=True)
        relay = RelayClient(own, keys, loc)
        worker, key = f"{loc}/w1", keys.worker(f"{loc}/w1")
        doc = json.dumps({"locations": [loc], "actions": ["echo"]})
        # given a confined worker's first beat, through the relay: its document, and its
        # liveness beside its location's
        relay.call("script", "beat", "beat", worker, doc, 60000, loc)
        assert r.get(key) == doc
        assert r.zscore(keys.seen, f"@worker:{worker}") == r.zscore(keys.seen, loc)
        # when it beats again with the same document, what Redis holds is left alone (here a
        # marker put in its place): the beat's one write is its liveness
        r.set(key, "marker")
        relay.call("script", "beat", "beat", worker, doc, 60000, loc)
        assert r.get(key) == "marker"
        # a document that changed is written whole
        changed = json.dumps({"locations": [loc], "actions": ["echo", "nap"]})
        relay.call("script", "beat", "beat", worker, changed, 60000, loc)
        assert r.get(key) == changed
        # and so is one that a relay of 0.3 (taking its turn with this worker's beats) left
        # with an expiry, or that went: a live worker's document does not expire
        for lost in (lambda: r.pexpire(key, 3000), lambda: r.delete(key)):
            r.set(key, "marker")
            lost()
            relay.call("script", "beat", "beat", worker, changed, 60000, loc)
            assert r.get(key) == changed and r.pttl(key) == -1
        # and a clean leave takes both away
        relay.call("script", "beat", "leave", worker, "", 0, loc)
        assert not r.exists(key) and r.zscore(keys.seen, f"@worker:{worker}") is None
        own.close()


def test_the_relay_forgets_workers_killed_where_no_trusted_worker_runs(
    redis_url: str, logs: Path
) -> None:
    # given a fleet of confined workers alone, one of them killed long ago: its entry and its
    # document left behind (no trusted worker runs, whose beats would forget them)
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('cff')}:", **FAST)  # type: ignore[arg-type]
    loc = uniq("cff")
    worker = f"{loc}/killed"
    with Fleet(config=cfg) as fleet:
        r, keys = fleet.store.r, fleet.store.keys
        fleet.store.scripts("beat", "beat", worker, json.dumps({"locations": [loc]}), 3000, loc)
        r.zadd(keys.seen, {f"@worker:{worker}": 1.0})
        relay = RelayProcess(cfg, logs / f"relay-{cfg.prefix.strip(':')}.log")
        relay.start()
        try:
            # when the relay runs, its upkeep forgets them; the location stays known
            eventually(lambda: r.zscore(keys.seen, f"@worker:{worker}") is None, timeout=20)
            assert not r.exists(keys.worker(worker))
            assert r.zscore(keys.seen, loc) is not None
        finally:
            relay.stop()


def test_one_hosts_credential_cannot_choose_the_arguments_of_another_hosts_job(
    redis_url: str, logs: Path
) -> None:
    a, b = uniq("cfs"), uniq("cfv")
    with (
        confined_fleet(redis_url, logs, [a, b]) as (cfg, fleet, hosts, _relay),
        LocalWorkers(hosts[b], [[b]], extra_args=INCLUDE, log_dir=logs),
    ):
        # given host a's stolen credential publishing, as its own, a false list of what echo
        # takes (words kept as they are), so that a start's words bind its way
        keys = fleet.store.keys
        stolen = redis.Redis.from_url(hosts[a].redis_url, decode_responses=True)
        relay = RelayClient(stolen, keys, a)
        words = {"kind": "var_positional", "type": "str", "required": False, "default": None}
        fake = {"echo": [{"name": "values", **words}]}
        worker = f"{a}/evil"
        doc = json.dumps({"locations": [a], "signatures": fake})
        relay.call("script", "beat", "beat", worker, doc, 600_000, a)
        real = json.loads(fleet.store.r.hget(keys.hosts, b))
        relay.call("hostdoc", json.dumps({**real, "location": a, "worker": worker}))
        stolen.close()
        cli = make_cli(cfg)
        # when a console starts echo on both with an option
        res = cli("start", "--location", f"{a},{b}", "echo", "hello", "--warning", "careful")
        # then it is refused, in one line, and nothing was started
        assert res.returncode != 0
        assert "disagree on what 'echo' takes" in res.stderr and res.stderr.count("\n") == 1
        assert fleet.get() == []
        # while on the other host alone the words bind as its own worker says
        res = cli("start", "--location", b, "echo", "hello", "--warning", "careful")
        assert res.returncode == 0, res.stderr
        job = fleet.get()[0]
        assert (list(job.info.args), job.info.kwargs) == (["hello"], {"warning": "careful"})


@contextlib.contextmanager
def confined_pair(
    redis_url: str, logs: Path, a: str, b: str
) -> Iterator[tuple[Fleet, dict[str, Config]]]:
    """A confined fleet of two hosts, each with its own confined worker running."""
    with contextlib.ExitStack() as stack:
        _cfg, fleet, hosts, _relay = stack.enter_context(confined_fleet(redis_url, logs, [a, b]))
        for loc in (a, b):
            stack.enter_context(LocalWorkers(hosts[loc], [[loc]], extra_args=INCLUDE, log_dir=logs))
        yield fleet, hosts


def test_a_confined_credential_cannot_stop_other_jobs_nor_jump_its_own_turn(
    redis_url: str, logs: Path
) -> None:
    a, b = uniq("cfx"), uniq("cfy")
    with confined_pair(redis_url, logs, a, b) as (fleet, hosts):
        keys = fleet.store.keys
        stolen = redis.Redis.from_url(hosts[b].redis_url, decode_responses=True)
        relay = RelayClient(stolen, keys, b)
        # given a job running on host a, listened for by its worker
        job = fleet.start("sleep", 30, locations=a)
        eventually(lambda: job.refresh().state is JobState.RUNNING, timeout=20)
        time.sleep(0.5)
        # when host b's credential publishes a stop on its channel (anyone may publish there)
        child = job.info.children[0]
        assert stolen.publish(keys.events(child.instance_id), "stop") == 1
        # then a's worker reads the job's record, which asks no stop: it goes on
        time.sleep(2)
        assert job.refresh().state is JobState.RUNNING
        fleet.stop(job, timeout=20)
        assert job.refresh().state is JobState.STOPPED
        # given a job on both hosts, one at a time: a's child runs, b's waits its turn
        both = fleet.start("sleep", 30, locations=f"{a},{b}", throttle_limit=1)
        mine = next(c for c in both.info.children if c.location == b)
        eventually(lambda: both.refresh().state is JobState.RUNNING, timeout=20)
        # then b's credential can neither claim its waiting child nor settle it (which would
        # free a slot: a throttle or a rollout's canary jumped)
        answer = relay.call("script", "claim", mine.id, f"{b}/x", b, mine.instance_id, "a")
        assert (
            answer[0][0] == f"Refused: job {mine.id} waits for its turn (a throttle slot or a wave)"
        )
        with pytest.raises(redis.exceptions.NoPermissionError, match="waits for its turn"):
            relay.call("script", "finish", mine.id, "Completed", "")
        states = {c.location: c.state for c in fleet.get(both.id)[0].info.children}
        assert states == {a: JobState.RUNNING, b: JobState.NOT_STARTED}
        fleet.stop(both, timeout=20)
        # and a finish naming another InstanceId than its running child's (an old job's
        # worker, the Id given again since) settles nothing: the child runs on
        own = fleet.start("sleep", 30, locations=b)
        eventually(lambda: own.refresh().state is JobState.RUNNING, timeout=20)
        kid = own.info.children[0]
        stale = "0b8f5b9e-8e4b-4f7e-9d3c-2f1a2b3c4d5e"
        answer = relay.call("script", "finish", kid.id, "Failed", "old job", stale)
        assert answer == ["Missing"], answer
        assert own.refresh().state is JobState.RUNNING
        stolen.close()
        fleet.stop(own, timeout=20)


def test_what_one_hosts_credential_hands_the_relay_cannot_break_another_console(
    redis_url: str, logs: Path
) -> None:
    a = uniq("cfd")
    with confined_fleet(redis_url, logs, [a]) as (_cfg, fleet, hosts, _relay):
        keys = fleet.store.keys
        stolen = redis.Redis.from_url(hosts[a].redis_url, decode_responses=True)
        relay = RelayClient(stolen, keys, a)
        job = fleet.start("echo", "x", locations=a)  # waits NotStarted: no worker here
        child = job.info.children[0]
        refused = redis.exceptions.NoPermissionError
        # when a's credential hands the relay what no worker writes, each is refused in one line
        bad = {
            "a host record of wrong types": ("hostdoc", json.dumps({"location": a, "tags": "zz"})),
            "facts that are not an object": ("facts", "[1, 2]"),
            "a dead letter from another host's worker": ("deadletter", {"worker": "b/x"}),
            "a progress that is not one": ("progress", child.id, [1]),
            "a record that is not one": (
                "script",
                "append",
                child.instance_id,
                job.instance_id,
                "1000",
                "w",
                "1",
                "{}",
            ),
        }
        for what, request in bad.items():
            with pytest.raises(refused, match="the relay refused"):
                relay.call(*request)
            print(f"refused: {what}")
        # and what it may write is cut to what a console shows
        relay.call("deadletter", {"worker": f"{a}/x", "at": "soon", "body": "x" * 100_000})
        [letter] = [d for d in deadletters.read(fleet.store) if d.worker == f"{a}/x"]
        assert letter.location == a and abs(letter.at - time.time()) < 60  # the relay's time
        assert len(letter.body) <= 2003
        # then every console still lists the hosts, starts jobs and reads dead letters
        cli = make_cli(fleet.config)
        for verb in (["hosts"], ["hosts", "--facts"], ["deadletters"], ["deadletters", "--json"]):
            done = cli(*verb)
            assert done.returncode == 0, (verb, done.stderr)
        fleet.remove(job, force=True)
        stolen.close()


def test_one_hosts_costly_requests_do_not_hold_another_hosts_job(
    redis_url: str, logs: Path
) -> None:
    a, b = uniq("cfa"), uniq("cfb")
    with confined_pair(redis_url, logs, a, b) as (fleet, hosts):
        done = fleet.start("echo", "x", locations=a)
        assert fleet.wait([done], timeout=20)
        iid = done.info.children[0].instance_id
        stolen = redis.Redis.from_url(hosts[a].redis_url, decode_responses=True)
        # a request may not name more children than a turn can look at
        with pytest.raises(redis.exceptions.NoPermissionError, match="more than 1000"):
            RelayClient(stolen, fleet.store.keys, a).call("script", "resend", *[iid] * 1001)
        # given a's credential queueing many costly requests (each a look per child named)
        request = {"op": "script", "args": ["resend", *[iid] * 1000]}
        backlog = [json.dumps({"id": f"flood{i}", **request}) for i in range(60)]
        stolen.rpush(fleet.store.keys.relay(a), *backlog)
        stolen.lpush(fleet.store.keys.bell, a)
        # when b's job is started meanwhile
        job = fleet.start("echo", "served", locations=b)
        assert fleet.wait([job], timeout=60)
        # then it was served before a's backlog was (turns are by time, not by count): most
        # of a's requests have no answer yet (counted by answer: a's list also holds a's
        # worker's own requests, and the one in the relay's hands is on no list)
        answers = [fleet.store.keys.relay_answer(a, f"flood{i}") for i in range(len(backlog))]
        served = fleet.store.r.exists(*answers)
        left = stolen.llen(fleet.store.keys.relay(a))
        print(f"\na's requests served when b's job was done: {served} of {len(backlog)}")
        print(f"on a's list: {left}")
        assert served < len(backlog) // 2 and list(fleet.receive(job)) == ["served"]
        # and what waits is on a's list, not in the relay's hands (a turn's batch is cut to
        # what a turn serves): a's backlog is seen there, and is there for another relay
        assert left >= len(backlog) - served - 5
        stolen.close()


def test_one_request_carries_at_most_a_writes_worth_of_records_and_long_output_arrives(
    redis_url: str, logs: Path
) -> None:
    a = uniq("cfw")
    with (
        confined_fleet(redis_url, logs, [a]) as (_cfg, fleet, hosts, _relay),
        LocalWorkers(hosts[a], [[a]], extra_args=INCLUDE, log_dir=logs),
    ):
        # given a job whose records all come once its action has ended (echo writes nothing
        # before its finish): two and a half times what one write carries
        values = [f"v{i}" for i in range(2 * WRITE_BATCH + WRITE_BATCH // 2)]
        job = fleet.start("echo", *values, locations=a)
        # then it completes through the relay, and every value arrives once, in order: the
        # finish carried the last WRITE_BATCH, and the worker wrote the rest first
        assert fleet.wait([job], timeout=60)
        assert fleet.info(job).state is JobState.COMPLETED
        assert list(fleet.receive(job)) == values
        # and so do records that are more bytes than one request carries: 1,000 values of 70
        # kB returned (70 MB), which the finish carried whole, over the relay's 64 MiB
        big = fleet.start("big_values", 1000, 70_000, locations=a)
        assert fleet.wait([big], timeout=120)
        assert fleet.info(big).state is JobState.COMPLETED, fleet.info(big).reason
        got = list(fleet.receive(big))
        assert [v[:6] for v in got] == [f"{i:06d}" for i in range(1000)]
        assert {len(v) for v in got} == {70_000}
        fleet.remove(big)
        # and a failure's message of 100 kB: its Reason is cut, its error record whole
        failed = fleet.start("fail_with", "e" * 100_000, locations=a)
        assert fleet.wait([failed], timeout=60)
        info = fleet.info(failed)
        assert info.state is JobState.FAILED and info.reason == "e" * 2000 + "..."
        assert fleet.receive(failed).errors == ["e" * 100_000]
        # and the host's credential cannot hand the relay more records in one request (it
        # held the relay, and every other host's turn, for as long as they took)
        child = job.info.children[0]
        record = json.dumps({"s": "output", "d": "x", "t": time.time()})
        args: list[object] = [child.instance_id, job.info.instance_id, 2**30, record]
        for seq in range(WRITE_BATCH + 1):
            args += [10**6 + seq, record]
        stolen = redis.Redis.from_url(hosts[a].redis_url, decode_responses=True)
        relay = RelayClient(stolen, fleet.store.keys, a)
        with pytest.raises(redis.exceptions.NoPermissionError, match="more than 1000 records"):
            relay.call("script", "append", *args)
        # nor more arguments than any other script takes (12 M of them, in a claim the script
        # would ignore, held the relay ~26 s)
        claim = [child.id, f"{a}/w", a, child.instance_id, "attempt"]
        with pytest.raises(redis.exceptions.NoPermissionError, match="6 arguments to claim"):
            relay.call("script", "claim", *claim, "1")
        # and a stop it asks for its own job (what a worker does when Celery ends a task) has
        # its reason cut as a finish's is: it becomes the job's Reason
        slow = fleet.start("sleep", 60, locations=a)
        eventually(lambda: fleet.info(slow).state is JobState.RUNNING, timeout=30)
        relay.call("script", "stop", slow.info.children[0].id, "s" * 100_000)
        assert fleet.wait([slow], timeout=30)
        assert fleet.info(slow).reason == "s" * 2000 + "..."
        # nor arguments that are not text or numbers (a list of 32 M zeros took seconds to
        # make into text), in a script or as a host record or facts
        with pytest.raises(redis.exceptions.NoPermissionError, match="not text or a number"):
            relay.call("script", "claim", child.id, [0] * 1000)
        for op in ("hostdoc", "facts"):
            with pytest.raises(redis.exceptions.NoPermissionError, match="not a JSON text"):
                relay.call(op, {"location": a})
        stolen.close()


def test_one_hosts_dead_letters_cannot_push_out_another_hosts(redis_url: str, logs: Path) -> None:
    a, b = uniq("cfd"), uniq("cfe")
    with confined_fleet(redis_url, logs, [a, b]) as (cfg, fleet, hosts, _relay):
        keys, limit, kept = fleet.store.keys, deadletters.LIMIT, deadletters.PER_HOST
        # given a dead letter from b's worker, and one from a trusted worker
        own = redis.Redis.from_url(hosts[b].redis_url, decode_responses=True)
        letter = {"worker": f"{b}/w", "reason": "b's own", "at": time.time()}
        RelayClient(own, keys, b).call("deadletter", letter)
        own.close()
        trusted = deadletters.DeadLetter(time.time(), "q", "t1", "trusted one", worker="t1/w")
        deadletters.push(fleet.store, trusted)
        # when a's stolen credential hands the relay twice as many as the fleet's list keeps
        stolen = redis.Redis.from_url(hosts[a].redis_url, decode_responses=True)
        flood = [
            json.dumps(
                {
                    "id": f"dl{i}",
                    "op": "deadletter",
                    "args": [{"worker": f"{a}/w", "reason": f"flood {i}", "at": time.time()}],
                }
            )
            for i in range(2 * limit)
        ]
        stolen.rpush(keys.relay(a), *flood)
        stolen.lpush(keys.bell, a)
        stolen.close()
        eventually(lambda: deadletters.dropped(fleet.store).get(a) == 2 * limit - kept, timeout=60)
        # (and a letter it dates in the year 9999, with a worker name of a megabyte, is dated
        # by the relay and cut: it neither lists first nor costs Redis a megabyte)
        relay = RelayClient(redis.Redis.from_url(hosts[a].redis_url), keys, a)
        forged = {"worker": f"{a}/" + "w" * 2**20, "reason": "forged", "at": 253402300000}
        relay.call("deadletter", forged)
        [forged_kept] = [d for d in deadletters.read(fleet.store) if d.reason == "forged"]
        assert forged_kept.at < time.time() + 60 and len(forged_kept.worker) <= 200
        assert deadletters.dropped(fleet.store)[a] == 2 * limit - kept + 1
        # then b's letter and the trusted worker's are still kept, and of a's its newest
        letters = deadletters.read(fleet.store)
        assert [d.reason for d in letters if d.location == b] == ["b's own"]
        assert [d.reason for d in letters if d.location == "t1"] == ["trusted one"]
        flooded = [d.reason for d in letters if d.location == a]
        newest = [f"flood {i}" for i in reversed(range(2 * limit - kept + 1, 2 * limit))]
        assert flooded == ["forged", *newest]
        # and every console says so, after the list, on stderr (--json's list stays a list)
        cli = make_cli(cfg)
        shown = cli("deadletters", "--json")
        assert shown.returncode == 0 and len(json.loads(shown.stdout)) == kept + 2
        assert shown.stderr == (
            f"fleetjobs: {2 * limit - kept + 1} older dead letter(s) from {a} were pushed out "
            f"by its newer ones (a confined host keeps its newest {kept})\n"
        )
        # and --clear prints every letter it forgets (whatever --limit), the counts with them
        cleared = cli("deadletters", "--clear", "--json", "--limit", "1")
        assert cleared.returncode == 0 and len(json.loads(cleared.stdout)) == kept + 2
        assert cleared.stderr.endswith(f"removed {kept + 2} dead letter(s)\n")
        assert deadletters.dropped(fleet.store) == {} and deadletters.read(fleet.store) == []


def test_no_relay_is_said_and_the_request_taken_back_whatever_the_socket_timeout(
    redis_url: str,
) -> None:
    # a URL's ?socket_timeout= shorter than the wait for the relay's answer: the read timed
    # out first ("Timeout reading from socket", taken for Redis away) and the request stayed
    # queued, to run whenever a relay came: a claim made for nobody
    keys = Keys(f"{uniq('st')}:")
    client = redis.Redis.from_url(f"{redis_url}?socket_timeout=0.3", decode_responses=True)
    relay = RelayClient(client, keys, "nohost", wait=1.0)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match="the relay did not answer"):
        relay.call("beat", "w1")
    assert time.monotonic() - started >= 1.0
    assert client.llen(keys.relay("nohost")) == 0  # taken back: it never runs later
    client.close()
