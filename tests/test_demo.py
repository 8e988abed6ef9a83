"""The demo: the README's first command, run as a newcomer would, leaving nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT


def test_the_demo_walks_the_seed_and_cleans_up(tmp_path: Path) -> None:
    # its own TMPDIR: whatever the demo leaves behind is there, and nothing else is
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}
    env["TMPDIR"] = str(tmp_path)
    # and a shell set up for another fleet: signed, confined (none of it the demo's)
    env |= {"FLEETJOBS_CERT_STORE": str(tmp_path / "none"), "FLEETJOBS_CONFINED_TO": "elsewhere"}
    res = subprocess.run(
        [sys.executable, "-m", "fleetjobs", "demo", "--fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "it ignores FLEETJOBS_CERT_STORE, FLEETJOBS_CONFINED_TO" in out
    assert "error" not in res.stderr.replace("ERROR: Error output", "")
    for section in (
        "Starting a background job",
        "Get-Job",
        "Receiving job results",
        "Wait-Job",
        "Named jobs",
        "Passing arguments",
        "parallel",
        "Job output streams",
        "Stop and remove",
    ):
        assert section in out, section
    assert "Job timed out!" in out
    assert "Backup done" in out and "Success output" in out
    assert "ERROR: Error output" in res.stderr and "WARNING: Warning output" in res.stderr
    assert "Name" in out and "CPU" in out  # the Get-Process table
    # the fleet part: the ping table with the offline server, and the archiving lines
    table = out[out.index("PS> fleetjobs ping --worker Server01") :]
    rows = [line.split() for line in table.splitlines()[3:7]]
    assert rows == [
        ["Server01", "True"],
        ["Server02", "True"],
        ["Server03", "False"],
        ["Server04", "True"],
    ]
    assert "WebServer01 – Archived 3 files" in out  # noqa: RUF001
    assert "WebServer02 – Archived 2 files" in out  # noqa: RUF001
    assert "AppServer01 – Log path not found" in out  # noqa: RUF001
    assert "fleetjobs.parallel" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_the_demo_and_leaves_nothing_behind(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    # (SIGTERM too: timeout, a CI cancel; it used to land in one of the demo's commands,
    # which ended, and the demo went on to the next)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # a shell's background job ignores SIGINT; a terminal's Ctrl-C does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # once it waits in a command on its workers' jobs, press Ctrl-C
        if line.startswith("PS> fleetjobs wait"):
            break
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted: everything the demo started was stopped and removed" in err
    assert list(tmp_path.iterdir()) == []
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout == ""
