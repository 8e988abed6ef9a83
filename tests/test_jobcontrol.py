"""Job control on real workers, from two consoles: Blocked (a job asks, anyone answers) and
Suspended (pause at a checkpoint, resume)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet, JobBlockedError, JobState, JobStateError
from fleetjobs.embedded import LocalWorkers
from fleetjobs.errors import ArgumentError

from .conftest import INCLUDE, CliRunner, eventually, uniq

S = JobState


def _state_is(fleet: Fleet, job_id: int, state: JobState) -> bool:
    return fleet.info(job_id).state is state


# ---- Blocked ----------------------------------------------------------------------------


def test_a_question_blocks_the_job_until_another_console_answers(
    fleet: Fleet, second_console: Fleet
) -> None:
    # given a job whose action asks before it acts
    job = fleet.start("confirm_delete", 40, locations="alpha")
    # then it turns Blocked, with its question readable by any console
    eventually(lambda: _state_is(second_console, job.id, S.BLOCKED))
    prompt = second_console.info(job.id).to_dict()["prompt"]
    assert prompt["question"] == "Delete 40 archived files on alpha?"
    assert prompt["choices"] == ["yes", "no"]
    assert prompt["location"] == "alpha"
    # and the question is among what a receive gets
    got = fleet.receive(job)
    assert list(got) == ["found the files"]
    assert [r.data["question"] for r in got.records if r.stream == "question"] == [
        "Delete 40 archived files on alpha?"
    ]
    # when the other console answers (y means yes)
    second_console.answer(job.id, "y")
    # then the job goes on with that answer and completes
    [done] = fleet.wait(job, timeout=20)
    assert done.info.state is S.COMPLETED
    assert done.info.to_dict()["prompt"] is None
    assert list(fleet.receive(job)) == ["deleted 40"]


def test_of_two_consoles_answering_at_once_one_is_taken_and_the_other_told(
    fleet: Fleet, second_console: Fleet
) -> None:
    # given a job that asks, seen asking by two consoles
    job = fleet.start("confirm_delete", 7, locations="alpha")
    eventually(lambda: _state_is(second_console, job.id, S.BLOCKED))
    seen_there = second_console.info(job.id)
    # when both answer the question they saw, differently, the second a moment later (past
    # the look at the job that every answer makes first: the race two consoles can run)
    fleet.answer(job.id, "no")
    # then the second is told its answer was not taken, and the job went on with the first
    with pytest.raises(JobStateError, match="answered by someone else first"):
        second_console.control.answer([seen_there], "yes")
    [done] = fleet.wait(job, timeout=20)
    assert done.info.state is S.COMPLETED
    assert list(fleet.receive(job)) == ["found the files", "kept them"]


def test_an_answer_that_is_not_a_choice_is_refused_and_the_job_still_asks(
    fleet: Fleet, second_console: Fleet
) -> None:
    job = fleet.start("pick", locations="alpha")
    eventually(lambda: _state_is(fleet, job.id, S.BLOCKED))
    with pytest.raises(ArgumentError, match=r"'sdz' is not one of its answers \(sda, sdb\)"):
        second_console.answer(job, "sdz")
    assert fleet.info(job.id).state is S.BLOCKED
    second_console.answer(job, "SDB")
    [done] = fleet.wait(job, timeout=20)
    assert list(fleet.receive(done)) == ["picked sdb"]


def test_a_prompt_timeout_takes_the_default_answer(fleet: Fleet) -> None:
    job = fleet.start(
        "confirm_delete", 3, locations="alpha", prompt_timeout=1.0, default_answer="no"
    )
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is S.COMPLETED
    got = fleet.receive(job)
    assert list(got) == ["found the files", "kept them"]
    assert any("took the default answer 'no'" in w for w in got.warnings)


def test_a_default_answer_means_what_the_same_answer_given_would(fleet: Fleet) -> None:
    # taken raw, 'y' and 'YES' were no to a yes/no question (the files kept), and an answer
    # outside the choices reached the action ('picked sdz')
    yes = [
        fleet.start("confirm_delete", 3, locations="alpha", prompt_timeout=1, default_answer=a)
        for a in ("y", "YES")
    ]
    odd = fleet.start("pick", locations="alpha", prompt_timeout=1, default_answer="sdz")
    upper = fleet.start("pick", locations="alpha", prompt_timeout=1, default_answer="SDB")
    assert len(fleet.wait([*yes, odd, upper], timeout=30)) == 4
    for job in yes:
        assert list(fleet.receive(job)) == ["found the files", "deleted 3"]
    assert list(fleet.receive(upper)) == ["picked sdb"]
    assert fleet.info(odd).state is S.FAILED
    assert fleet.info(odd).children[0].reason == (
        "nobody answered 'Which disk?' within 1 s, and the default answer 'sdz' is not one "
        "of its answers (sda, sdb)"
    )


def test_a_prompt_timeout_with_no_default_fails_the_job_with_a_clear_reason(
    fleet: Fleet,
) -> None:
    job = fleet.start("confirm_delete", 3, locations="alpha", prompt_timeout=1.0)
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is S.FAILED
    assert done.info.children[0].reason == (
        "nobody answered 'Delete 3 archived files on alpha?' within 1 s "
        "and it has no default answer"
    )


def test_the_questions_own_default_is_taken_when_the_start_gives_none(fleet: Fleet) -> None:
    job = fleet.start("pick", locations="alpha", kwargs={"default": "sda"}, prompt_timeout=1)
    [done] = fleet.wait(job, timeout=30)
    assert list(fleet.receive(done)) == ["picked sda"]


def test_a_default_that_is_not_text_is_taken_as_its_text(fleet: Fleet) -> None:
    # ctx.ask(default=True): Redis takes no bool, and the job failed when the prompt timed out
    job = fleet.start("ask_default", locations="alpha", kwargs={"default": True}, prompt_timeout=1)
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is S.COMPLETED, done.info.reason
    assert list(fleet.receive(done)) == ["took True"]


def test_stop_ends_a_blocked_job(fleet: Fleet, second_console: Fleet) -> None:
    job = fleet.start("confirm_delete", locations="alpha")
    eventually(lambda: _state_is(fleet, job.id, S.BLOCKED))
    [stopped] = second_console.stop(job.id, timeout=15)
    assert stopped.info.state is S.STOPPED
    assert fleet.info(job.id).to_dict()["prompt"] is None


def test_wait_on_a_job_that_can_only_go_on_with_an_answer_fails_at_once(
    fleet: Fleet, cli: CliRunner
) -> None:
    job = fleet.start("confirm_delete", 7, locations="alpha")
    eventually(lambda: _state_is(fleet, job.id, S.BLOCKED))
    with pytest.raises(JobBlockedError, match=r"Delete 7 archived files on alpha\?"):
        fleet.wait(job, timeout=60)
    # the CLI: one clear line naming the job and its question, exit 1, at once
    began = time.monotonic()
    res = cli("wait", str(job.id))
    assert time.monotonic() - began < 30
    assert res.returncode == 1
    [line] = res.stderr.strip().splitlines()
    assert f"job {job.id} " in line and "Delete 7 archived files on alpha?" in line
    assert f"fleetjobs answer {job.id} yes|no" in line
    # get shows it under the table, and --json under 'prompt'
    shown = cli("get", str(job.id))
    assert f"Blocked: job {job.children[0].id} on alpha asks" in shown.stdout
    doc = json.loads(cli("get", str(job.id), "--json").stdout)
    assert doc[0]["prompt"]["question"] == "Delete 7 archived files on alpha?"
    # and an answer from the CLI (another console) lets it complete
    answered = cli("answer", str(job.id), "no")
    assert answered.returncode == 0, answered.stderr
    [done] = fleet.wait(job, timeout=20)
    assert list(fleet.receive(done))[-1] == "kept them"


def test_fan_out_one_host_asks_the_parent_is_blocked_then_answered(
    fleet: Fleet, second_console: Fleet
) -> None:
    # given a job on two hosts of which only beta asks
    job = fleet.start("ask_on", "beta", "Restart beta's database?", locations="alpha,beta")
    # then alpha completes, beta is Blocked, and so is the parent
    eventually(lambda: _state_is(fleet, job.id, S.BLOCKED))
    info = second_console.info(job.id)
    assert [(c.location, c.state) for c in info.children] == [
        ("alpha", S.COMPLETED),
        ("beta", S.BLOCKED),
    ]
    assert info.to_dict()["prompt"]["location"] == "beta"
    # when the parent is answered, the child that asks gets the answer
    second_console.answer(job, "yes")
    [done] = fleet.wait(job, timeout=20)
    assert done.info.state is S.COMPLETED
    assert sorted(fleet.receive(job)) == ["alpha: done", "beta: done"]


def test_a_parent_whose_children_ask_different_questions_says_which_asks_what(
    fleet: Fleet,
) -> None:
    job = fleet.start("ask_where", locations="alpha,beta")
    eventually(lambda: all(c.state is S.BLOCKED for c in fleet.info(job.id).children))
    a, b = fleet.info(job.id).children
    with pytest.raises(JobStateError, match="ask different questions") as caught:
        fleet.answer(job, "yes")
    assert f"job {a.id} on alpha asks: 'Reboot alpha?'" in str(caught.value)
    assert f"job {b.id} on beta asks: 'Reboot beta?'" in str(caught.value)
    fleet.answer(a.id, "yes")
    fleet.answer(b.id, "no")
    fleet.wait(job, timeout=20)
    assert sorted(fleet.receive(job)) == ["no", "yes"]


# ---- Suspended --------------------------------------------------------------------------


def test_suspend_holds_at_a_checkpoint_and_resume_goes_on(
    fleet: Fleet, second_console: Fleet
) -> None:
    # given a job that counts with a checkpoint before each step
    job = fleet.start("steps", 30, 0.2, locations="alpha")
    eventually(lambda: len(fleet.receive(job, keep=True)) >= 2)
    # when another console suspends it
    [held] = second_console.suspend(job.id, timeout=15)
    # then it holds (Suspending, then Suspended at its next checkpoint) and writes nothing more
    assert held.info.state is S.SUSPENDED
    so_far = len(fleet.receive(job, keep=True))
    time.sleep(1.0)
    assert len(fleet.receive(job, keep=True)) == so_far
    assert fleet.info(job.id).state is S.SUSPENDED
    # and a wait stops at it (not finished), unless forced
    [returned] = fleet.wait(job, timeout=10)
    assert returned.info.state is S.SUSPENDED
    assert fleet.wait(job, timeout=0.5, force=True) == []
    # when the first console resumes it, it goes on where it was and completes
    fleet.resume(job)
    [done] = fleet.wait(job, timeout=30, force=True)
    assert done.info.state is S.COMPLETED
    assert list(fleet.receive(job)) == list(range(1, 31))


def test_suspend_of_an_action_without_checkpoints_is_refused_and_changes_nothing(
    fleet: Fleet, second_console: Fleet
) -> None:
    job = fleet.start("stubborn", 30, locations="alpha")
    eventually(lambda: _state_is(fleet, job.id, S.RUNNING))
    with pytest.raises(JobStateError, match="'stubborn' has no checkpoints on alpha"):
        second_console.suspend(job.id)
    assert fleet.info(job.id).state is S.RUNNING
    fleet.stop(job, timeout=0)


def test_a_suspended_job_can_be_stopped(fleet: Fleet) -> None:
    job = fleet.start("sleep", 60, locations="alpha")
    eventually(lambda: _state_is(fleet, job.id, S.RUNNING))
    assert fleet.suspend(job, timeout=15)[0].info.state is S.SUSPENDED
    [stopped] = fleet.stop(job, timeout=15)
    assert stopped.info.state is S.STOPPED


def test_a_suspended_child_gives_its_throttle_slot_to_the_next(fleet: Fleet) -> None:
    # given two hosts, one at a time
    job = fleet.start("steps", 100, 0.1, locations="alpha,beta", throttle_limit=1)
    eventually(lambda: fleet.info(job.id).children[0].state is S.RUNNING)
    first, second = fleet.info(job.id).children
    assert second.state is S.NOT_STARTED
    # when the running one is suspended, the waiting one starts
    fleet.suspend(first.id, timeout=15)
    eventually(lambda: fleet.info(second.id).state is not S.NOT_STARTED)
    assert fleet.info(first.id).state is S.SUSPENDED
    fleet.stop(job, timeout=15)


def test_suspend_and_resume_a_parent_from_the_cli(fleet: Fleet, cli: CliRunner) -> None:
    job = fleet.start("sleep", 60, locations="alpha,beta")
    eventually(lambda: _state_is(fleet, job.id, S.RUNNING))
    res = cli("suspend", str(job.id))
    assert res.returncode == 0, res.stderr
    assert "Suspended" in res.stdout
    assert all(c.state is S.SUSPENDED for c in fleet.info(job.id).children)
    waited = cli("wait", str(job.id))
    assert waited.returncode == 1  # it returns, but the job has not completed
    assert "is Suspended: it has not finished" in waited.stderr
    # receive --wait stops at it likewise: each host's child said unfinished, exit 1, so
    # that `receive J --wait && next-step` does not go on
    got = cli("receive", "--wait", str(job.id))
    assert got.returncode == 1, got.stderr
    for child in fleet.info(job.id).children:
        assert (
            f"WARNING: job {child.id} on {child.location} is Suspended: it has not finished"
            in got.stderr
        ), got.stderr
    # and in Python a job's own wait says it has not finished, its state why
    handle = fleet.get(job.id)[0]
    assert handle.wait(timeout=10) is False and handle.info.state is S.SUSPENDED
    res = cli("resume", str(job.id))
    assert res.returncode == 0, res.stderr
    assert fleet.info(job.id).state is S.RUNNING
    fleet.stop(job)


def test_suspending_shows_until_the_next_checkpoint(fleet: Fleet, second_console: Fleet) -> None:
    # given a job whose checkpoints are 3 s apart
    job = fleet.start("steps", 3, 3.0, locations="alpha")
    eventually(lambda: len(fleet.receive(job, keep=True)) >= 1)
    # when suspended without waiting, it shows Suspending until its next checkpoint
    [asked] = second_console.suspend(job.id, timeout=0)
    assert asked.info.state is S.SUSPENDING
    eventually(lambda: _state_is(fleet, job.id, S.SUSPENDED), timeout=15)
    second_console.resume(job.id)
    [done] = fleet.wait(job, timeout=30)
    assert done.info.state is S.COMPLETED
    assert list(fleet.receive(job)) == [1, 2, 3]


def test_invoke_prints_the_question_and_goes_on_when_another_console_answers(
    fleet: Fleet, config: object
) -> None:
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    env = {
        **os.environ,
        "FLEETJOBS_REDIS_URL": fleet.config.redis_url,
        "FLEETJOBS_PREFIX": fleet.config.prefix,
    }
    name = f"inv-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetjobs",
            "invoke",
            "-n",
            name,
            "-l",
            "beta",
            "confirm_delete",
            "5",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        eventually(lambda: any(j.info.state is S.BLOCKED for j in fleet.get(name=name)), 30)
        fleet.answer(name, "yes")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["found the files", "deleted 5"]
    assert "QUESTION: Delete 5 archived files on beta? [yes/no]" in err
    assert fleet.get(name=name) == []  # invoke removed it


def test_a_suspend_waits_with_a_job_queued_for_a_host_no_worker_has_served_yet(
    config: Config, fleet: Fleet, logs: Path
) -> None:
    # given a job queued for a host no worker has served: what it will offer is not known
    host = uniq("later")
    job = fleet.start("steps", 3, 0.2, locations=host)
    # when it is suspended, the request is kept (it was refused: "has no checkpoints")
    fleet.suspend(job, timeout=0)
    # then once a worker serves that host, the job holds at its first checkpoint
    with LocalWorkers(config, [[host]], concurrency=1, extra_args=INCLUDE, log_dir=logs):
        eventually(lambda: _state_is(fleet, job.id, S.SUSPENDED), timeout=30)
        assert list(fleet.receive(job, keep=True)) == []
        fleet.resume(job)
        [done] = fleet.wait(job, timeout=30)
        assert done.info.state is S.COMPLETED and list(fleet.receive(job)) == [1, 2, 3]
