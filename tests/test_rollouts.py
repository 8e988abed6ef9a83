"""Rollouts (start --batch): waves released and halted inside Redis, driven by hand through the
scripts (no worker), then on real workers through the CLI."""

from __future__ import annotations

import json
import time

import pytest

from fleetjobs import ArgumentError, Config, Fleet, JobState
from fleetjobs.embedded import LocalWorkers
from fleetjobs.lifecycle import JobSpec, NewChild
from fleetjobs.rollouts import batch_size

from .conftest import FAST, INCLUDE, Layers, eventually, make_cli, uniq

S = JobState
SIX = [f"h{i}" for i in range(1, 7)]


def _rollout(w: Layers, **spec: object) -> tuple[int, list[NewChild]]:
    pid, _, children = w.lifecycle.create(JobSpec("echo", [], {}, "echo", SIX, **spec))  # type: ignore[arg-type]
    return pid, children


def _run(w: Layers, child: NewChild, state: JobState = S.COMPLETED) -> list[int]:
    assert w.lifecycle.claim(child.id, "w")[0] == S.RUNNING
    return w.lifecycle.finish(child.id, state, "it broke" if state is S.FAILED else "")[1]


def test_the_next_wave_starts_when_the_last_one_has_finished(layers: Layers) -> None:
    w = layers
    pid, c = _rollout(w, batch=2)
    assert [x.queued for x in c] == [True, True, False, False, False, False]
    assert _run(w, c[0]) == []  # its wave is not done yet
    assert _run(w, c[1]) == [c[2].id, c[3].id]
    [info] = w.registry.load([pid])
    assert info.rollout is not None and (info.rollout.wave, info.rollout.waves) == (2, 3)
    assert _run(w, c[2], S.FAILED) == []  # no limit on failures: it goes on
    assert _run(w, c[3]) == [c[4].id, c[5].id]
    _run(w, c[4])
    _run(w, c[5])
    [info] = w.registry.load([pid])
    assert info.state is S.FAILED and info.rollout and info.rollout.halted is None


def test_fail_fast_halts_at_the_first_failure_and_never_starts_the_rest(layers: Layers) -> None:
    w = layers
    pid, c = _rollout(w, batch=2, max_failures=0)
    _run(w, c[0])
    assert _run(w, c[1]) == [c[2].id, c[3].id]
    w.lifecycle.claim(c[3].id, "w")
    # the second wave's first host fails: the third wave is never started
    assert _run(w, c[2], S.FAILED) == []
    why = "rollout halted after 1 failure: hosts h3"
    [info] = w.registry.load([pid])
    assert [k.state for k in info.children[4:]] == [S.STOPPED, S.STOPPED]
    assert {k.reason for k in info.children[4:]} == {why}
    assert w.lifecycle.claim(c[4].id, "w")[0] == S.STOPPED  # a late message runs nothing
    # the host still running finishes; then the parent is Failed, its Reason saying why
    assert info.children[3].state is S.RUNNING and info.state is S.RUNNING
    assert w.lifecycle.finish(c[3].id, S.COMPLETED)[1] == []
    [info] = w.registry.load([pid])
    assert info.state is S.FAILED
    assert info.reason is not None and info.reason.startswith(why)
    assert info.rollout and info.rollout.halted == why and info.rollout.failed_hosts == ("h3",)


def test_max_failures_goes_on_after_one_failure_and_halts_at_the_second(layers: Layers) -> None:
    w = layers
    pid, c = _rollout(w, batch=2, max_failures=1)
    _run(w, c[0], S.FAILED)
    assert _run(w, c[1]) == [c[2].id, c[3].id]
    _run(w, c[2], S.FAILED)
    [info] = w.registry.load([pid])
    assert info.rollout and info.rollout.halted == "rollout halted after 2 failures: hosts h1, h3"
    assert [k.state for k in info.children[4:]] == [S.STOPPED, S.STOPPED]


def test_halt_running_stops_the_hosts_still_running(layers: Layers) -> None:
    w = layers
    w.store.r.set(w.keys.worker("w"), "{}", px=60_000)
    pid, c = _rollout(w, batch=3, max_failures=0, halt_running=True)
    for child in c[:3]:
        w.lifecycle.claim(child.id, "w")
    w.lifecycle.finish(c[0].id, S.FAILED, "boom")
    [info] = w.registry.load([pid])
    assert [k.state for k in info.children] == [S.FAILED, S.STOPPING, S.STOPPING] + [S.STOPPED] * 3
    w.lifecycle.finish(c[1].id, S.COMPLETED)  # the stop wins
    w.lifecycle.finish(c[2].id, S.COMPLETED)
    [info] = w.registry.load([pid])
    assert info.state is S.FAILED and [k.state for k in info.children[1:3]] == [S.STOPPED] * 2


def test_a_batch_wait_is_kept_in_redis_and_applied_by_the_sweep(layers: Layers) -> None:
    w = layers
    pid, c = _rollout(w, batch=3, batch_wait=0.3)
    for child in c[:3]:
        assert _run(w, child) == []
    [info] = w.registry.load([pid])
    assert info.rollout and info.rollout.next_wave_at is not None
    assert w.lifecycle.sweep()[1] == []  # not due yet
    time.sleep(0.35)
    assert w.lifecycle.sweep()[1] == [x.id for x in c[3:]]
    [info] = w.registry.load([pid])
    assert info.rollout and info.rollout.wave == 2 and info.rollout.next_wave_at is None


def test_a_stopped_rollout_releases_no_more_waves(layers: Layers) -> None:
    w = layers
    pid, c = _rollout(w, batch=2, batch_wait=0.01)
    w.lifecycle.claim(c[0].id, "w")
    _run(w, c[1])
    w.lifecycle.stop(pid)
    time.sleep(0.05)
    assert w.lifecycle.sweep()[1] == []
    [info] = w.registry.load([pid])
    assert all(k.state is S.STOPPED for k in info.children[2:])
    # and what get --children says of it is that it stopped, not that it was done
    assert info.state is S.STOPPED and info.rollout is not None
    assert info.rollout.describe(info.finished) == "rollout stopped at wave 1 of 3 (batch 2)"


def test_a_rollout_stopped_after_a_host_failed_says_it_stopped(layers: Layers) -> None:
    # given a rollout (any number of failures allowed) whose first wave had a host fail
    w = layers
    pid, c = _rollout(w, batch=2, batch_wait=60)
    _run(w, c[0], S.FAILED)
    _run(w, c[1])
    # when it is stopped before its next wave
    w.lifecycle.stop(pid)
    [info] = w.registry.load([pid])
    # then it is Failed (a host failed), and its rollout says it stopped, not that it was done
    assert info.state is S.FAILED and info.rollout is not None
    assert info.rollout.describe(info.finished) == "rollout stopped at wave 1 of 3 (batch 2)"


def test_batch_sizes_from_counts_and_percentages() -> None:
    assert batch_size(2, 6) == 2
    assert batch_size("2", 6) == 2
    assert batch_size("50%", 6) == 3
    assert batch_size("10%", 6) == 1  # rounded up, at least one
    assert batch_size(None, 6) is None
    assert batch_size(None, 6, max_failures=0) == 6  # --fail-fast alone: one wave
    # ... of the throttle limit's hosts at most (a rollout does not throttle: its waves do)
    assert batch_size(None, 6, max_failures=0, throttle=2) == 2
    assert batch_size(None, 6, max_failures=0, throttle=32) == 6
    assert batch_size(3, 6, max_failures=0, throttle=1) == 3  # --batch says it itself
    for bad in ("0", "abc", "150%", "-1", 0):
        with pytest.raises(ArgumentError):
            batch_size(bad, 6)
    with pytest.raises(ArgumentError, match="--batch-wait needs --batch"):
        batch_size(None, 6, batch_wait=5)


# ---- on real workers ----------------------------------------------------------------------


@pytest.fixture
def six(redis_url: str, logs: object) -> object:
    """Six hosts h1..h6 of a fleet of their own, served by one local worker."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('ro')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(cfg, [SIX], allow_shell=True, concurrency=6, extra_args=INCLUDE),
        Fleet(config=cfg) as fleet,
    ):
        yield cfg, fleet


def test_a_rolling_run_on_six_hosts_halts_at_a_failure_of_the_second_wave(six: object) -> None:
    cfg, fleet = six  # type: ignore[misc]
    cli = make_cli(cfg)
    # given six hosts, batch 2, and a command that fails on h3 (the second wave's first host)
    started = cli(
        "start", "--name", "Restart", "--location", ",".join(SIX), "--batch", "2",
        "--fail-fast", "--json", "fail_at", "h3",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["id"]
    # when the console has exited, the rollout goes on in Redis: and halts
    eventually(lambda: fleet.info(job_id).finished, timeout=30)
    got = cli("get", str(job_id), "--children", "--json")
    [doc] = json.loads(got.stdout)
    states = {c["location"]: (c["state"], c["wave"]) for c in doc["children"]}
    assert states == {
        "h1": ("Completed", 1),
        "h2": ("Completed", 1),
        "h3": ("Failed", 2),
        "h4": ("Completed", 2),
        "h5": ("Stopped", 3),
        "h6": ("Stopped", 3),
    }
    why = "rollout halted after 1 failure: hosts h3"
    assert doc["state"] == "Failed" and doc["reason"].startswith(why)
    assert doc["rollout"]["halted"] == why and doc["rollout"]["wave"] == 2
    assert all(c["begin_time"] is None and c["reason"] == why for c in doc["children"][4:])
    # the table says why it halted; receive names the failed hosts
    table = cli("get", str(job_id), "--children")
    assert f"Job {job_id}: {why}" in table.stdout
    received = cli("receive", str(job_id))
    assert why in received.stderr


def test_max_failures_one_goes_on_after_one_failure_then_halts(six: object) -> None:
    _, fleet = six  # type: ignore[misc]
    job = fleet.start("fail_at", "h1,h3", locations=SIX, batch="34%", max_failures=1)
    assert fleet.wait(job, timeout=30)
    info = job.refresh().info
    assert info.rollout is not None and info.rollout.batch == 3  # 34% of 6, rounded up
    assert [c.state for c in info.children] == [S.FAILED, S.COMPLETED, S.FAILED] + [S.STOPPED] * 3
    # h1 and h3 fail in the same wave: the hosts are named in the order they failed
    head, _, hosts = (info.rollout.halted or "").partition(": hosts ")
    assert head == "rollout halted after 2 failures" and set(hosts.split(", ")) == {"h1", "h3"}


def test_fail_fast_without_a_batch_keeps_to_the_throttle_limit(six: object) -> None:
    _, fleet = six  # type: ignore[misc]
    # given --fail-fast and --throttle-limit 2, no --batch, on a command failing on h1
    job = fleet.start("fail_at", "h1", locations=SIX, throttle_limit=2, max_failures=0)
    assert fleet.wait(job, timeout=30)
    info = job.refresh().info
    # then two hosts ran at once (all six did), and the failure stopped the rest unstarted
    assert info.rollout is not None and info.rollout.batch == 2
    assert [c.state for c in info.children] == [S.FAILED, S.COMPLETED] + [S.STOPPED] * 4


def test_a_batch_wait_is_observed_between_waves(six: object) -> None:
    _, fleet = six  # type: ignore[misc]
    job = fleet.start("echo", "hi", locations=SIX[:4], batch=2, batch_wait=1.5)
    assert fleet.wait(job, timeout=30)
    kids = job.refresh().info.children
    first_end = max(c.end_time or 0 for c in kids[:2])
    second_begin = min(c.begin_time or 0 for c in kids[2:])
    assert second_begin - first_end >= 1.5
    assert all(c.state is S.COMPLETED for c in kids)
