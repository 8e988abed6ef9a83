"""What the schedule tests share: a real ``fleetjobs beat`` subprocess, the module-scoped
fleet and beat fixtures (re-exported by each test module that uses them), and ``run_ids``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet
from fleetjobs.embedded import LocalWorkers

from .conftest import FAST, INCLUDE, ROOT, eventually, uniq

BEAT_ENV = {"FLEETJOBS_BEAT_INTERVAL": "1", "FLEETJOBS_BEAT_LOCK_TIMEOUT": "5"}


class Beat:
    """A ``fleetjobs beat`` subprocess, its output in a log file."""

    def __init__(self, cfg: Config, log: Path) -> None:
        self.log = log
        env = {
            **os.environ,
            **BEAT_ENV,
            "FLEETJOBS_REDIS_URL": cfg.redis_url,
            "FLEETJOBS_PREFIX": cfg.prefix,
        }
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fleetjobs", "beat", "--loglevel", "INFO"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def holds_lock(self) -> bool:
        return "Acquired lock" in self.text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="module")
def sfleet(redis_url: str, logs: Path) -> Iterator[tuple[Config, Fleet]]:
    """A fleet of its own with two hosts, s1 and s2 (tag role=web on both)."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('sc')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(
            cfg,
            [["s1"], ["s2"]],
            concurrency=4,
            extra_args=[*INCLUDE, "--tag", "role=web"],
            log_dir=logs,
        ),
        Fleet(config=cfg) as f,
    ):
        eventually(lambda: len([h for h in f.hosts() if h.online]) == 2, timeout=30)
        yield cfg, f


@pytest.fixture(scope="module")
def beat(sfleet: tuple[Config, Fleet], logs: Path) -> Iterator[Beat]:
    """One beat for the module's stories; each adds its schedules while it runs."""
    b = Beat(sfleet[0], logs / f"{uniq('beat')}.log")
    eventually(b.holds_lock, timeout=30)
    yield b
    assert b.stop() == 0, b.text()
    assert "beat: stopped" in b.text()


def run_ids(fleet: Fleet, name: str) -> list[int]:
    return [j.id for j in fleet.get(name=name)]
