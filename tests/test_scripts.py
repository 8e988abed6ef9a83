"""Each Lua script on a real Redis, for each state it can produce (the worker's and the
console's scripts driven by hand, with no worker running)."""

from __future__ import annotations

import json
import re
import time

import redis

from fleetjobs import JobState
from fleetjobs.hosts import Hosts
from fleetjobs.lifecycle import JobSpec, NewChild
from fleetjobs.records import Pending

from .conftest import Layers

S = JobState


def _one(w: Layers, **spec: object) -> tuple[int, NewChild]:
    pid, _, [child] = w.lifecycle.create(JobSpec("echo", [], {}, "echo", ["h1"], **spec))  # type: ignore[arg-type]
    return pid, child


def _state(w: Layers, job_id: int) -> JobState:
    return JobState(w.store.r.hget(w.keys.job(job_id), "state"))


def _alive(w: Layers, worker: str) -> None:
    w.store.r.set(w.keys.worker(worker), "{}", px=60_000)


def test_claim_runs_a_job_once_and_refuses_what_must_not_run(layers: Layers) -> None:
    w = layers
    # Running: the first claim; Taken: anyone else's
    pid, child = _one(w)
    assert w.lifecycle.claim(child.id, "a")[0] == S.RUNNING
    assert w.lifecycle.claim(child.id, "b")[0] == "Taken"
    assert _state(w, pid) is S.RUNNING
    # Stopped: a stop flag set while no script could settle it (a stop racing the claim)
    pid, child = _one(w)
    w.store.r.hset(w.keys.job(child.id), mapping={"stop": "1", "stop_reason": "halt"})
    assert w.lifecycle.claim(child.id, "a")[0] == S.STOPPED
    assert _state(w, pid) is S.STOPPED
    # Failed: its start deadline passed before a worker claimed it
    pid, child = _one(w, start_timeout=0.01)
    time.sleep(0.05)
    assert w.lifecycle.claim(child.id, "a")[0] == S.FAILED
    [info] = w.registry.load([pid])
    assert info.state is S.FAILED and "within 0.01 s" in (info.reason or "")
    # Missing: no such job now (removed while its message was on its way)
    pid, child = _one(w)
    w.store.r.delete(w.keys.job(child.id))
    assert w.lifecycle.claim(child.id, "a")[0] == "Missing"
    # Refused: an Id no start ever gave, a message the fleet never sent (a dead letter)
    never = int(w.store.r.get(w.keys.seq)) + 1000
    assert w.lifecycle.claim(never, "a")[0] == (
        f"Refused: no job {never} was ever started: a message the fleet never sent (or sent "
        "before Redis lost its data)"
    )


def test_finish_settles_completed_failed_or_stopped(layers: Layers) -> None:
    w = layers
    for asked, reason, expected in (
        (S.COMPLETED, "", S.COMPLETED),
        (S.FAILED, "disk full", S.FAILED),
    ):
        pid, child = _one(w)
        w.lifecycle.claim(child.id, "a")
        assert w.lifecycle.finish(child.id, asked, reason)[0] == expected
        [info] = w.registry.load([pid])
        assert info.state is expected and info.end_time is not None
        assert info.reason == (reason or None)
    # a stop asked while it ran wins: Stopped, with the stop's reason
    _alive(w, "a")
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "a")
    assert w.lifecycle.stop(pid, "enough")[0] == S.STOPPING
    assert _state(w, child.id) is S.STOPPING
    assert w.lifecycle.finish(child.id, S.COMPLETED)[0] == S.STOPPED
    [info] = w.registry.load([pid])
    assert info.state is S.STOPPED and info.reason == "enough"
    # a finished job stays as it is
    assert w.lifecycle.finish(child.id, S.FAILED, "late")[0] == S.STOPPED


def test_a_finish_for_another_instance_settles_nothing(layers: Layers) -> None:
    w = layers
    # given a running child whose Id a worker still running an older job also holds (that
    # job removed, or lost with Redis's data, and its Id given again)
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "a")
    old_iid = "0b8f5b9e-8e4b-4f7e-9d3c-2f1a2b3c4d5e"
    stale = w.records.tail(old_iid, None, [])
    # when the old job's worker finishes it: with its records, without, or by its iid alone
    # (the worker's end of a task Celery reports failed, the stop enforcer's)
    late = [Pending("output", "old", 1, time.time())]
    stale_with_records = w.records.tail(old_iid, None, late)
    # then no finish settles the new job, nor writes to it
    assert w.lifecycle.finish(child.id, S.FAILED, "old", stale)[0] == "Missing"
    assert w.lifecycle.finish(child.id, S.COMPLETED, "", stale_with_records)[0] == "Missing"
    assert w.lifecycle.finish(child.id, S.FAILED, "died", iid=old_iid)[0] == "Missing"
    assert _state(w, child.id) is S.RUNNING and _state(w, pid) is S.RUNNING
    assert w.store.r.llen(w.keys.out(old_iid)) == 0
    assert w.store.r.llen(w.keys.out(child.instance_id)) == 0
    assert w.store.r.hget(w.keys.job(child.id), "wseq") is None
    # and its own worker's finish does, by its iid alone too
    assert w.lifecycle.finish(child.id, S.FAILED, "died", iid=child.instance_id)[0] == S.FAILED
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "a")
    own = w.records.tail(child.instance_id, None, [])
    assert w.lifecycle.finish(child.id, S.COMPLETED, "", own)[0] == S.COMPLETED


def test_stop_of_queued_running_and_orphaned_jobs(layers: Layers) -> None:
    w = layers
    # NotStarted -> Stopped at once: it will never run
    pid, child = _one(w)
    assert w.lifecycle.stop(pid)[0] == S.STOPPED
    assert w.lifecycle.claim(child.id, "a")[0] == S.STOPPED
    # Running on a live worker -> Stopping (its worker ends it)
    _alive(w, "live")
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "live")
    assert w.lifecycle.stop(child.id)[0] == S.STOPPING
    assert _state(w, pid) is S.STOPPING
    # Running on a worker that is gone -> Stopped now
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "ghost")
    assert w.lifecycle.stop(pid)[0] == S.STOPPED
    [info] = w.registry.load([pid])
    assert "its worker is gone" in (info.children[0].reason or "")


def test_the_fleet_is_swept_once_per_interval_whoever_asks(layers: Layers) -> None:
    w = layers
    _alive(w, "w1")
    _, child = _one(w)
    w.lifecycle.claim(child.id, "w1")
    # given a sweep by anyone a moment ago (every worker and console sweeps)
    assert w.lifecycle.sweep(every=60) == (0, [])
    # when the worker stops heartbeating, a sweep asked within the interval does nothing
    w.store.r.delete(w.keys.worker("w1"))
    assert w.lifecycle.sweep(every=60)[0] == 0
    assert _state(w, child.id) is S.RUNNING
    # and one that is not bound by it settles the child
    assert w.lifecycle.sweep()[0] == 1
    assert _state(w, child.id) is S.DISCONNECTED


def test_a_heartbeat_takes_the_fleets_sweep_turn_in_the_same_command(layers: Layers) -> None:
    w = layers
    hosts = Hosts(w.store)
    _, child = _one(w)
    w.lifecycle.claim(child.id, "w2")  # a worker that is gone (no entry, no document)
    # given nobody swept the fleet lately, one worker's beat takes the turn
    assert hosts.heartbeat("w1", {}, ["h1"], sweep_every=60) is True
    # and every other beat, and any gated sweep, within the interval do not
    assert hosts.heartbeat("w3", {}, ["h3"], sweep_every=60) is False
    assert w.lifecycle.sweep(every=60) == (0, [])
    assert _state(w, child.id) is S.RUNNING
    # a beat that asks for no turn leaves the mark alone (a confined worker's, through its relay)
    w.store.r.delete(w.keys.swept)
    assert hosts.heartbeat("w1", {}, ["h1"]) is False
    assert w.store.r.exists(w.keys.swept) == 0
    assert w.lifecycle.sweep(every=60)[0] == 1  # so the next asker sweeps
    assert _state(w, child.id) is S.DISCONNECTED
    # that beat's reply is the plain count it always was: a worker and a relay of different
    # versions understand each other
    assert w.store.scripts("beat", "beat", "w4", "{}", 60_000, "h4") == 1
    # and an interval shorter than Redis's millisecond still asks for the turn
    w.store.r.delete(w.keys.swept)
    assert hosts.heartbeat("w1", {}, ["h1"], sweep_every=0.0001) is True


def test_a_workers_beat_is_one_write_and_its_document_outlives_its_beats(
    layers: Layers,
) -> None:
    w = layers
    hosts = Hosts(w.store)
    key = w.keys.worker("wd")
    ttl = w.store.config.host_ttl

    def beat(*actions: str) -> list[str]:
        hosts.heartbeat("wd", {"actions": list(actions)}, ["hd"], sweep_every=60)
        held = w.store.r.get(key)
        return list(json.loads(held)["actions"]) if held.startswith("{") else [held]

    def lives_for() -> float:  # its entry in seen, less Redis's clock
        due = w.store.r.zscore(w.keys.seen, "@worker:wd")
        secs, micros = w.store.r.time()
        return float(due) - (secs + micros / 1e6)

    assert beat("echo") == ["echo"]
    # its liveness is its entry in seen, a host TTL ahead, beside its location's; its document
    # outlives its beats
    assert ttl - 1 < lives_for() <= ttl
    assert w.store.r.zscore(w.keys.seen, "hd") == w.store.r.zscore(w.keys.seen, "@worker:wd")
    assert w.store.r.pttl(key) == -1  # no expiry: deleted when it leaves or is forgotten
    # given the same document at the next beat, the key is neither written nor touched: what
    # Redis holds is left alone (here a marker put in its place)
    w.store.r.set(key, "marker")
    assert beat("echo") == ["marker"]
    # a document that changed is written whole; so is one Redis lost with the rest
    assert beat("echo", "nap") == ["echo", "nap"]
    w.store.r.delete(key, w.keys.seen)
    assert beat("echo", "nap") == ["echo", "nap"]


def test_a_worker_whose_beats_stopped_is_gone_though_its_document_is_not(
    layers: Layers,
) -> None:
    w = layers
    hosts = Hosts(w.store)
    hosts.heartbeat("wz", {"actions": ["echo"]}, ["h1"], sweep_every=60)
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "wz")
    [h1] = hosts.list(["h1"])
    assert h1.online
    # its beats stop: its entry's time runs out (here: put in the past); its document stays
    w.store.r.zadd(w.keys.seen, {"@worker:wz": 1.0})
    assert w.store.r.exists(w.keys.worker("wz"))
    w.store.r.delete(w.keys.swept)
    assert w.lifecycle.sweep()[0] == 1
    assert _state(w, child.id) is S.DISCONNECTED
    # it beats again within the grace period: Running again
    hosts.heartbeat("wz", {"actions": ["echo"]}, ["h1"], sweep_every=60)
    w.lifecycle.sweep()
    assert _state(w, child.id) is S.RUNNING
    # while a document with an expiry, which only an older writer gives it (a 0.3 relay
    # beating for a confined worker), says it lives: it does, however its entry stands
    w.store.r.zadd(w.keys.seen, {"@worker:wz": 1.0})
    w.store.r.pexpire(w.keys.worker("wz"), 60_000)
    w.lifecycle.sweep()
    assert _state(w, child.id) is S.RUNNING
    # silent again, a stop settles its job at once: no worker is there to hear it
    w.store.r.persist(w.keys.worker("wz"))
    w.lifecycle.stop(pid)
    assert _state(w, pid) is S.STOPPED


def test_a_clean_leave_removes_a_workers_entry_and_dead_ones_are_forgotten(
    layers: Layers,
) -> None:
    w = layers
    hosts = Hosts(w.store)
    seen = w.keys.seen
    hosts.heartbeat("wa", {}, ["ha"], sweep_every=60)
    hosts.heartbeat("wb", {}, ["hb"], sweep_every=60)
    # a clean shutdown: its entry and document go, its location is offline at once (its last
    # beat still known)
    hosts.leave("wa", ["ha"])
    assert w.store.r.zscore(seen, "@worker:wa") is None
    assert not w.store.r.exists(w.keys.worker("wa"))
    assert float(w.store.r.zscore(seen, "ha")) < 0
    # a worker killed leaves its entry and document: forgotten once dead longer than the age
    # given (30 host TTLs), while a living worker's and a long-offline location's stay
    hosts.heartbeat("killed", {}, ["hk"], sweep_every=60)
    w.store.r.zadd(seen, {"@worker:killed": 1.0, "old-host": 1.0})
    # and a worker a 0.3 relay now beats for (its document with the expiry that relay moves)
    # loses its stale entry but keeps its document, which goes by itself if that relay stops
    hosts.heartbeat("carried", {}, ["hc"], sweep_every=60)
    w.store.r.zadd(seen, {"@worker:carried": 1.0})
    w.store.r.pexpire(w.keys.worker("carried"), 60_000)
    assert hosts.forget_after() == 30 * w.store.config.host_ttl
    assert hosts.forget_dead_workers() == 2
    assert w.store.r.zscore(seen, "@worker:killed") is None
    assert not w.store.r.exists(w.keys.worker("killed"))
    assert w.store.r.zscore(seen, "@worker:carried") is None
    assert w.store.r.pttl(w.keys.worker("carried")) > 0
    assert w.store.r.zscore(seen, "old-host") == 1.0
    assert w.store.r.zscore(seen, "@worker:wb") is not None
    assert w.store.r.exists(w.keys.worker("wb"))
    # at most once per that age for the whole fleet, whoever asks
    hosts.heartbeat("killed2", {}, ["hk2"], sweep_every=60)
    w.store.r.zadd(seen, {"@worker:killed2": 1.0})
    assert Hosts(w.store).forget_dead_workers() == 0
    assert w.store.r.zscore(seen, "@worker:killed2") == 1.0
    # and what it reads is the workers' ids, not the locations (however many are offline)
    assert w.store.r.smembers(w.keys.workers) == {"wb", "killed2"}


def test_sweep_disconnects_reconnects_and_fails_silent_hosts(layers: Layers) -> None:
    w = layers
    _alive(w, "w1")
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "w1")
    # the worker stops heartbeating: Disconnected
    w.store.r.delete(w.keys.worker("w1"))
    assert w.lifecycle.sweep()[0] == 1
    assert _state(w, child.id) is S.DISCONNECTED and _state(w, pid) is S.DISCONNECTED
    # it comes back within the grace period: Running again
    _alive(w, "w1")
    w.lifecycle.sweep()
    assert _state(w, child.id) is S.RUNNING
    # it goes silent for longer than the grace period: Failed, saying so
    w.store.r.delete(w.keys.worker("w1"))
    w.lifecycle.sweep()
    w.store.r.hset(w.keys.job(child.id), "lost_at", repr(time.time() - 3600))
    w.lifecycle.sweep()
    [info] = w.registry.load([pid])
    assert info.state is S.FAILED and "stopped answering" in (info.reason or "")
    # a NotStarted child past its start deadline fails at the sweep, with no worker at all
    pid, child = _one(w, start_timeout=0.01)
    time.sleep(0.05)
    w.lifecycle.sweep()
    assert _state(w, pid) is S.FAILED
    # a Stopping child whose worker vanished is Stopped
    _alive(w, "w2")
    pid, child = _one(w)
    w.lifecycle.claim(child.id, "w2")
    w.lifecycle.stop(pid)
    w.store.r.delete(w.keys.worker("w2"))
    w.lifecycle.sweep()
    assert _state(w, pid) is S.STOPPED


def test_a_throttled_parent_releases_its_next_child_when_one_finishes(layers: Layers) -> None:
    w = layers
    pid, _, children = w.lifecycle.create(
        JobSpec("echo", [], {}, "echo", ["h1", "h2", "h3"], throttle_limit=1)
    )
    assert [c.queued for c in children] == [True, False, False]
    w.lifecycle.claim(children[0].id, "a")
    _, due = w.lifecycle.finish(children[0].id, S.COMPLETED)
    assert due == [children[1].id]
    # a stop of the parent drops what still waits: nothing more is released
    _, due = w.lifecycle.stop(pid)
    assert due == [] and _state(w, pid) is S.STOPPED


def test_only_a_parent_with_more_children_than_its_throttle_has_children_waiting(
    layers: Layers,
) -> None:
    # settle() looks for a next child only then (prelude.lua): a start that queues fewer
    # than all within the throttle would strand the rest
    w = layers
    for n, throttle, waiting in ((2, 2, 0), (3, 2, 1), (1, 32, 0)):
        pid, _, children = w.lifecycle.create(
            JobSpec("echo", [], {}, "echo", [f"h{i}" for i in range(n)], throttle_limit=throttle)
        )
        assert sum(not c.queued for c in children) == waiting
        assert w.store.r.llen(w.keys.pending(pid)) == waiting


def test_the_generated_header_names_every_state_and_key() -> None:
    from fleetjobs.keys import SCHEMA
    from fleetjobs.scripts import READS, RECORDS, STATE_CHANGES, WRITES, body, header, source

    text = header()
    for state in JobState:
        assert f"{state.name} = '{state.value}'" in text
    for name in SCHEMA:
        assert f"K.{name}" in text
    # no script spells a state or a key itself: they come from the header
    for name in STATE_CHANGES + RECORDS:
        code = [line.split("--")[0] for line in body(name).splitlines()]
        for state in JobState:
            assert f"'{state.value}'" not in "\n".join(code), (name, state)
        assert "P .. '" not in "\n".join(code), name
    # each script's header builds the keys its body names, and only those (Redis runs the
    # header at every call); every key a body names is one the schema has
    for name in STATE_CHANGES + RECORDS + READS + WRITES:
        named = set(re.findall(r"\bK\.(\w+)", body(name)))
        assert named <= set(SCHEMA), (name, named - set(SCHEMA))
        built = set(re.findall(r"^(?:function K\.(\w+)\(|K\.(\w+) = )", source(name), re.M))
        assert {a or b for a, b in built} == named, name
        assert source(name).endswith(body(name))


def test_claim_refuses_a_message_not_addressed_to_the_worker(layers: Layers) -> None:
    w = layers
    pid, child = _one(w)
    # a parent never runs; another location's child does not run here; a task id the fleet
    # never sent does not run it either
    assert w.lifecycle.claim(pid, "a")[0].startswith("Refused: job")
    assert "belongs to location h1, not to h2" in w.lifecycle.claim(child.id, "a", ["h2"])[0]
    assert "not the one the fleet sent" in w.lifecycle.claim(child.id, "a", ["h1"], "x")[0]
    # and none of it changed anything
    assert _state(w, child.id) is S.NOT_STARTED and _state(w, pid) is S.NOT_STARTED
    # the message the fleet sent runs it
    assert w.lifecycle.claim(child.id, "a", ["h1"], child.instance_id)[0] == S.RUNNING


def test_claim_and_finish_keep_the_parents_begin_the_call_and_the_records(
    layers: Layers,
) -> None:
    # claim reads the parent's state, begin and call in one go, and finish writes a child's
    # records and its end in one write: what each used to do in several
    w = layers
    pid, _, (first, second) = w.lifecycle.create(
        JobSpec("echo", ["a", 1], {"k": "v"}, "echo", ["h1", "h2"])
    )
    # the first claim gives the worker the parent's call, and the parent its child's begin
    state, _, running = w.lifecycle.claim(first.id, "a")
    assert state == S.RUNNING and running is not None
    _, call = running
    assert call is not None and call[1:] == (["a", 1], {"k": "v"})
    began = w.store.r.hget(w.keys.job(pid), "begin")
    assert began is not None and began == w.store.r.hget(w.keys.job(first.id), "begin")
    # a later child's claim keeps it: the parent began with its first child
    time.sleep(0.01)
    assert w.lifecycle.claim(second.id, "b")[0] == S.RUNNING
    assert w.store.r.hget(w.keys.job(pid), "begin") == began
    # finish with three records under a cap that holds two: two kept, then the warning
    piid = w.store.r.hget(w.keys.job(pid), "iid")
    batch = [Pending("output", f"line {n}", n, 1.0) for n in (1, 2, 3)]
    tail = w.records.tail(first.instance_id, piid, batch)
    one = len(tail[5])  # a record's size
    tail[2] = 2 * one + 1
    assert w.lifecycle.finish(first.id, S.COMPLETED, "", tail)[0] == S.COMPLETED
    out = [json.loads(r) for r in w.store.r.lrange(w.keys.out(first.instance_id), 0, -1)]
    assert [r["d"] for r in out[:2]] == ["line 1", "line 2"]
    assert out[2]["s"] == "warning" and len(out) == 3
    child = w.store.r.hgetall(w.keys.job(first.id))
    assert child["state"] == S.COMPLETED.value and child["end"]
    assert (child["wseq"], child["truncated"]) == ("3", "1")
    # the same finish again (its answer was lost) writes nothing twice
    assert w.lifecycle.finish(first.id, S.COMPLETED, "", tail)[0] == S.COMPLETED
    assert w.store.r.llen(w.keys.out(first.instance_id)) == 3
    # the other child finishes without records: the parent is Completed, its begin kept
    assert w.lifecycle.finish(second.id, S.COMPLETED)[0] == S.COMPLETED
    assert _state(w, pid) is S.COMPLETED
    assert w.store.r.hget(w.keys.job(pid), "begin") == began


def test_a_workers_look_for_lost_messages_is_one_read_for_a_thousand_locations(
    layers: Layers,
) -> None:
    # given a worker of 1,200 locations, two of which are marked as having messages out but
    # have none left (their inq is empty): one at the start of the list, one past the 1,000th
    w = layers
    locations = [f"ol{i}" for i in range(1200)]
    w.store.r.sadd(w.keys.inqlocs, "ol3", "ol1100")
    inqlocs = w.keys.inqlocs
    seen: list[str] = []
    client = redis.Redis.from_url(w.store.config.redis_url, decode_responses=True)
    with client.monitor() as m:
        w.store.r.echo("look-begins")
        w.store.scripts("overdue", ",".join(locations), 100)
        w.store.r.echo("look-ends")
        for cmd in m.listen():
            seen.append(str(cmd["command"]))
            if "look-ends" in seen[-1]:
                break
    client.close()
    look = seen[next(i for i, c in enumerate(seen) if "look-begins" in c) :]
    # when it looks for lost messages: one SMISMEMBER of inqlocs for all of them (two before)
    asked = [c for c in look if c.startswith("SMISMEMBER") and f" {inqlocs} " in f"{c} "]
    assert len(asked) == 1 and asked[0].count(" ol") == 1200, asked
    # and both marked locations were looked at: having nothing out, they leave inqlocs
    assert not w.store.r.smembers(w.keys.inqlocs) & {"ol3", "ol1100"}
