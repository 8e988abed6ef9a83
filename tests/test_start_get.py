"""Start and Get: a job returns at once, carries its record, and any console can find it."""

from __future__ import annotations

import time
import uuid

import pytest

from fleetjobs import (
    ArgumentError,
    Config,
    Fleet,
    FleetJobsError,
    JobNotFoundError,
    JobState,
    NoHostError,
    ShellNotAllowedError,
    UnknownActionError,
)
from fleetjobs.embedded import LocalWorkers
from fleetjobs.model import nested_too_deep
from workers.poison import MAX_DEPTH

from .conftest import CHILD_KEYS, INCLUDE, JOB_KEYS, ROOT, nested, uniq


def test_start_returns_at_once_and_the_job_runs_on_its_location(fleet: Fleet) -> None:
    # given a host that serves alpha
    # when a 2 s job starts there
    began = time.monotonic()
    job = fleet.start("sleep", 2, "done", name=uniq("nap"), locations="alpha")
    returned_after = time.monotonic() - began
    # then the console is back before the job could have finished
    assert returned_after < 2
    assert job.info.state in {JobState.NOT_STARTED, JobState.RUNNING}
    assert job.location == "alpha" and job.command == "sleep 2 done"
    assert fleet.wait([job], timeout=15) == [job]
    assert job.state is JobState.COMPLETED
    assert list(fleet.receive(job)) == ["done"]


def test_the_record_holds_what_powershell_shows(fleet: Fleet) -> None:
    job = fleet.start("echo", "hi", locations="beta")
    fleet.wait([job], timeout=15)
    info = job.refresh().info
    assert info.name == f"Job{info.id}"
    uuid.UUID(info.instance_id)
    assert info.state is JobState.COMPLETED and info.reason is None
    assert info.begin_time is not None and info.end_time is not None
    assert info.created <= info.begin_time <= info.end_time
    assert [c.location for c in info.children] == ["beta"]
    assert info.children[0].parent_id == info.id
    doc = job.to_dict()
    assert doc.keys() >= JOB_KEYS
    assert doc["children"][0].keys() >= CHILD_KEYS


def test_ids_are_fleet_wide_and_names_need_not_be_unique(
    fleet: Fleet, second_console: Fleet
) -> None:
    name = uniq("twin")
    a = fleet.start("echo", 1, name=name, locations="alpha")
    b = second_console.start("echo", 2, name=name, locations="alpha")
    assert b.id > a.id
    assert [j.id for j in fleet.get(name=name)] == [a.id, b.id]


def test_get_finds_a_job_by_id_name_instance_id_and_state(fleet: Fleet) -> None:
    name = uniq("find")
    job = fleet.start("echo", "x", name=name, locations="alpha")
    fleet.wait([job], timeout=15)
    for ref in (job.id, str(job.id), name, job.instance_id):
        assert [j.id for j in fleet.get(ref)] == [job.id]
    completed = fleet.get(state="Completed")
    assert job.id in [j.id for j in completed]
    assert job.id not in [j.id for j in fleet.get(state=JobState.RUNNING)]
    assert [j.id for j in fleet.get(name=name[:-3] + "*")] == [job.id]
    # a child can be found by its own id
    child_id = job.info.child_ids[0]
    assert fleet.get(child_id)[0].info.parent_id == job.id


@pytest.mark.parametrize("ref", ["999999", "no-such-job", "6a1f0c7e-0000-4000-8000-000000000000"])
def test_an_unknown_job_is_not_found_never_pending(fleet: Fleet, ref: str) -> None:
    with pytest.raises(JobNotFoundError, match="no job"):
        fleet.get(ref)


def test_arguments_arrive_as_json_values_and_nothing_else(fleet: Fleet) -> None:
    job = fleet.start("echo", 5, True, None, [1, "two"], {"a": {"b": 3}}, locations="alpha")
    fleet.wait([job], timeout=15)
    assert list(fleet.receive(job)) == [5, True, None, [1, "two"], {"a": {"b": 3}}]


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan"), {"k": b"bytes"}])
def test_a_value_json_cannot_carry_is_refused_before_anything_is_queued(
    fleet: Fleet, bad: object
) -> None:
    before = fleet.registry.r.get(f"{fleet.config.prefix}seq")
    with pytest.raises(ArgumentError, match="cannot be sent as JSON"):
        fleet.start("echo", "fine", bad, locations="alpha")
    assert fleet.registry.r.get(f"{fleet.config.prefix}seq") == before


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch": 1.5}, "batch \\(hosts per wave\\) must be a whole number, got 1.5"),
        ({"batch": True}, "must be a whole number, got True"),
        ({"max_failures": 0.5}, "max failures must be a whole number"),
        ({"throttle_limit": "2"}, "throttle limit must be a whole number, got '2'"),
        ({"start_timeout": float("nan")}, "start timeout must be a finite number"),
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"start_timeout": 1e12}, "start timeout must be at most 1000000000 seconds"),
        ({"prompt_timeout": "x"}, "prompt timeout must be a number of seconds, got 'x'"),
        ({"timeout": -1}, "timeout must be positive, got -1"),
        ({"batch": 1, "batch_wait": float("nan")}, "batch wait must be a finite number"),
        ({"kwargs": 5}, "kwargs must be a dict of keyword arguments, got 5"),
        ({"all_hosts": "no"}, "all_hosts must be True or False, got 'no'"),
        ({"target": 5}, "target must be text or a list of text, got 5"),
        ({"locations": b"alpha"}, "locations must be text or a list of text"),
        ({"locations": {"alpha": 1}}, "locations must be text or a list of text"),
        ({"locations": ""}, "no location named in ''"),
        ({"locations": [" ", ","]}, "no location named in"),
        # a name get, stop and remove would read as a pattern ('*': every job)
        ({"name": "*"}, r"must not hold \*, \? or \["),
        ({"name": "[x]"}, r"must not hold \*, \? or \["),
        ({"name": "nightly?"}, r"must not hold \*, \? or \["),
    ],
)
def test_a_start_option_that_cannot_work_is_refused_before_anything_is_queued(
    fleet: Fleet, options: dict[str, object], message: str
) -> None:
    # a value the job's record cannot hold would fail later, on a worker or in every console
    # that reads the job: it is refused here, naming the option, and no job is made
    before = fleet.registry.r.get(f"{fleet.config.prefix}seq")
    options = {"locations": "alpha", **options}
    with pytest.raises(FleetJobsError, match=message) as refused:
        fleet.start("echo", "x", **options)  # type: ignore[arg-type]
    assert isinstance(refused.value, (ArgumentError, NoHostError))
    assert fleet.registry.r.get(f"{fleet.config.prefix}seq") == before


def test_what_names_no_job_is_refused_before_redis_is_asked() -> None:
    # a None where a job was expected, a float, a list where one job goes, a filter of the
    # wrong type: an ArgumentError that says what a job reference is, not a TypeError, and
    # before any round trip (this fleet's Redis does not even answer)
    fleet = Fleet("redis://127.0.0.1:1/0")
    for call, message in (
        (lambda: fleet.receive(None), "a job is named by a Job, its Id"),  # type: ignore[arg-type]
        (lambda: fleet.stop(None), "or a list of them; got None"),  # type: ignore[arg-type]
        (lambda: fleet.get(3.5), "got 3.5"),  # type: ignore[arg-type]
        (lambda: fleet.get(b"Nap"), "got b'Nap'"),  # type: ignore[arg-type]
        (lambda: fleet.info([1, 2]), "got \\[1, 2\\]"),  # type: ignore[arg-type]
        (lambda: fleet.remove([None]), "got None in \\[None\\]"),  # type: ignore[list-item]
        (lambda: fleet.get(newest=-1), "newest must be at least 1"),
        (lambda: fleet.get(name=5), "name must be text, got 5"),  # type: ignore[arg-type]
        (lambda: fleet.get(state="bogus"), "unknown state 'bogus'"),
        (lambda: fleet.get(state=5), "a state is a JobState or its name"),  # type: ignore[arg-type]
        (lambda: fleet.get(since=float("nan")), "a time is Unix seconds, a datetime or text"),
        (lambda: fleet.get(until=[1]), "got \\[1\\]"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ArgumentError, match=message):
            call()


def test_numbers_and_times_of_any_real_kind_are_taken(fleet: Fleet) -> None:
    # a Decimal or a Fraction of seconds, a datetime for since: what Python users hold
    from datetime import datetime, timedelta
    from decimal import Decimal
    from fractions import Fraction

    job = fleet.start(
        "echo", "x", locations="alpha", start_timeout=Decimal("30.5"), timeout=Fraction(60)
    )
    assert fleet.wait([job], timeout=15)
    since = datetime.now() - timedelta(minutes=5)
    assert job.id in [j.id for j in fleet.get(since=since)]


def test_one_target_or_fact_filter_may_be_given_as_text(fleet: Fleet) -> None:
    # a string is one filter, not a list of its characters
    with pytest.raises(NoHostError, match="role=nothing-has-this"):
        fleet.start("echo", "x", target="role=nothing-has-this")
    with pytest.raises(NoHostError, match="os=nothing-has-this"):
        fleet.start("echo", "x", where="os=nothing-has-this")


def test_an_unknown_action_is_refused_naming_what_the_host_offers(fleet: Fleet) -> None:
    with pytest.raises(UnknownActionError, match=r"unknown action 'nope'.*offers.*echo"):
        fleet.start("nope", locations="alpha")


def test_run_is_refused_where_the_operator_did_not_allow_it(
    fleet: Fleet, locked: LocalWorkers
) -> None:
    with pytest.raises(ShellNotAllowedError, match="--allow-shell"):
        fleet.start("run", "id", locations="locked")
    # the same host runs actions that run no command
    job = fleet.start("echo", "ok", locations="locked")
    assert fleet.wait([job], timeout=15) and list(fleet.receive(job)) == ["ok"]


def test_a_host_a_selection_chose_that_lacks_the_action_fails_its_part_alone(
    fleet: Fleet, locked: LocalWorkers
) -> None:
    # given hosts chosen by a glob (as a target or --all chooses them), one of which does not
    # allow run: a host that joined a role without --allow-shell
    job = fleet.start("run", "echo hi", locations=["alpha", "lock*"])
    # then the start says so, the host that can runs it, and only the other's part fails
    assert any(w.startswith("the worker on locked does not allow 'run'") for w in job.warnings)
    [done] = fleet.wait([job], timeout=20)
    by_host = {c.location: c for c in done.info.children}
    assert by_host["alpha"].state is JobState.COMPLETED
    assert by_host["locked"].state is JobState.FAILED
    assert "--allow-shell" in (by_host["locked"].reason or "")
    assert list(fleet.receive(job, location="alpha")) == ["hi"]
    # a host named outright is still refused at once, nothing started
    with pytest.raises(ShellNotAllowedError, match="--allow-shell"):
        fleet.start("run", "id", locations=["alpha", "locked"])
    # and a selection none of whose hosts can run it is refused too
    with pytest.raises(ShellNotAllowedError, match="--allow-shell"):
        fleet.start("run", "id", locations="lock*")


def test_a_location_nobody_serves_that_is_near_one_online_is_taken_for_a_typo(
    fleet: Fleet,
) -> None:
    # a typo (alpah for alpha) queued a job that never runs, saying only that no worker serves
    # alpah: it now names the host meant
    job = fleet.start("echo", "x", locations="alpah")
    [warning] = job.warnings
    assert "no worker serves location 'alpah' now (did you mean 'alpha'?)" in warning, warning
    # and a name like none online is only the plain warning
    far = fleet.start("echo", "x", locations=uniq("zz"))
    assert "did you mean" not in far.warnings[0], far.warnings
    fleet.remove([job, far], force=True)


def test_a_worker_refuses_run_it_was_not_allowed_even_if_the_console_could_not_check(
    fleet: Fleet, logs: object
) -> None:
    # given a job for a location no worker serves yet (the console cannot check the host)
    loc = uniq("late")
    job = fleet.start("run", "echo should not run", locations=loc)
    assert any("no worker serves location" in w for w in job.warnings)
    # when that host's worker starts without --allow-shell
    with LocalWorkers(fleet.config, [[loc]], concurrency=1, extra_args=INCLUDE):
        assert fleet.wait([job], timeout=20)
    # then the job failed with a reason that says why, and nothing ran
    assert job.state is JobState.FAILED
    assert "--allow-shell" in (job.reason or "")
    got = fleet.receive(job)
    assert list(got) == [] and "--allow-shell" in got.errors[0]


def test_bad_arguments_are_refused_at_start_with_the_actions_parameters(fleet: Fleet) -> None:
    before = len(fleet.get())
    with pytest.raises(ArgumentError, match=r"sleep: missing a required argument: 'seconds'"):
        fleet.start("sleep", locations="alpha")  # seconds missing
    # a value not of the type its parameter declares, as the command line refuses its word
    # (it was queued, then Failed on the worker: "could not convert string to float")
    with pytest.raises(ArgumentError, match=r"^sleep: SECONDS must be a float, got 'abc'$"):
        fleet.start("sleep", "abc", locations="alpha")
    with pytest.raises(ArgumentError, match=r"^processes: TOP must be a whole number, got True"):
        fleet.start("processes", top=True, locations="alpha")
    assert len(fleet.get()) == before  # nothing was queued
    # a whole number where a number is declared is one, and so is text the command line
    # reads as one, as it always was (the action converts it)
    for seconds in (0, "0"):
        quick = fleet.start("sleep", seconds, locations="alpha")
        assert fleet.wait([quick], timeout=15)[0].info.state is JobState.COMPLETED


def test_an_action_that_raises_fails_its_job_and_keeps_what_it_wrote(fleet: Fleet) -> None:
    job = fleet.start("fail_with", "disk full", locations="alpha")
    fleet.wait([job], timeout=15)
    assert job.state is JobState.FAILED and job.reason == "disk full"
    got = fleet.receive(job)
    assert list(got) == ["before the failure"] and got.errors == ["disk full"]
    plain = fleet.start("fail_with", "boom", True, locations="alpha")
    fleet.wait([plain], timeout=15)
    assert plain.reason == "ValueError: boom"


def test_returned_lists_and_generators_unroll_into_output(fleet: Fleet) -> None:
    gen = fleet.start("generate", 3, locations="alpha")
    lst = fleet.start("files", "/", 2, locations="alpha")
    fleet.wait([gen, lst], timeout=15)
    assert list(fleet.receive(gen)) == [{"Index": 0}, {"Index": 1}, {"Index": 2}]
    listed = list(fleet.receive(lst))
    assert len(listed) == 2 and all({"Name", "Length", "Mode"} <= row.keys() for row in listed)


def test_files_lists_the_first_n_of_an_absolute_folder_zero_is_none(fleet: Fleet) -> None:
    # Select-Object -First 0 selects nothing; a count below 0 or a folder relative to
    # wherever the worker was started says so, as the job's Reason
    none = fleet.start("files", "/", 0, locations="alpha")
    below = fleet.start("files", "/", -1, locations="alpha")
    relative = fleet.start("files", "etc", 2, locations="alpha")
    fleet.wait([none, below, relative], timeout=15)
    assert none.state is JobState.COMPLETED and list(fleet.receive(none)) == []
    assert below.state is JobState.FAILED and "0 or more, got -1" in (below.reason or "")
    assert relative.state is JobState.FAILED
    assert "must be an absolute path, got 'etc'" in (relative.reason or "")


def test_the_readmes_python_example_runs_as_written(config: Config, fleet: Fleet) -> None:
    # given README's first Python block, on this fleet (its settings; alpha for web01, which
    # README's CLI section starts a worker for: its first start went to this machine's name,
    # which no worker of README's served, and waited out its timeout saying nothing)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Fleet("redis://127.0.0.1:6379/0")' in block and '"web01"' in block
    code = block.replace('Fleet("redis://127.0.0.1:6379/0")', "Fleet(config=CONFIG)")
    code = code.replace('"web01"', '"alpha"')
    assert block.count('"web01"') == 2
    code = code.replace('name="Nap"', f'name="{uniq("Nap")}"')
    # when it runs, then it runs to its end: every handle it uses is one it still holds
    scope: dict[str, object] = {"CONFIG": config}
    exec(compile(code, "README.md", "exec"), scope)
    assert list(scope["values"]) == ["done"]  # type: ignore[call-overload]
    assert scope["job"].warnings == ()  # type: ignore[attr-defined]
    assert scope["done"]
    with pytest.raises(JobNotFoundError):
        fleet.info(scope["top"].id)  # type: ignore[attr-defined]


def test_values_json_cannot_carry_come_back_as_text(fleet: Fleet) -> None:
    job = fleet.start("odd_values", locations="alpha")
    fleet.wait([job], timeout=15)
    [value] = list(fleet.receive(job))
    assert job.state is JobState.COMPLETED
    assert value["set"] == "{1}" and isinstance(value["when"], list)


def test_a_job_outlives_the_console_that_started_it(config: object, fleet: Fleet) -> None:
    with Fleet(config=fleet.config) as first:
        job = first.start("sleep", 0.5, "still here", name=uniq("orphan"), locations="beta")
    # the first console is closed; another one finds the job and its output
    assert fleet.wait([job.id], timeout=15)
    assert list(fleet.receive(job.id)) == ["still here"]


def test_a_job_timeout_fails_a_job_that_runs_too_long(fleet: Fleet) -> None:
    job = fleet.start("sleep", 30, locations="alpha", timeout=1)
    assert fleet.wait([job], timeout=10)
    assert job.state is JobState.FAILED and job.reason == "timed out after 1 s"


def test_arguments_nested_deeper_than_a_worker_takes_are_refused_at_start(fleet: Fleet) -> None:
    # a worker refuses a message nested more than 100 levels (Celery pickles it for its
    # pool); a signed message carries the arguments 5 levels in: a console stops them first
    with pytest.raises(ArgumentError, match=r"argument 1 is nested more than 64 levels deep"):
        fleet.start("echo", nested(65), locations="alpha")
    with pytest.raises(ArgumentError, match=r"keyword argument 'x' is nested more than 64"):
        fleet.start("echo", x=nested(65), locations="alpha")
    job = fleet.start("echo", nested(64), locations="alpha")  # the most it takes: it runs
    assert fleet.wait([job], timeout=20) and job.state is JobState.COMPLETED
    assert nested_too_deep(nested(100), MAX_DEPTH) is False
    assert nested_too_deep(nested(101), MAX_DEPTH) is True
