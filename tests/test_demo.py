"""The demo: the README's first command, run as a newcomer would, leaving nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def test_the_demo_walks_the_seed_and_cleans_up(tmp_path: Path) -> None:
    # its own TMPDIR: whatever the demo leaves behind is there, and nothing else is
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}
    env["TMPDIR"] = str(tmp_path)
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
    table = out[out.index("PS> fleetjobs ping Server01") :]
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
