"""``fleetjobs receive`` of a job whose output holds objects: a run of objects prints as one
table, yet a record leaves Redis only once printed, and ``--wait`` goes on printing as the
records come."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

from fleetjobs import Config, Fleet, JobState
from fleetjobs.records import BATCH

from .conftest import ROOT, console_env, eventually

LINES = 3000  # three batches of the console's takes


def _lines(records: list[object]) -> list[object]:
    return [r for r in records if isinstance(r, str)]


def test_a_reader_gone_after_an_object_gives_back_all_it_did_not_print(
    config: Config, fleet: Fleet
) -> None:
    # given a finished job that wrote an object, then 3,000 lines
    job = fleet.start("object_then_lines", LINES, locations="alpha")
    assert fleet.wait([job], timeout=30)
    # when its receive is read two lines (| head -2: the table's header) and then no more
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "receive", str(job.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=console_env(config),
        cwd=ROOT,
        text=True,
    )
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    proc.wait(timeout=60)
    # then it ended as | head ends a tool, and the next receive gets, in order, every line
    # the first had not written to the pipe: it printed a batch at most (the pipe held it
    # as the reader went), and the rest went back
    assert proc.returncode == 141 and "Disk" in head[0], (head, proc.stderr.read())
    lines = [f"line{i}" for i in range(1, LINES + 1)]
    again = _lines(list(fleet.receive(job)))
    assert len(again) >= LINES - BATCH and again == lines[LINES - len(again) :]


KILLED_CONSOLE = """
import sys
import fleetjobs.records
fleetjobs.records.LEASE = 1.0  # the lease this console's takes carry
from fleetjobs.cli.app import main
main(["receive", sys.argv[1]])
"""


def test_a_console_killed_while_it_prints_a_table_loses_none_of_it(
    config: Config, fleet: Fleet
) -> None:
    # given a finished job that wrote more rows of a table than a pipe holds
    count = 12 * BATCH
    job = fleet.start("rows_then_warning", count, locations="alpha")
    assert fleet.wait([job], timeout=60)
    # when a console receiving it is stuck writing a table (its reader reads nothing yet),
    # and is killed there
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONSOLE, str(job.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=console_env(config),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    time.sleep(4.0)  # long enough to take every batch, where nothing holds it back
    assert proc.poll() is None, "it was not stuck: the pipe took all it printed"
    proc.kill()
    proc.wait(timeout=30)
    lines = proc.stdout.read().decode().splitlines()
    printed = {int(w[0]) for w in map(str.split, lines) if w and w[0].isdigit()}  # table rows
    # then, its lease over, the next receive gets every row it had not printed
    time.sleep(1.2)
    again = {r["Row"] for r in fleet.receive(job) if isinstance(r, dict)}
    missing = set(range(count)) - printed - again
    print(f"rows printed {len(printed)}, received again {len(again)}, lost {len(missing)}")
    assert 0 in printed and not missing
    assert len(again) < count  # what it had printed (and acknowledged) did not all come again


def test_receive_wait_prints_a_table_and_what_follows_as_they_come(
    config: Config, fleet: Fleet
) -> None:
    # given a job that writes an object, then a line every second for 6 s
    job = fleet.start("object_then_lines", 6, 1.0, locations="alpha")
    # when a console follows it
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "receive", "--wait", str(job.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=console_env(config),
        cwd=ROOT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        # then the table's row, and the first line after it, are printed while the job
        # still runs, not when it ends
        seen = [proc.stdout.readline() for _ in range(3)]
        assert "sda" in seen[2], seen
        assert proc.stdout.readline().strip() == "line1"
        assert fleet.info(job).state is JobState.RUNNING
        rest = proc.stdout.read().split()
    finally:
        proc.send_signal(signal.SIGTERM) if proc.poll() is None else None
        proc.wait(timeout=30)
    assert rest == [f"line{i}" for i in range(2, 7)] and proc.returncode == 0


def test_receive_wait_json_stopped_midway_prints_valid_json(config: Config, fleet: Fleet) -> None:
    # given a console following a job that writes an object, then a line a second, as JSON
    job = fleet.start("object_then_lines", 12, 1.0, locations="alpha")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "receive", "--wait", "--json", str(job.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=console_env(config),
        cwd=ROOT,
        text=True,
    )
    # when it is stopped midway (SIGTERM: a timeout(1) around it, a service manager)
    time.sleep(4.5)  # the object and a few lines printed (the job writes one a second)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # then what it printed is one valid JSON array (it ended after a record's '}'), and
    # nothing it printed is lost to the next receive
    printed = json.loads(out)
    assert proc.returncode == 143 and printed and printed[0]["stream"] == "output", err
    fleet.stop(job)
    lines = [r["data"] for r in printed if isinstance(r["data"], str)]
    assert lines and lines == [f"line{i}" for i in range(1, len(lines) + 1)], lines
    # (the record it printed as the signal came goes back: printed again, never lost)
    rest = [r.data for r in fleet.receive(job).records if r.stream == "output"]
    assert not rest or rest[0] in (lines[-1], f"line{len(lines) + 1}"), (lines, rest)


def test_receive_of_a_job_on_several_hosts_prints_each_line_with_its_host(
    config: Config, fleet: Fleet
) -> None:
    # given a job that wrote a line and an object on each of two hosts
    job = fleet.start("where", locations="alpha,beta")
    text = fleet.start("echo", "k", locations="alpha,beta")
    assert fleet.wait([job, text], timeout=30)
    # when both are received on the command line
    done = subprocess.run(
        [sys.executable, "-m", "fleetjobs", "receive", str(text.id), str(job.id)],
        capture_output=True,
        text=True,
        env=console_env(config),
        cwd=ROOT,
        timeout=60,
    )
    # then each line says its host, as invoke prints it, and the objects' table has a
    # Location column
    out = done.stdout.splitlines()
    assert sorted(out[:2]) == ["alpha: k", "beta: k"], out
    assert out[2].split()[0] == "Location" and {r.split()[0] for r in out[4:]} == {
        "alpha",
        "beta",
    }


def test_objects_of_several_hosts_are_one_table_whatever_lines_come_between(
    config: Config, fleet: Fleet
) -> None:
    # given a job whose hosts each wrote an object, then a VERBOSE line (stderr)
    job = fleet.start("echo", {"Server": "s1", "Online": True}, verbose="checked",
                      locations="alpha,beta")  # fmt: skip
    assert fleet.wait([job], timeout=30)
    # when it is received
    done = _receive(config, str(job.id))
    # then the objects print as one table (the seed's $jobs | Receive-Job | Format-Table),
    # and each host's VERBOSE line goes to stderr
    out = done.stdout.splitlines()
    assert len(out) == 4 and out[0].split() == ["Server", "Online", "Location"], out
    assert [row.split()[-1] for row in out[2:]] == ["alpha", "beta"], out
    assert sorted(done.stderr.splitlines()) == [
        "VERBOSE: [alpha] checked", "VERBOSE: [beta] checked"
    ], done.stderr  # fmt: skip


def _receive(config: Config, *args: str, stdout: Any = subprocess.PIPE) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "fleetjobs", "receive", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=console_env(config),
        cwd=ROOT,
        timeout=60,
    )


def test_a_receive_that_cannot_write_its_table_gives_all_of_it_back(
    config: Config, fleet: Fleet
) -> None:
    # given a finished job that wrote two rows, then a warning (printed on stderr), then text
    job = fleet.start("rows_then_warning", 2, locations="alpha")
    assert fleet.wait([job], timeout=30)
    # when a receive's output cannot be written (a full disk): the warning it could print
    with open("/dev/full", "w") as full:
        failed = _receive(config, str(job.id), stdout=full)
    assert failed.returncode == 1 and "after the rows" not in failed.stderr, failed.stderr
    # then the next receive gets every record, the rows first: none was taken unprinted
    again = list(fleet.receive(job).records)
    assert [r.data for r in again if r.stream == "output"] == [
        {"Row": 0, "Pad": "x" * 40},
        {"Row": 1, "Pad": "x" * 40},
        "tail",
    ]
    assert [r.data for r in again if r.stream == "warning"] == ["after the rows"]


def test_a_child_named_with_its_parent_is_received_once(config: Config, fleet: Fleet) -> None:
    # given a job on two hosts, received as the parent and one of its children
    job = fleet.start("echo", "k", locations="alpha,beta")
    assert fleet.wait([job], timeout=30)
    child = next(c for c in job.info.children if c.location == "alpha")
    first = _receive(config, str(job.id), str(child.id))
    # then each record is printed once, and taken: the next receive has nothing
    assert sorted(first.stdout.splitlines()) == ["alpha: k", "beta: k"], first.stderr
    assert _receive(config, str(job.id), str(child.id)).stdout == ""


def test_one_host_of_several_received_with_location_prints_no_host(
    config: Config, fleet: Fleet
) -> None:
    job = fleet.start("echo", "k", locations="alpha,beta")
    assert fleet.wait([job], timeout=30)
    assert _receive(config, "--location", "alpha", str(job.id)).stdout == "k\n"


def test_a_failed_childs_reason_is_said_once_and_only_for_what_was_received(
    config: Config, fleet: Fleet
) -> None:
    # given a job on two hosts whose part on beta failed
    job = fleet.start("fail_on", "beta", locations="alpha,beta")
    assert fleet.wait([job], timeout=30)
    beta = next(c for c in job.info.children if c.location == "beta")
    # when the parent and its failed child are received together, its Reason is said once
    both = _receive(config, "--keep", str(job.id), str(beta.id))
    assert both.returncode == 1
    assert [ln for ln in both.stderr.splitlines() if ln.startswith("ERROR:")] == [
        "ERROR: [beta] refused on beta"
    ], both.stderr
    # and alpha's part alone says nothing of beta's, and did not fail
    alpha = _receive(config, "--keep", "--location", "alpha", str(job.id))
    assert alpha.returncode == 0 and "ERROR" not in alpha.stderr, alpha.stderr


def test_what_receive_says_after_the_records_is_of_the_children_it_received(
    config: Config, fleet: Fleet
) -> None:
    # given a job whose part on beta failed: alpha's part alone, as JSON, did not fail
    failed = fleet.start("fail_on", "beta", locations="alpha,beta")
    assert fleet.wait([failed], timeout=30)
    alone = _receive(config, "--keep", "--json", "--location", "alpha", str(failed.id))
    assert alone.returncode == 0, alone.stderr
    # and a job whose part on beta asks a question: said once for beta, never for alpha
    asking = fleet.start("ask_on", "beta", locations="alpha,beta")
    eventually(lambda: fleet.info(asking).state.value == "Blocked", timeout=30)
    beta = next(c for c in fleet.info(asking).children if c.location == "beta")
    try:
        both = _receive(config, "--keep", str(asking.id), str(beta.id))
        assert both.stderr.count("Blocked:") == 1, both.stderr
        alpha = _receive(config, "--keep", "--location", "alpha", str(asking.id))
        assert "Blocked:" not in alpha.stderr, alpha.stderr
    finally:
        fleet.stop([asking], timeout=10)
