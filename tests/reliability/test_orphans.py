"""A job's processes die with the job: a killed pool process or worker leaves no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from fleetjobs.workers import reaper

from fleetjobs import Fleet, JobState
from fleetjobs.embedded import LocalWorkers
from fleetjobs.store import Store

from ..conftest import INCLUDE, eventually, uniq
from .support import fleet_with, group, own_config, stat

# a shell that waits on a grandchild: the shell gets the parent-death signal, `sleep` does not
COMMAND = "sleep 300; echo never"


def running_group(fleet: Fleet, registry: Store, job_id: int) -> int:
    """The process group the job's command runs in, as the registry recorded it."""
    child = fleet.get(job_id)[0].info.child_ids[0]
    doc = eventually(lambda: registry.r.hget(registry.keys.job(child), "pgids"), timeout=20)
    assert isinstance(doc, str)
    pgid = int(json.loads(doc)["groups"][0][0])
    eventually(lambda: len(group(pgid)) == 2, timeout=10)  # the shell and its sleep
    return pgid


def test_a_killed_pool_process_takes_its_commands_group_along(
    redis_url: str, tmp_path: Path
) -> None:
    cfg = own_config(redis_url)
    loc = uniq("orphans")
    with fleet_with(cfg, [loc], tmp_path, concurrency=2, allow_shell=True) as (fleet, _):
        registry = Store.connect(cfg)
        job = fleet.start("run", COMMAND, locations=loc)
        pgid = running_group(fleet, registry, job.id)
        pool_process = stat(pgid)[0]  # type: ignore[index]  # the shell's parent runs the job
        # when the pool process running the job is SIGKILLed (the OOM killer)
        killed = time.monotonic()
        os.kill(pool_process, signal.SIGKILL)
        # then the job fails, and no process of its group is left
        assert fleet.wait([job], timeout=20, force=True) and job.state is JobState.FAILED
        failed = time.monotonic() - killed
        eventually(lambda: not group(pgid), timeout=10)
        gone = time.monotonic() - killed
        bound = cfg.heartbeat_interval
        print(
            f"\npool process killed: job Failed after {failed:.2f} s, its process group gone "
            f"after {gone:.2f} s (bound: Failed + one heartbeat, {bound:g} s); left: 0"
        )
        assert not registry.r.hget(
            registry.keys.job(fleet.get(job.id)[0].info.child_ids[0]), "pgids"
        )
        registry.close()
        # and the pool process made in its place starts cleanly (a thread of the worker's
        # whose _stop hid threading's own logged "Exception ignored" at each such fork)
        after = fleet.start("echo", "after", locations=loc)
        assert fleet.wait([after], timeout=20) and after.state is JobState.COMPLETED
    log = (tmp_path / "worker-0.log").read_text()
    assert "Exception ignored" not in log, log[-3000:]


def test_a_killed_worker_leaves_no_orphans_once_a_worker_serves_the_host_again(
    redis_url: str, logs: Path
) -> None:
    cfg = own_config(redis_url)
    loc = uniq("orphans")
    with fleet_with(cfg, [loc], logs, concurrency=2, allow_shell=True) as (fleet, workers):
        registry = Store.connect(cfg)
        job = fleet.start("run", COMMAND, locations=loc)
        pgid = running_group(fleet, registry, job.id)
        # when the whole worker is SIGKILLed (its pool processes with it)
        killed = time.monotonic()
        os.killpg(workers.procs[0].pid, signal.SIGKILL)
        workers.procs[0].wait()
        workers.procs.clear()
        # then the shell dies with it at once (parent-death signal); its `sleep` lives on
        eventually(lambda: len(group(pgid)) == 1, timeout=5)
        shell_gone = time.monotonic() - killed
        # and once a worker serves the host again, the job fails and its group is ended
        with LocalWorkers(cfg, [[loc]], concurrency=1, extra_args=INCLUDE, log_dir=logs):
            assert fleet.wait([job], timeout=30, force=True) and job.state is JobState.FAILED
            failed = time.monotonic() - killed
            eventually(lambda: not group(pgid), timeout=10)
            gone = time.monotonic() - killed
        bound = cfg.host_ttl + cfg.disconnect_grace + cfg.heartbeat_interval
        print(
            f"\nworker killed: the shell died after {shell_gone:.2f} s, the job Failed after "
            f"{failed:.2f} s, its group gone after {gone:.2f} s "
            f"(bound: host TTL + grace + one heartbeat = {bound:g} s); left: 0"
        )
        registry.close()


def test_a_recorded_group_whose_id_was_reused_is_left_alone() -> None:
    # given a process group that is not the one recorded (same id, another start time)
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        recorded = reaper.group_of(proc.pid)
        assert recorded is not None and recorded[0] == proc.pid
        pgid, started = recorded
        # when the reaper is asked to end the group recorded with another start time
        # then it leaves it alone; with its own start time it ends it
        assert reaper.kill_group(pgid, started + 1) == 0 and proc.poll() is None
        assert reaper.kill_group(pgid, started) == 1
        assert proc.wait(5) == -signal.SIGKILL
        print("\na reused process group id: left alone; the recorded one: killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_command_starts_as_itself_and_not_once_its_starter_is_gone(tmp_path: Path) -> None:
    # run's commands are started without a preexec_fn (Python can vfork): setpriv arms the
    # parent-death signal, a sh checks the starter is still its parent, then execs the command
    marker = tmp_path / "ran"
    argv, preexec = reaper.orphan_proof(["sh", "-c", f"touch {marker}; exec sleep 30"])
    assert preexec is None and Path(argv[0]).name == "setpriv"
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        eventually(marker.exists, timeout=5)
        # the process is the command itself (same pid), as ps shows it
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [b"sleep", b"30"]
    finally:
        proc.kill()
        proc.wait()
    # a starter that died before the signal was armed: the command is not run at all
    marker.unlink()
    check = next(a for a in argv if a.startswith('[ "$PPID" = '))
    orphaned = [check.replace(str(os.getpid()), "1") if a == check else a for a in argv]
    done = subprocess.run(orphaned, timeout=10, check=False)
    assert done.returncode == 137 and not marker.exists()
