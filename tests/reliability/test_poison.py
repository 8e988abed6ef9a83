"""A poisoned message never stops a worker: it is acknowledged, logged once and dead-lettered."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
from kombu import Connection, Exchange, Producer

from fleetjobs import Fleet, JobState, deadletters
from fleetjobs.celery_app import make_celery
from fleetjobs.config import Config
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers
from fleetjobs.routing import TASK_NAME, queue_for
from fleetjobs.store import Store

from ..conftest import FAST, eventually, make_cli, nested, uniq
from .support import INCLUDE, fleet_with, own_config

# JSON that kombu's reader turns into a value of the type it names ({"__type__": ...,
# "__value__": ...}): a type it has no decoder for, a value its decoder cannot read
TYPED = (
    ("a value of a type kombu does not know", {"__type__": "nope", "__value__": 1}),
    ("a datetime that is not one", {"__type__": "datetime", "__value__": "notadate"}),
)


def poison(cfg: Any, location: str) -> list[str]:
    """Publish one of each kind of bad message onto ``location``'s queue; returns their kinds."""
    queue = queue_for(location)
    job = {"task": TASK_NAME, "id": uniq("forged")}
    deep_job = {**job, "x": nested(480)}
    route = {"routing_key": queue, "exchange": ""}
    sent = []
    options = {"global_keyprefix": cfg.prefix}
    with Connection(cfg.broker_url, transport_options=options) as conn:
        p = Producer(conn)

        def send(kind: str, body: Any, **kw: Any) -> None:
            p.publish(body, **{"serializer": "json", "headers": job, **route, **kw})
            sent.append(kind)

        send("an object, not [args, kwargs, embed]", {"hello": "world"})
        send("one list", [[1]])
        send("args not an int", [["x"], {}, {}])
        # well formed, for an Id no start ever gave: only logged, it was kept nowhere
        send("a job that was never started", [[10**9], {}, {}])
        send("unknown keyword", [[1], {"force": True}, {}])
        raw = {"content_type": "application/json", "content_encoding": "utf-8"}
        send("invalid JSON", b"{not json", serializer=None, **raw)
        pickled = {"content_type": "application/x-python-serialize", "content_encoding": "binary"}
        send("pickle", b"\x80\x04K\x01.", serializer=None, **pickled)
        send("no headers", [[1], {}, {}], headers={})
        send("no task id", [[1], {}, {}], headers={"task": TASK_NAME})
        send("another task", [[1], {}, {}], headers={"task": "evil.task", "id": "x"})
        # headers Celery reads after the guard: its timer raised on the first inside the
        # event loop (the worker died, and again on every restart), killed the pool process
        # on the second, logged a traceback and dropped the third
        send("a time limit not a number", [[1], {}, {}], headers={**job, "timelimit": "zz"})
        send("a negative time limit", [[1], {}, {}], headers={**job, "timelimit": [-1, -1]})
        send("an eta not a time", [[1], {}, {}], headers={**job, "eta": "notadate"})
        # a tiny time limit killed the pool process (its slot gone until Celery made another)
        send("a tiny time limit", [[1], {}, {}], headers={**job, "timelimit": [None, 1e-300]})
        # stamps Celery walks when it looks whether the message was revoked: the first two
        # kept a pool slot for good (concurrency-many stopped the host), or, with the pool
        # busy, ended the worker
        stamped = {**job, "stamped_headers": 5, "stamps": "zz"}
        send("stamped headers that are a number", [[1], {}, {}], headers=stamped)
        stamped = {**job, "stamped_headers": [[1]], "stamps": {}}
        send("stamped headers holding a list", [[1], {}, {}], headers=stamped)
        send("stamps not an object", [[1], {}, {}], headers={**job, "stamps": "zz"})
        # an eta in the future: Celery held it reserved in the worker's memory, never run nor
        # refused, and a lost Redis connection, restoring it, ended the worker
        send("an eta", [[1], {}, {}], headers={**job, "eta": "2100-01-01T00:00:00+00:00"})
        for kind, typed in TYPED:
            send(f"a body holding {kind}", [[typed], {}, {}])
        send("a body nested too deep to read", b"[" * 100_000, serializer=None, **raw)
        # read, but deeper than Celery pickles for the pool: it held a pool slot for good
        # (the guard refused it as 'Celery could not take it'), and concurrency-many of them
        # stopped the host
        for i in range(3):
            send(f"a job's header nested 480 deep ({i + 1})", [[1], {}, {}], headers=deep_job)
        send("a spec nested 480 deep", [[1], {"spec": {"args": nested(480)}}, {}])
        # kombu decompresses before any guard: an unknown method was acknowledged and
        # dropped with a traceback and no dead letter
        send("an unknown compression", [[1], {}, {}], headers={**job, "compression": "nope"})
    client = redis.Redis.from_url(cfg.redis_url)
    client.lpush(f"{cfg.prefix}{queue}", b"not even an envelope")
    sent.append("an envelope that is not JSON")
    client.lpush(f"{cfg.prefix}{queue}", b"[" * 100_000)
    sent.append("an envelope nested too deep to read")
    # a body encoding kombu has no codec for: it raised out of the event loop (the worker
    # died, and the message was gone with it)
    envelope = {
        "body": "W1sxXSwge30sIHt9XQ==",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": job,
        "properties": {
            "delivery_tag": uniq("tag"),
            "body_encoding": "rot13",
            "delivery_info": route,
        },
    }
    client.lpush(f"{cfg.prefix}{queue}", json.dumps(envelope))
    sent.append("an unknown body encoding")
    good = {**envelope["properties"], "body_encoding": "base64"}
    for kind, typed in TYPED:
        bad = {**envelope, "properties": {**good, "x": typed, "delivery_tag": uniq("tag")}}
        client.lpush(f"{cfg.prefix}{queue}", json.dumps(bad))
        sent.append(f"an envelope holding {kind}")
    # what kombu keys its books by: anything but text ended the worker, the message lost
    when = {"__type__": "datetime", "__value__": "2026-11-30T10:00:00"}  # read as a datetime
    for kind, tag in (("a list", [1]), ("null", None), ("a datetime", when)):
        bad = {**envelope, "properties": {**good, "delivery_tag": tag}}
        client.lpush(f"{cfg.prefix}{queue}", json.dumps(bad))
        sent.append(f"a delivery tag that is {kind}")
    # read by the guard, but deeper than kombu writes back (its reserved messages): the
    # worker ended
    bad = {**envelope, "properties": {**good, "x": "X", "delivery_tag": uniq("tag")}}
    text = json.dumps(bad).replace('"X"', "[" * 965 + "]" * 965)  # past json.dumps' depth
    client.lpush(f"{cfg.prefix}{queue}", text)
    sent.append("an envelope nested 965 deep")
    client.lpush(f"{cfg.prefix}{queue}", b'{"properties": {"delivery_tag": 1' + b"0" * 5000 + b"}}")
    sent.append("an integer of more digits than Python reads")
    client.close()
    return sent


def test_every_kind_of_poisoned_message_is_dead_lettered_and_the_worker_keeps_serving(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    loc = uniq("poisoned")
    with fleet_with(cfg, [loc], tmp_path) as (fleet, workers):
        # when every kind of bad message lands on the host's queue
        started = time.monotonic()
        kinds = poison(cfg, loc)
        registry = Store.connect(cfg)
        letters = eventually(
            lambda: len(got := deadletters.read(registry)) >= len(kinds) and got, timeout=20
        )
        took = time.monotonic() - started
        # then each is kept once, with its queue and a reason, and the worker still serves
        assert isinstance(letters, list)
        print(f"\npoisoned messages: {len(kinds)}, dead letters: {len(letters)}, in {took:.2f} s")
        for letter in letters:
            print(f"  {letter.reason}")
        assert len(letters) == len(kinds), [d.reason for d in letters]
        assert {d.location for d in letters} == {loc}
        assert all(d.reason and d.worker for d in letters)
        assert any("envelope is not JSON" in d.reason for d in letters)
        assert any("not Celery's [args, kwargs, embed]" in d.reason for d in letters)
        assert any("time limit header is 'zz'" in d.reason for d in letters)
        assert any("not positive seconds" in d.reason for d in letters)
        assert any("[None, 1e-300]: fleetjobs sends none" in d.reason for d in letters)
        assert sum("fleetjobs stamps nothing" in d.reason for d in letters) == 3
        assert any("eta header asks to run it later ('notadate')" in d.reason for d in letters)
        assert any("later ('2100-01-01T00:00:00+00:00')" in d.reason for d in letters)
        assert any("body encoding is 'rot13'" in d.reason for d in letters)
        assert any("envelope is not JSON: nested too deep" in d.reason for d in letters)
        assert any("envelope cannot be read: ValueError" in d.reason for d in letters)
        assert sum("delivery tag is" in d.reason for d in letters) == 3
        assert sum("nested more than 100 levels deep" in d.reason for d in letters) == 5
        assert any("it is compressed ('nope')" in d.reason for d in letters)
        assert any("no job 1000000000 was ever started" in d.reason for d in letters)
        assert workers.procs[0].poll() is None, "the worker exited"
        log = (tmp_path / "worker-0.log").read_text()
        assert log.count("refused a message on ") == len(kinds), log[-3000:]
        assert "Unrecoverable error" not in log and "Traceback" not in log, log[-3000:]
        after = fleet.start("echo", "still serving", locations=loc)
        assert fleet.wait([after], timeout=20, force=True) and after.state is JobState.COMPLETED
        assert list(fleet.receive(after)) == ["still serving"]
        # and nothing of them is left to be redelivered
        client = redis.Redis.from_url(cfg.redis_url)
        assert client.llen(f"{cfg.prefix}{queue_for(loc)}") == 0
        assert client.hlen(f"{cfg.prefix}unacked") == 0
        client.close()
        # and a worker restarted on the same queue does not meet them again
        workers.stop()
        workers.start()
        again = fleet.start("echo", "after a restart", locations=loc)
        assert fleet.wait([again], timeout=20, force=True)
        assert list(fleet.receive(again)) == ["after a restart"]
        assert len(deadletters.read(registry)) == len(kinds)
        registry.close()


def two_hosts(cfg: Config, name: str, logs: Path) -> tuple[list[str], LocalWorkers]:
    """Two hosts, each its own worker: what every trusted worker hears, two hear."""
    loc = uniq(name)
    locs = [loc, f"{loc}-2"]
    return locs, LocalWorkers(cfg, [[x] for x in locs], extra_args=INCLUDE, log_dir=logs)


def test_a_broadcast_no_worker_can_read_is_dead_lettered_and_the_workers_go_on(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    locs, two = two_hosts(cfg, "broadcast", tmp_path)
    with two as workers, Fleet(config=cfg) as fleet:
        client = redis.Redis.from_url(cfg.redis_url)
        db = client.connection_pool.connection_kwargs.get("db", 0)
        channel = f"{cfg.prefix}/{db}.celery.pidbox"  # Celery's remote control, every worker's
        listening = lambda: sum(int(c.get("psub", 0)) > 0 for c in client.client_list())  # noqa: E731
        eventually(lambda: listening() >= 2, timeout=20)  # each worker's PSUBSCRIBE to it
        # when anyone who may PUBLISH sends what kombu cannot read or Celery cannot handle
        envelope = {
            "body": "e30=",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {"delivery_tag": "t", "body_encoding": "rot13", "delivery_info": {}},
        }
        for bad in (b"[]", b'"a string"', b"[" * 100_000, json.dumps(envelope).encode()):
            client.publish(channel, bad)
        # then each is kept as a dead letter, once however many workers refused it, and the
        # workers go on
        registry = Store.connect(cfg)
        letters = eventually(lambda: len(got := deadletters.read(registry)) >= 4 and got)
        time.sleep(1.0)  # the second worker's refusals too
        letters = deadletters.read(registry)
        assert isinstance(letters, list) and len(letters) == 4, letters
        assert all("broadcast" in d.queue and d.worker for d in letters)
        assert any("body encoding is 'rot13'" in d.reason for d in letters)
        assert any("could not be read: RecursionError" in d.reason for d in letters)
        assert all(p.poll() is None for p in workers.procs), "a worker exited"
        after = fleet.start("echo", "still serving", locations=locs)
        assert (
            fleet.wait([after], timeout=20) and list(fleet.receive(after)) == ["still serving"] * 2
        )
        for i in (0, 1):
            log = (tmp_path / f"worker-{i}.log").read_text()
            assert "Unrecoverable error" not in log and log.count("(broadcast)") == 4, log[-3000:]
        registry.close()
        client.close()


def test_a_control_command_celery_cannot_carry_out_is_a_dead_letter_and_no_deafness(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    _, two = two_hosts(cfg, "control", tmp_path)
    app = make_celery(cfg)
    with two as workers:
        eventually(lambda: len(app.control.ping(timeout=0.5)) == 2, timeout=30)
        # when anyone who may PUBLISH on the control channel sends commands that raise where
        # Celery runs them: it logged a traceback and listened again, deaf meanwhile
        pidbox = Exchange("celery.pidbox", type="fanout", durable=False)
        with app.connection_for_write() as c:  # the fleet's transport options: its channel
            bodies: list[dict[str, Any]] = [
                {"method": "ping", "arguments": [i], "destination": None}  # not an object
                for i in range(3)
            ]
            # a reply_to kombu reads outside its own guard: a KeyError, which kombu counts
            # among connection errors (taken for one, the listener was started again)
            bodies.append({"method": "ping", "arguments": {}, "reply_to": {"x": 1}})
            for body in bodies:
                Producer(c).publish(
                    body, exchange=pidbox, routing_key="", serializer="json", declare=[pidbox]
                )
        # then both workers still answer at once, and each command is one dead letter
        assert len(app.control.ping(timeout=2)) == 2
        registry = Store.connect(cfg)
        letters = eventually(lambda: len(got := deadletters.read(registry)) >= 4 and got)
        time.sleep(1.0)  # the second worker's refusals too: kept once
        letters = deadletters.read(registry)
        assert isinstance(letters, list) and len(letters) == 4, [d.reason for d in letters]
        reasons = [d.reason for d in letters]
        assert sum("control command 'ping' failed: AttributeError" in r for r in reasons) == 3
        assert sum("control command 'ping' failed: KeyError" in r for r in reasons) == 1
        assert all(d.queue == "celery.pidbox (broadcast)" for d in letters)
        assert all(p.poll() is None for p in workers.procs)
        for i in (0, 1):
            log = (tmp_path / f"worker-{i}.log").read_text()
            assert "Traceback" not in log and "Control command error" not in log, log[-3000:]
        registry.close()


def test_deadletters_verb_lists_and_clears(redis_url: str, logs: Path) -> None:
    cfg = own_config(redis_url)
    loc = uniq("poisoned")
    cli = make_cli(cfg)
    with fleet_with(cfg, [loc], logs):
        kinds = poison(cfg, loc)[:3]
        registry = Store.connect(cfg)
        eventually(lambda: len(deadletters.read(registry)) >= 3, timeout=20)
        registry.close()
    shown = cli("deadletters", "--json")
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    assert len(docs) >= len(kinds)
    assert {"at", "queue", "location", "reason", "worker", "body"} <= set(docs[0])
    assert docs[0]["at"].endswith("+00:00")  # ISO 8601, UTC, as every --json's times
    table = cli("deadletters")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == [
        "When",
        "Location",
        "Worker",
    ]
    cleared = cli("deadletters", "--clear", "--json")
    assert cleared.returncode == 0 and "removed" in cleared.stderr
    assert json.loads(cli("deadletters", "--json").stdout) == []


def test_the_dead_letter_list_keeps_the_newest_thousand(redis_url: str) -> None:
    registry = Store.connect(own_config(redis_url))
    try:
        for i in range(deadletters.LIMIT + 5):
            letter = deadletters.DeadLetter(float(i), "fleetjobs.loc.x", "x", f"bad {i}")
            deadletters.push(registry, letter)
        kept = deadletters.read(registry)
        print(f"\npushed {deadletters.LIMIT + 5}, kept {len(kept)}")
        assert len(kept) == deadletters.LIMIT
        assert kept[0].reason == f"bad {deadletters.LIMIT + 4}" and kept[-1].reason == "bad 5"
        assert deadletters.clear(registry) == deadletters.LIMIT
        assert deadletters.read(registry) == []
    finally:
        registry.close()


def test_a_broadcast_refused_while_redis_takes_no_writes_ends_no_worker(tmp_path: Path) -> None:
    # given a worker on a Redis of its own that is about to refuse every write (full)
    with EmbeddedRedis() as server:
        cfg = Config(redis_url=server.url, prefix="full:", **FAST)  # type: ignore[arg-type]
        loc = uniq("full")
        with LocalWorkers(cfg, [[loc]], extra_args=INCLUDE, log_dir=tmp_path) as workers:
            client = redis.Redis.from_url(cfg.redis_url)
            listening = lambda: sum(int(c.get("psub", 0)) > 0 for c in client.client_list())  # noqa: E731
            eventually(lambda: listening() >= 1, timeout=20)
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", 1)
            # when a broadcast it must refuse comes, and the dead letter cannot be written
            client.publish(f"{cfg.prefix}/0.celery.pidbox", b"[]")
            log = tmp_path / "worker-0.log"
            eventually(lambda: "could not keep it" in log.read_text(), timeout=20)
            client.config_set("maxmemory", 0)
            # then it said so and goes on serving
            assert workers.procs[0].poll() is None, log.read_text()[-3000:]
            with Fleet(config=cfg) as fleet:
                job = fleet.start("echo", "still serving", locations=loc)
                assert fleet.wait([job], timeout=20) and list(fleet.receive(job)) == [
                    "still serving"
                ]
            client.close()


def test_stamps_celery_would_walk_neither_end_a_busy_worker_nor_keep_its_slot(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    loc = uniq("stamped")
    with fleet_with(cfg, [loc], tmp_path, concurrency=1) as (fleet, workers):
        busy = fleet.start("sleep", 3, "slept", locations=loc)
        eventually(lambda: busy.state is JobState.RUNNING, timeout=15)
        # while its one pool process is busy: the message Celery reserved and then raised on
        # from its event loop (the worker ended), and as many as its slots after it
        route = {"routing_key": queue_for(loc), "exchange": ""}
        with Connection(cfg.broker_url, transport_options={"global_keyprefix": cfg.prefix}) as c:
            for stamps in (5, [[1]]):
                headers = {"task": TASK_NAME, "id": uniq("forged"), "stamped_headers": stamps}
                Producer(c).publish([[1], {}, {}], serializer="json", headers=headers, **route)
        registry = Store.connect(cfg)
        eventually(lambda: len(deadletters.read(registry)) == 2, timeout=20)
        registry.close()
        assert fleet.wait([busy], timeout=20) and list(fleet.receive(busy)) == ["slept"]
        after = fleet.start("echo", "still serving", locations=loc)
        assert fleet.wait([after], timeout=20) and list(fleet.receive(after)) == ["still serving"]
        assert workers.procs[0].poll() is None, "the worker exited"
        log = (tmp_path / "worker-0.log").read_text()
        assert "Unrecoverable error" not in log and "Traceback" not in log, log[-3000:]
