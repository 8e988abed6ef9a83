"""Receive: records taken once and atomically, keep, partial results, streams in order."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

from fleetjobs import Fleet, JobState
from fleetjobs.deadletters import DeadLetter
from fleetjobs.records import is_record

from .conftest import eventually, make_cli


def test_results_are_consumed_once_unless_kept(fleet: Fleet) -> None:
    job = fleet.start("echo", "a", "b", locations="alpha")
    fleet.wait([job], timeout=15)
    assert list(fleet.receive(job, keep=True)) == ["a", "b"]
    assert list(fleet.receive(job, keep=True)) == ["a", "b"]
    assert job.has_more_data
    assert list(fleet.receive(job)) == ["a", "b"]
    assert list(fleet.receive(job)) == []
    assert not job.has_more_data


def test_has_more_data_is_true_while_running_and_false_when_all_is_read(fleet: Fleet) -> None:
    quiet = fleet.start("sleep", 1, locations="alpha")
    eventually(lambda: quiet.state is JobState.RUNNING)
    assert quiet.has_more_data  # running
    fleet.wait([quiet], timeout=15)
    fleet.receive(quiet)  # takes its verbose line
    assert not quiet.has_more_data


def test_receiving_a_running_job_gives_what_is_there_so_far_then_only_what_came_after(
    fleet: Fleet,
) -> None:
    job = fleet.start("produce", 6, 0.4, locations="alpha")
    first = eventually(lambda: list(fleet.receive(job)), timeout=10)
    assert job.state is JobState.RUNNING
    fleet.wait([job], timeout=15)
    rest = list(fleet.receive(job))
    assert first + rest == [1, 2, 3, 4, 5, 6]  # type: ignore[operator]


def test_streams_keep_their_order_and_each_is_there(fleet: Fleet) -> None:
    job = fleet.start("interleave", locations="alpha")
    fleet.wait([job], timeout=15)
    got = fleet.receive(job)
    assert [(r.stream, r.data) for r in got.records] == [
        ("output", "first"),
        ("error", "an error"),
        ("warning", "a warning"),
        ("verbose", "a verbose line"),
        ("output", {"Name": "second", "Size": 2}),
        ("debug", "a debug line"),
        ("information", "an information line"),
        ("progress", {"percent": 50.0, "status": "half way"}),
        ("output", "last"),
    ]
    assert list(got) == ["first", {"Name": "second", "Size": 2}, "last"]
    assert got.errors == ["an error"] and got.warnings == ["a warning"]
    assert got.verbose == ["a verbose line"] and got.debug == ["a debug line"]
    assert got.information == ["an information line"]
    child = got.records[0]
    assert child.location == "alpha" and child.job == job.info.child_ids[0]
    assert job.refresh().info.children[0].progress == {"percent": 50.0, "status": "half way"}


def test_concurrent_receivers_get_each_record_exactly_once(config: object, fleet: Fleet) -> None:
    # given a job writing 400 records as fast as it can
    job = fleet.start("produce", 400, locations="alpha")
    seen: list[list[object]] = [[] for _ in range(4)]
    consoles = [Fleet(config=fleet.config) for _ in range(4)]

    def receiver(i: int) -> None:
        while True:
            finished = consoles[i].get(job.id)[0].info.state.finished
            seen[i].extend(consoles[i].receive(job.id))
            if finished:
                seen[i].extend(consoles[i].receive(job.id))
                return

    # when four consoles receive from it at once, until it is done
    threads = [threading.Thread(target=receiver, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in consoles:
        c.close()
    # then between them they got every record exactly once
    everything = [v for part in seen for v in part]
    assert sorted(everything) == list(range(1, 401))  # type: ignore[type-var]
    # and each receiver got its share in order
    for part in seen:
        assert part == sorted(part)  # type: ignore[type-var]


def test_receive_wait_streams_until_the_job_is_done_and_auto_remove_cleans_up(fleet: Fleet) -> None:
    job = fleet.start("produce", 5, 0.2, locations="beta")
    values = [r.data for r in fleet.stream(job, follow=True) if r.stream == "output"]
    assert values == [1, 2, 3, 4, 5]
    assert job.state is JobState.COMPLETED
    again = fleet.start("produce", 3, 0.1, locations="beta")
    assert list(fleet.receive(again, follow=True, auto_remove=True)) == [1, 2, 3]
    assert fleet.registry.r.exists(fleet.store.keys.job(again.id)) == 0


def test_receive_keep_with_wait_shows_each_record_once_and_leaves_them(fleet: Fleet) -> None:
    job = fleet.start("produce", 4, 0.2, locations="beta")
    assert list(fleet.receive(job, follow=True, keep=True)) == [1, 2, 3, 4]
    assert list(fleet.receive(job)) == [1, 2, 3, 4]


def test_a_command_printing_many_lines_gives_every_line_once_in_order(fleet: Fleet) -> None:
    # a run job relays what it reads at once in one write, a thousand lines at most each:
    # 30,000 lines come in several reads and many writes, an error line on the other pipe,
    # and a last line with no newline
    job = fleet.start("run", "seq 30000; echo oops >&2; seq 5; printf tail", locations="alpha")
    assert fleet.wait([job], timeout=60) and job.state is JobState.COMPLETED
    got = fleet.receive(job)
    assert list(got) == [str(i) for i in range(1, 30001)] + ["1", "2", "3", "4", "5", "tail"]
    assert got.errors == ["oops"]
    assert not job.has_more_data


def test_a_damaged_record_or_host_record_is_said_and_the_rest_delivered(fleet: Fleet) -> None:
    # given a finished job, and Redis damaged by hand: a record that is not one among its
    # records, a host record of the wrong types, facts that are not an object
    job = fleet.start("echo", "first", "second", locations="alpha")
    assert fleet.wait([job], timeout=20)
    child = job.info.children[0]
    r, keys = fleet.store.r, fleet.store.keys
    first = r.lindex(keys.out(child.instance_id), 0)
    r.linsert(keys.out(child.instance_id), "AFTER", first, "junk")
    r.linsert(keys.out(child.instance_id), "AFTER", first, "[" * 100_000)  # nested too deep
    ghost = f"ghost-{child.id}"
    doc = json.dumps({"location": ghost, "tags": "zz"})
    with damaged_hosts(fleet, ghost, doc, seen=1, facts="[1, 2]"):
        # then receive delivers every record, the damaged one as an error that says so
        got = fleet.receive(job)
        assert list(got) == ["first", "second"]
        deep, bad = [rec for rec in got.records if rec.stream == "error"]
        assert "could not be read" in str(bad.data) and "junk" in str(bad.data)
        assert "could not be read (RecursionError): [[[" in str(deep.data)
        # and the hosts list leaves out the damaged host, keeping the rest
        listed = {h.location: h for h in fleet.hosts()}
        assert ghost not in listed and listed["alpha"].facts == {}


@contextlib.contextmanager
def damaged_hosts(fleet: Fleet, ghost: str, doc: str, seen: float, facts: str) -> Iterator[None]:
    """A host record ``doc`` for ``ghost`` (online until ``seen``) and alpha's facts set to
    ``facts``, as Redis damaged by hand would hold them; put back as they were after."""
    r, keys = fleet.store.r, fleet.store.keys
    r.hset(keys.hosts, ghost, doc)
    r.zadd(keys.seen, {ghost: seen})
    kept_facts = r.hget(keys.facts, "alpha")
    r.hset(keys.facts, "alpha", facts)
    try:
        yield
    finally:
        r.hdel(keys.hosts, ghost)
        r.zrem(keys.seen, ghost)
        if kept_facts is None:
            r.hdel(keys.facts, "alpha")
        else:
            r.hset(keys.facts, "alpha", kept_facts)


def test_an_action_that_is_a_callable_object_runs(fleet: Fleet) -> None:
    # given an action registered as an object with __call__ and no hash (tests.support_actions)
    job = fleet.start("greet", "world", locations="alpha")
    assert fleet.wait([job], timeout=20)
    # then it runs with its arguments checked as a function's are
    assert job.state is JobState.COMPLETED, job.info.reason
    assert list(fleet.receive(job)) == ["hello, world"]


def test_json_nested_too_deep_to_read_is_a_damaged_value_wherever_it_is_read(
    fleet: Fleet,
) -> None:
    deep = "[" * 100_000  # what a credential that writes Redis can leave anywhere
    # a record the relay is asked to write is not one; a dead letter's record cannot be read
    assert not is_record(deep)
    assert DeadLetter.from_json(deep).reason == "this dead letter's record cannot be read"
    # and a job's JSON field of that kind reads as damaged, the job itself as it is
    job = fleet.start("echo", "x", locations="alpha")
    assert fleet.wait([job], timeout=20)
    fleet.store.r.hset(fleet.store.keys.job(job.id), "progress", deep)
    [info] = fleet.registry.load([job.id])
    assert info.state is JobState.COMPLETED and info.progress is None


def test_times_no_datetime_can_show_and_odd_facts_are_damaged_values_not_crashes(
    fleet: Fleet,
) -> None:
    # given what a credential that writes Redis (or a host's relay requests) can leave: a
    # record, a host record and a dead letter whose times are NaN or 1e300, and facts of
    # any JSON
    for t in ("NaN", "1e300", "-1"):
        assert not is_record(f'{{"s":"output","d":"x","t":{t}}}')
    assert DeadLetter.checked({"at": 1e300, "reason": "r"}).at == 0.0
    assert DeadLetter.checked({"at": float("nan"), "reason": "r"}).at == 0.0
    job = fleet.start("echo", "kept", locations="alpha")
    assert fleet.wait([job], timeout=20)
    child = job.info.children[0]
    r, keys = fleet.store.r, fleet.store.keys
    out = keys.out(child.instance_id)
    r.rpush(out, '{"s":"output","d":"far","t":1e300}', '{"s":"output","d":"nan","t":NaN}')
    ghost = f"ghost-{child.id}"
    doc = json.dumps({"location": ghost, "ttl": float("nan"), "last_seen": 1})
    facts = json.dumps({"addresses": [1, {"a": 2}], "kernel": ["x"]})
    cli = make_cli(fleet.config)
    with damaged_hosts(fleet, ghost, doc, seen=1e12, facts=facts):
        # then receive delivers them as records that could not be read, the rest as written
        got = cli("receive", str(job.id), "--json")
        assert got.returncode == 0, got.stderr
        records = json.loads(got.stdout)
        assert [x["data"] for x in records if x["stream"] == "output"] == ["kept"]
        assert sum("could not be read" in str(x["data"]) for x in records) == 2
        # and the hosts list leaves out the host whose record is damaged, and shows facts
        listed = cli("hosts", "--json")
        assert listed.returncode == 0, listed.stderr
        assert ghost not in listed.stdout
        # (alpha's worker writes its true facts back every 30 s when Redis holds others:
        # the damaged ones are written again, should it have done so meanwhile)
        for _ in range(3):
            r.hset(keys.facts, "alpha", facts)
            shown = cli("hosts", "--facts")
            assert shown.returncode == 0, shown.stderr
            if '1 {"a": 2}' in shown.stdout:
                break
        assert '1 {"a": 2}' in shown.stdout
