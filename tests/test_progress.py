"""What a person sees in a terminal: tables that fit it, a live progress display while a verb
blocks, ``ctx.progress`` as bars; and what a program reads when piped: whole rows, no display.

The terminal is a real pseudo-terminal of 80 columns; the fleet is the session's workers.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

from fleetjobs import Config, Fleet

from .conftest import ROOT, CliRunner, uniq

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def in_terminal(
    config: Config, *args: str, columns: int = 80, timeout: float = 60
) -> tuple[int, str]:
    """Run ``fleetjobs ARGS`` with stdout and stderr on a pseudo-terminal; all it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {
        **os.environ,
        "FLEETJOBS_REDIS_URL": config.redis_url,
        "FLEETJOBS_PREFIX": config.prefix,
        "COLUMNS": str(columns),
        "TERM": "xterm-256color",
    }
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(10)
    return code, b"".join(chunks).decode(errors="replace")


def test_a_table_fits_80_columns_and_piped_rows_are_whole(
    config: Config, cli: CliRunner, fleet: Fleet
) -> None:
    # given a job whose command is far longer than a terminal is wide (three arguments of 60
    # characters: each shows whole in Command, which shortens only a single long value)
    parts = [c * 60 for c in "xyz"]
    long_text = " ".join(parts)
    name = uniq("Wide")
    job = fleet.start("echo", *parts, name=name, locations=["alpha", "beta"])
    fleet.wait([job], timeout=20)
    # when a person lists it in an 80-column terminal
    code, shown = in_terminal(config, "get", name)
    assert code == 0
    lines = [ln for ln in ANSI.sub("", shown).splitlines() if ln.strip()]
    # then each row is one line that fits, with the command cut by an ellipsis
    assert lines[0].split() == ["Id", "Name", "State", "HasMoreData", "Location", "Command"]
    assert len(lines) == 3, lines
    assert all(len(ln) <= 80 for ln in lines), lines
    assert name in lines[2] and "alpha,beta" in lines[2] and lines[2].endswith("…")
    # and piped, the row is whole however long
    piped = cli("get", name).stdout.splitlines()
    assert len(piped) == 3 and long_text in piped[2] and len(piped[2]) > 150
    fleet.remove([job])


def test_control_characters_in_a_command_print_escaped(cli: CliRunner, fleet: Fleet) -> None:
    # given a job whose command carries terminal escapes (a name with them is refused)
    job = fleet.start("echo", "\x1b]0;owned\x07", "\x1b[2J", locations=["alpha"])
    fleet.wait([job], timeout=20)
    # when it is listed
    out = cli("get", str(job.id)).stdout
    # then no raw control character reaches the terminal, and the escapes are readable
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07" in out and "\\x1b[2J" in out
    fleet.remove([job])


def test_wait_shows_live_progress_on_a_terminal(
    config: Config, cli: CliRunner, fleet: Fleet
) -> None:
    # given a job on two hosts that takes a few seconds, one host failing
    name = uniq("Slow")
    job = fleet.start("fail_on", "beta", 3, name=name, locations=["alpha", "beta"])
    # when a person waits for it in a terminal
    code, shown = in_terminal(config, "wait", name)
    text = ANSI.sub("", shown)
    # then a live display showed the children done out of all, their states and the hosts
    # still running, and the final table followed
    assert code == 1  # one of them Failed: wait says so in its exit code
    assert "0/2 done" in text and "Running 2" in text
    assert re.search(r"running on alpha, beta", text)
    assert re.search(r"\d+:\d\d:\d\d", text)
    assert "Failed" in text.splitlines()[-1] or any(
        name in ln and "Failed" in ln for ln in text.splitlines()
    )
    # and piped, --json prints the JSON only, with nothing on stderr
    again = fleet.start("sleep", 3, name=uniq("Quiet"), locations=["alpha"])
    res = cli("wait", "--json", str(again.id))
    assert res.stderr == "" and res.stdout.lstrip().startswith("[")
    fleet.remove([job, again])


def test_plain_progress_lines_when_piped(cli: CliRunner, fleet: Fleet) -> None:
    # given a job that runs for a while
    job = fleet.start("sleep", 4, name=uniq("Piped"), locations=["alpha", "beta"])
    # when a program waits for it with stdout piped
    res = cli("wait", str(job.id))
    # then stdout is the table alone and stderr has plain progress lines
    assert res.returncode == 0
    assert res.stdout.splitlines()[0].split()[0] == "Id"
    assert re.search(
        r"^wait: 0/2 done \(Running 2\), 0:00:0\d; running on alpha, beta$", res.stderr, re.M
    ), res.stderr
    assert "\x1b" not in res.stderr
    fleet.remove([job])


def test_progress_tells_hosts_running_from_hosts_waiting(cli: CliRunner, fleet: Fleet) -> None:
    # given a job on two hosts, one at a time (the other waits for its slot)
    name = uniq("OneByOne")
    job = fleet.start("sleep", 3, name=name, locations=["alpha", "beta"], throttle_limit=1)
    # when a program waits for it, then the host not started is said to be waited on, not
    # to be running
    res = cli("wait", str(job.id))
    assert res.returncode == 0, res.stderr
    assert re.search(
        r"^wait: 0/2 done \(NotStarted 1  Running 1\), .*; running on (alpha|beta); "
        r"waiting on (alpha|beta)$",
        res.stderr,
        re.M,
    ), res.stderr
    fleet.remove([job])


def test_receive_wait_shows_progress_records_as_bars(config: Config, fleet: Fleet) -> None:
    # given a job on two hosts that reports its progress in steps
    name = uniq("Steps")
    job = fleet.start("progress_steps", 4, 0.5, name=name, locations=["alpha", "beta"])
    # when a person receives from it in a terminal until it ends
    code, shown = in_terminal(config, "receive", "--wait", name)
    text = ANSI.sub("", shown)
    # then each host has a bar that reached 100 %, and the output was printed
    assert code == 0
    assert re.search(r"alpha \(job \d+\).*100% step 4 of 4", text), text[-2000:]
    assert re.search(r"beta \(job \d+\).*100% step 4 of 4", text)
    assert "━" in text
    assert text.count("4 steps done") == 2
    assert "PROGRESS:" not in text
    fleet.remove([job])


def test_invoke_prints_output_above_the_display(config: Config) -> None:
    # when a person invokes a slow action on two hosts in a terminal
    code, shown = in_terminal(config, "invoke", "-l", "alpha,beta", "fail_on", "nowhere", "2")
    text = ANSI.sub("", shown)
    # then each host's answer is printed, and the display showed both running meanwhile
    assert code == 0
    assert "alpha: alpha" in text and "beta: beta" in text
    assert "invoke" in text and "0/2 done" in text
