"""What an interrupted ``invoke`` had taken is printed before its job is removed (the job,
and its output with it, is gone after), and ``ping --from`` a host no worker serves is an
error, not every server down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any

import pytest

from fleetjobs import Config, Fleet

from .conftest import console, eventually, on_a_terminal, uniq


def test_ctrl_c_in_invoke_prints_the_objects_it_took_before_the_job_goes(
    config: Config, fleet: Fleet
) -> None:
    # given an invoke of a job that writes an object (held for a table), then lines
    name = uniq("invobj")
    proc = console(
        config,
        "invoke",
        "-n",
        name,
        "-l",
        "alpha",
        "object_then_lines",
        "40",
        "0.2",
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "line1\n"  # the object came first, and waits
    # when Ctrl-C comes
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # then the table of what it took is printed, and the job is stopped and removed
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "sda" in out, out
    assert all(j.name != name for j in fleet.get())


def test_ctrl_c_in_invoke_json_prints_the_records_it_took(config: Config, fleet: Fleet) -> None:
    # given an invoke --json (it prints one document, at the end) of a job writing 1..50
    name = uniq("invjson")
    proc = console(
        config,
        "invoke",
        "--json",
        "-n",
        name,
        "-l",
        "alpha",
        "produce",
        "50",
        "0.1",
        stderr=subprocess.PIPE,
    )
    running: Any = None
    deadline = time.monotonic() + 20
    while running is None and time.monotonic() < deadline:
        found = [j for j in fleet.get() if j.name == name]
        running = found[0] if found and found[0].info.begin_time else None
        time.sleep(0.1)
    assert running is not None
    time.sleep(1.0)  # some records written and taken
    # when Ctrl-C comes
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # then the document holds what it took, in order, and the job is gone
    assert proc.returncode == 130, err
    doc = json.loads(out)
    values = [r["data"] for r in doc["records"] if r["stream"] == "output"]
    assert values and values == list(range(1, len(values) + 1)), values
    assert doc["job"]["name"] == name and doc["job"]["state"] in ("Stopped", "Stopping")
    assert all(j.name != name for j in fleet.get())


def test_ping_from_a_host_no_worker_serves_is_an_error(config: Config, fleet: Fleet) -> None:
    before = {j.id for j in fleet.get()}
    argv = ["ping", "--from", "no-such-host", "alpha"]
    proc = console(config, *argv, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert err.strip().splitlines() == [
        "fleetjobs: error: --from no-such-host: no worker has ever served this location"
    ]
    assert out == "" and {j.id for j in fleet.get()} <= before  # no job was started


def _reading_its_terminal(pid: int, timeout: float = 5.0) -> None:
    """Until process ``pid`` sleeps in the kernel (its prompt's read), seen twice apart."""
    deadline = time.monotonic() + timeout
    asleep = 0
    while asleep < 2 and time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        asleep = asleep + 1 if state == "S" else 0
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, None])  # None: Ctrl-D
def test_an_invoke_interrupted_at_its_question_prints_what_it_took_and_removes_the_job(
    config: Config, fleet: Fleet, sig: signal.Signals | None
) -> None:
    """Ctrl-C and SIGTERM end it; Ctrl-D (no answer from here) leaves the question to
    another console, as an invoke without a terminal does, and it ends once answered."""
    # given an invoke on a terminal, asking the question its job asks
    name = uniq("askint")
    pid, master = on_a_terminal(config, "invoke", "-n", name, "-l", "alpha", "object_then_ask")
    seen = b""
    while b"Go on? [" not in seen or not seen.rstrip().endswith(b":"):  # its prompt
        seen += os.read(master, 1024)
    # when Ctrl-C (or SIGTERM, or Ctrl-D: no answer will come from here) comes at the prompt,
    # once it waits there: a signal the instant before readline waits is taken by Python's
    # handler and not seen by readline's select until a key comes (CPython's own race; a
    # person pressing Ctrl-C then would press it again)
    _reading_its_terminal(pid)
    if sig is None:
        os.write(master, b"\x04")
        while b"another console" not in seen:
            seen += os.read(master, 1024)
        [job] = [j for j in fleet.get() if j.name == name]
        assert job.state.value == "Blocked"
        fleet.answer([job], "yes")  # another console answers it
    else:
        os.kill(pid, sig)
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    _, status = os.waitpid(pid, 0)
    # then it ends as an interrupt ends it: the table it held printed, the job removed
    text = seen.decode(errors="replace")
    assert os.WIFEXITED(status), text
    assert os.WEXITSTATUS(status) == (128 + sig if sig else 0), text
    assert "sda" in text, text
    eventually(lambda: all(j.name != name for j in fleet.get()), timeout=20)


def test_ping_from_a_glob_checks_from_the_hosts_it_names(config: Config, fleet: Fleet) -> None:
    with socket.socket() as listener:  # a port that answers on this machine
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        proc = console(
            config,
            "ping",
            "--from",
            "alph*",
            "127.0.0.1",
            "--port",
            port,
            "--json",
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [(r["Server"], r["Online"]) for r in json.loads(out)] == [("127.0.0.1", True)]


def test_a_second_ctrl_c_while_invoke_stops_its_job_still_prints_and_removes(
    config: Config, fleet: Fleet
) -> None:
    # given an invoke --json of a command that ignores the stop's SIGTERM for a while
    name = uniq("twice")
    script = "echo hi; trap '' TERM INT; sleep 20"
    proc = console(
        config, "invoke", "--json", "-n", name, "-l", "alpha", "run", script, stderr=subprocess.PIPE
    )
    eventually(lambda: any(j.name == name and j.info.begin_time for j in fleet.get()))
    time.sleep(1.0)  # its line written and taken
    # when Ctrl-C comes, and again while the job is being stopped
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # then what it took is printed all the same, and the job is removed
    assert proc.returncode == 130, err
    assert [r["data"] for r in json.loads(out)["records"] if r["stream"] == "output"] == ["hi"]
    eventually(lambda: all(j.name != name for j in fleet.get()), timeout=30)
