"""The demo: the README's first command, run as a newcomer would, leaving nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .conftest import ROOT


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("fleetjobs-redis-*")}


def test_the_demo_walks_the_seed_and_cleans_up() -> None:
    before = _leftovers()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}
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
    assert _leftovers() == before
