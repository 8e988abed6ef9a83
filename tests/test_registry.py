"""The registry's scripts on their own: what makes a job at-most-once and a record exactly-once."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from fleetjobs import JobState, refs
from fleetjobs.errors import JobNotFoundError
from fleetjobs.hosts import Hosts
from fleetjobs.lifecycle import JobSpec
from fleetjobs.model import HostInfo
from fleetjobs.placement import needs_iid_index
from fleetjobs.records import Pending

from .conftest import Layers


def test_a_child_is_claimed_by_one_worker_only(layers: Layers) -> None:
    _, _, [child] = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    assert layers.lifecycle.claim(child.id, "worker-a")[0] == "Running"
    # the same worker asking again (its first answer was lost on the network) may go on
    assert layers.lifecycle.claim(child.id, "worker-a")[0] == "Running"
    # a redelivered message reaching another worker must not run the job a second time
    assert layers.lifecycle.claim(child.id, "worker-b")[0] == "Taken"
    layers.lifecycle.finish(child.id, JobState.COMPLETED)
    assert layers.lifecycle.claim(child.id, "worker-a")[0] == "Completed"


def test_a_retried_record_is_written_once(layers: Layers) -> None:
    _, piid, [child] = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    now = time.time()
    for seq, value in ((1, "a"), (2, "b"), (2, "b"), (1, "a"), (3, "c")):
        assert layers.records.append(child.instance_id, piid, [Pending("output", value, seq, now)])
    [info] = layers.registry.load([child.id])
    assert [r.data for r in layers.records.take([info])] == ["a", "b", "c"]


def test_records_for_a_removed_job_are_refused(layers: Layers) -> None:
    pid, piid, [child] = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    layers.lifecycle.remove(layers.registry.load([pid]))
    late = [Pending("output", "late", 1, time.time())]
    assert not layers.records.append(child.instance_id, piid, late)
    assert layers.store.r.exists(layers.store.keys.out(child.instance_id)) == 0


def test_a_parent_of_many_children_is_settled_by_counts(layers: Layers) -> None:
    pid, _, children = layers.lifecycle.create(
        JobSpec("echo", [], {}, "echo", [f"h{i}" for i in range(500)])
    )
    for child in children:
        layers.lifecycle.claim(child.id, "w")
    for i, child in enumerate(children):
        state = JobState.FAILED if i % 100 == 0 else JobState.COMPLETED
        layers.lifecycle.finish(child.id, state, f"broke {i}")
    [parent] = layers.registry.load([pid])
    assert parent.state is JobState.FAILED
    assert (
        parent.reason == "5 of 500 child jobs failed: h0: broke 0; h100: broke 100; h200: broke 200"
    )


@pytest.mark.parametrize("made_before", [False, True])
def test_a_parent_is_not_started_until_a_child_moves(layers: Layers, made_before: bool) -> None:
    spec = JobSpec("echo", [], {}, "echo", ["h1", "h2", "h3"], throttle_limit=1)
    pid, _, children = layers.lifecycle.create(spec)
    key = layers.keys.job(pid)
    if made_before:  # as a parent was made when NotStarted children were counted
        layers.store.r.hset(key, "c:NotStarted", 3)

    def parent() -> JobState:
        if made_before:  # kept true for an older version reading it during an upgrade
            waiting = sum(c.state is JobState.NOT_STARTED for c in layers.registry.load(ids))
            assert layers.store.r.hget(key, "c:NotStarted") == str(waiting)
        return layers.registry.load([pid], children=False)[0].state

    ids = [c.id for c in children]

    # the NotStarted count is n less the others': no field of its own to keep
    assert made_before or not layers.store.r.hexists(key, "c:NotStarted")
    assert parent() is JobState.NOT_STARTED
    layers.lifecycle.claim(children[0].id, "w")
    assert parent() is JobState.RUNNING
    layers.lifecycle.finish(children[0].id, JobState.COMPLETED)
    # one done, two still to start (throttled): in progress, as PowerShell counts it
    assert parent() is JobState.RUNNING
    for child in children[1:]:
        layers.lifecycle.claim(child.id, "w")
        layers.lifecycle.finish(child.id, JobState.COMPLETED)
    assert parent() is JobState.COMPLETED


def test_a_redis_that_is_down_is_one_clear_error_for_every_read_and_write() -> None:
    # given a fleet whose Redis is not there (a free port nobody listens on)
    from fleetjobs import Config, Fleet, RedisUnavailableError
    from fleetjobs.embedded import free_port

    fleet = Fleet(config=Config(redis_url=f"redis://:pw@127.0.0.1:{free_port()}/0"))
    calls = {
        "get": lambda: fleet.get(),
        "iterate the ids": lambda: list(fleet.registry.iter_top_ids()),  # a generator
        "wait": lambda: fleet.wait(1, timeout=0),
        "hosts": lambda: fleet.hosts(),
        "sweep": lambda: fleet.lifecycle.sweep(),
        "take": lambda: fleet.records.take(fleet.registry.load([1])),
    }
    for what, call in calls.items():
        # then each says so in one line that names the URL without its password
        with pytest.raises(RedisUnavailableError, match=r"cannot reach Redis at redis://:\*\*\*@"):
            call()
        print(what, "-> RedisUnavailableError")
    fleet.close()


def test_the_host_list_takes_a_fleet_of_any_size(layers: Layers) -> None:
    # given one worker serving 10,000 locations (more than a Lua unpack takes at once)
    hosts = Hosts(layers.store)
    names = [f"h{i:05d}" for i in range(10_000)]
    hosts.heartbeat("w1", {"actions": ["echo"]}, names)
    # then a start naming them all finds each one online, as does the whole list
    named = hosts.list(names)
    assert [h.location for h in named] == names and all(h.online for h in named)
    assert len(hosts.list()) == 10_000


def test_a_default_name_is_found_by_its_id_not_kept_in_a_name_index(layers: Layers) -> None:
    def start(name: str | None = None, hosts: tuple[str, ...] = ("h1",)) -> int:
        spec = JobSpec("echo", [], {}, "echo", list(hosts), name=name)
        return layers.lifecycle.create(spec)[0]

    reg, keys = layers.registry, layers.keys
    a = start(hosts=("h1", "h2"))  # Job<a>, children a+1 and a+2
    b = start(name=f"Job{a}")  # a name given that is another job's default name
    c = start(name="nightly")
    d = start()
    # a default name costs no key of its own; a name given is indexed as before
    assert layers.store.r.smembers(keys.names(f"Job{a}")) == {str(b)}  # b's name, not a's
    assert not layers.store.r.exists(keys.names(f"Job{d}"))
    assert layers.store.r.smembers(keys.names("nightly")) == {str(c)}
    # and every way of naming finds the same jobs as when every name was indexed
    assert reg.ids_named(f"Job{a}") == [a, b]
    assert reg.ids_named(f"Job{d}") == [d]
    assert reg.resolve(f"Job{d}") == [d]
    assert reg.ids_named("nightly") == [c]
    assert reg.ids_named("Job*") == [a, b, d]
    assert reg.ids_named(f"Job{d}*") == [d]
    assert reg.ids_named("*ly") == [c]
    # a child goes by its parent's name, not by a default name of its own Id
    assert reg.ids_named(f"Job{a + 1}") == []
    assert reg.ids_named(f"Job0{d}") == []
    with pytest.raises(JobNotFoundError, match=f"no job named 'Job{a + 1}'"):
        reg.resolve(f"Job{a + 1}")
    # a job made when default names were indexed (and InstanceIds carried no Id) is found
    # once, not twice
    legacy = str(uuid.uuid4())
    layers.store.r.hset(keys.job(d), "iid", legacy)
    layers.store.r.hset(keys.iids, legacy, d)
    layers.store.r.sadd(keys.names(f"Job{d}"), d)
    assert reg.ids_named(f"Job{d}") == [d] and reg.ids_named("Job*") == [a, b, d]
    # removing a job takes it out of every lookup
    layers.lifecycle.remove(reg.load([a, d]))
    assert reg.ids_named(f"Job{a}") == [b]
    assert reg.ids_named("Job*") == [b]
    with pytest.raises(JobNotFoundError):
        reg.resolve(f"Job{d}")
    assert not layers.store.r.exists(keys.names(f"Job{d}"))  # its old entry went with it


def test_an_instance_id_finds_its_job_with_no_index_to_keep(layers: Layers) -> None:
    reg, r, keys = layers.registry, layers.store.r, layers.keys
    pid, piid, [child] = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    for job_id, iid in ((pid, piid), (child.id, child.instance_id)):
        u = uuid.UUID(iid)
        assert u.version == 8 and str(u) == iid  # a UUID as any other, RFC 9562's layout
        assert reg.resolve(iid) == [job_id] and reg.resolve(iid.upper()) == [job_id]
    assert r.hlen(keys.iids) == 0  # no index entry: some 100 B per InstanceId kept out
    # the scripts find the child by its InstanceId too: its records are written
    now = time.time()
    assert layers.records.append(child.instance_id, piid, [Pending("output", "a", 1, now)])
    # an InstanceId written to carry a job's Id is not that job's: found nowhere
    forged = f"00000000-0000-8000-8000-{pid:012x}"
    with pytest.raises(JobNotFoundError, match="no job with InstanceId"):
        reg.resolve(forged)
    assert not layers.records.append(forged, piid, [Pending("output", "b", 1, now)])
    # a job made before (a version 4 InstanceId, in the index) is found as it was
    old_pid, _, [old_child] = layers.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"]))
    old_iid = str(uuid.uuid4())
    r.hset(keys.job(old_child.id), "iid", old_iid)
    r.hset(keys.iids, old_iid, old_child.id)
    assert reg.resolve(old_iid) == [old_child.id]
    assert layers.records.append(old_iid, piid, [Pending("output", "c", 1, now)])
    layers.lifecycle.remove(reg.load([pid, old_pid]))
    for gone in (piid, child.instance_id, old_iid):
        with pytest.raises(JobNotFoundError):
            reg.resolve(gone)
    assert r.hlen(keys.iids) == 0


def test_a_damaged_job_record_is_listed_and_removed_saying_what_is_damaged(
    layers: Layers,
) -> None:
    reg, r, keys = layers.registry, layers.store.r, layers.keys

    def finished(hosts: list[str]) -> tuple[int, list[int]]:
        pid, _, children = layers.lifecycle.create(JobSpec("echo", ["x"], {}, "echo x", hosts))
        for child in children:
            layers.lifecycle.claim(child.id, "w")
            layers.lifecycle.finish(child.id, JobState.COMPLETED)
        return pid, [c.id for c in children]

    sound, _ = finished(["h1"])
    numbers, _ = finished(["h1"])
    damage = {"end": "garbage", "args": "[not json", "created": "x", "begin": "nan"}
    r.hset(keys.job(numbers), mapping={**damage, "timeout": "1e300"})
    state, [state_child] = finished(["h1"])
    r.hset(keys.job(state_child), "state", "Exploded")  # a state no version writes
    no_id, [_, child_no_id] = finished(["h1", "h2"])
    r.hdel(keys.job(no_id), "id")
    r.hset(keys.job(child_no_id), "id", "x")
    forged, _ = finished(["h1"])
    r.hset(keys.job(forged), "id", sound)  # a field naming another job
    ids = [sound, numbers, state, no_id, forged]
    # every job is read, by the Id it was read by; a damaged one says which fields did not read
    infos = {i.id: i for i in reg.load(ids)}
    assert list(infos) == ids
    assert infos[sound].reason is None and infos[sound].args == ("x",)
    hurt = infos[numbers]
    assert hurt.reason == "damaged job record: args, created, begin, end, timeout unreadable"
    assert (hurt.begin_time, hurt.end_time, hurt.timeout, hurt.args) == (None, None, None, ())
    assert hurt.state is JobState.COMPLETED
    [child] = infos[state].children
    # unfinished: nothing takes it for done, and removing it asks for --force
    assert child.state is JobState.RUNNING and not child.finished
    assert child.reason == "damaged job record: state unreadable"
    assert refs.checked([state_child], ["Exploded"], False) == [JobState.RUNNING]
    assert not reg.should_end(state_child)
    assert [c.id for c in infos[no_id].children] == [no_id + 1, child_no_id]
    assert infos[no_id].children[1].reason == "damaged job record: id unreadable"
    assert infos[forged].reason == "damaged job record: id unreadable"
    # and each is removed whole, as any other
    layers.lifecycle.remove(list(infos.values()))
    assert reg.load(ids) == []
    left = {k.split(":")[1] for k in r.scan_iter(match=f"{layers.store.config.prefix}*")}
    assert left <= {"seq", "tseq", "inqlocs"}  # the fleet's own: nothing of a job, no index


def test_a_job_an_older_worker_runs_keeps_every_instance_id_in_the_index(
    layers: Layers,
) -> None:
    # an older worker (before 0.2) finds a job by InstanceId only in the iids index, so a job
    # on its location is indexed whole; one on upgraded workers only, not at all
    def host(loc: str, version: str) -> HostInfo:
        return HostInfo(loc, True, time.time(), version=version)

    hosts = {h.location: h for h in (host("new", "0.2.0"), host("next", "0.10.1"))}
    hosts |= {h.location: h for h in (host("old", "0.1.0"), host("odd", "dev"))}
    # a confined worker's relay finds jobs for it: its record says the relay's version
    relayed = HostInfo("relayed", True, time.time(), version="0.2.0", confined=True)
    hosts["relayed"] = dataclasses.replace(relayed, relay_version="0.2.0")
    hosts["old-relay"] = dataclasses.replace(relayed, location="old-relay")  # says none
    assert not needs_iid_index(["new", "next", "relayed"], hosts)
    for mixed in (["new", "old"], ["odd"], ["new", "unknown"], ["relayed", "old-relay"]):
        assert needs_iid_index(mixed, hosts), mixed
    r, keys = layers.store.r, layers.keys
    lean = JobSpec("echo", [], {}, "echo", ["new"])
    pid, _, _ = layers.lifecycle.create(lean)
    assert r.hlen(keys.iids) == 0
    old = JobSpec("echo", [], {}, "echo", ["old", "new"], index_iids=True)
    opid, piid, children = layers.lifecycle.create(old)
    assert r.hgetall(keys.iids) == {
        piid: str(opid),
        **{c.instance_id: str(c.id) for c in children},
    }
    layers.lifecycle.remove(layers.registry.load([pid, opid]))
    assert r.hlen(keys.iids) == 0
