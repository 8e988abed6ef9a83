"""The job-control scripts (ask, answer, suspend, park, resume) on a real Redis, driven by
hand with no worker running, and the parent states they produce."""

from __future__ import annotations

from fleetjobs import JobState
from fleetjobs.lifecycle import ANSWERED, JobSpec

from .conftest import Layers

S = JobState


def _state(w: Layers, job_id: int) -> JobState:
    return JobState(w.store.r.hget(w.keys.job(job_id), "state"))


def _running_pair(w: Layers, throttle: int = 32) -> tuple[int, int, int]:
    pid, _, (a, b) = w.lifecycle.create(
        JobSpec("steps", [], {}, "steps", ["h1", "h2"], throttle_limit=throttle)
    )
    assert w.lifecycle.claim(a.id, "wa")[0] == S.RUNNING
    if throttle > 1:
        assert w.lifecycle.claim(b.id, "wb")[0] == S.RUNNING
    return pid, a.id, b.id


def test_ask_blocks_and_an_answer_for_the_question_asked_runs_it_again(layers: Layers) -> None:
    w = layers
    pid, a, b = _running_pair(w)
    state, seq = w.lifecycle.ask(a, {"question": "Go?", "choices": ["yes", "no"], "default": None})
    assert (state, seq) == (S.BLOCKED, 1)
    # one child asking makes the parent Blocked, even while another runs
    assert _state(w, pid) is S.BLOCKED
    assert w.lifecycle.ask(b, {"question": "Go?"})[0] == S.BLOCKED
    assert _state(w, pid) is S.BLOCKED
    [parent] = w.registry.load([pid])
    assert [c.id for c in parent.asking] == [a, b]
    assert parent.to_dict()["prompt"]["question"] == "Go?"
    # an answer to an older question is stale; the right one runs it again
    assert w.lifecycle.answer(a, "yes", seq + 1) == "Stale"
    assert w.lifecycle.answer(a, "yes", seq) == ANSWERED
    assert _state(w, a) is S.RUNNING
    # a second answer to the same question is told it was not taken (it read Running, as
    # the first did, and could not tell the two apart)
    assert w.lifecycle.answer(a, "no", seq) == S.RUNNING
    assert w.registry.control(a)["answer"] == "yes"
    assert _state(w, pid) is S.BLOCKED  # b still asks
    assert w.lifecycle.answer(b, "no") == ANSWERED
    assert _state(w, pid) is S.RUNNING


def test_a_stop_ends_a_question_and_a_stopped_child_cannot_ask(layers: Layers) -> None:
    w = layers
    pid, a, _ = _running_pair(w)
    w.lifecycle.ask(a, {"question": "Go?"})
    w.store.r.set(w.keys.worker("wa"), "{}", px=60_000)
    assert w.lifecycle.stop(pid)[0] == S.STOPPING
    assert _state(w, a) is S.STOPPING
    assert w.lifecycle.answer(a, "yes") == S.STOPPING
    assert w.lifecycle.ask(a, {"question": "Again?"})[0] == S.STOPPING


def test_suspend_park_resume_and_the_parent_state(layers: Layers) -> None:
    w = layers
    pid, a, b = _running_pair(w)
    assert w.lifecycle.suspend(a) == S.SUSPENDING
    assert _state(w, pid) is S.RUNNING  # b still runs
    assert w.lifecycle.park(a)[0] == S.SUSPENDED
    assert w.lifecycle.suspend(b) == S.SUSPENDING
    assert _state(w, pid) is S.SUSPENDING
    assert w.lifecycle.park(b)[0] == S.SUSPENDED
    assert _state(w, pid) is S.SUSPENDED
    # a checkpoint with no suspend asked goes on
    assert w.lifecycle.resume(pid) == S.RUNNING
    assert (_state(w, a), _state(w, b)) == (S.RUNNING, S.RUNNING)
    assert w.lifecycle.park(a)[0] == S.RUNNING


def test_a_suspended_child_gives_its_throttle_slot_unless_the_parent_is_suspended(
    layers: Layers,
) -> None:
    w = layers
    pid, a, b = _running_pair(w, throttle=1)
    w.lifecycle.suspend(a)
    state, due = w.lifecycle.park(a)
    assert state == S.SUSPENDED and due == [b]
    # the whole parent suspended: no slot is given away
    pid, _, (c, _d) = w.lifecycle.create(
        JobSpec("steps", [], {}, "steps", ["h1", "h2"], throttle_limit=1)
    )
    w.lifecycle.claim(c.id, "wa")
    w.lifecycle.suspend(pid)
    assert w.lifecycle.park(c.id) == (S.SUSPENDED, [])
