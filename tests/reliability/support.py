"""What the reliability tests need around them: a fleet of their own, and /proc read as ps does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleetjobs import Config, Fleet, Job, JobState
from fleetjobs.embedded import LocalWorkers

from ..conftest import FAST, INCLUDE, ROOT, eventually, uniq


def acl_rule(user: str, prefix: str, password: str, location: str = "web01") -> list[str]:
    """The rules of ``user`` in deploy/redis-acl.conf, for this key prefix and password (and
    location, for the confined worker's, written there for web01)."""
    for line in (ROOT / "deploy" / "redis-acl.conf").read_text().splitlines():
        words = line.split()
        if words[:2] == ["user", user]:
            rules = [w for w in words[2:] if not w.startswith(">")] + [f">{password}"]
            return [w.replace("fj:", prefix).replace("web01", location) for w in rules]
    raise AssertionError(f"no user {user} in deploy/redis-acl.conf")


def own_config(redis_url: str) -> Config:
    """A fleet of its own on the session's Redis: its own prefix, the fast timings."""
    return Config(redis_url=redis_url, prefix=f"{uniq('r')}:", **FAST)  # type: ignore[arg-type]


@contextmanager
def fleet_with(
    cfg: Config, locations: list[str], logs: Path, concurrency: int = 1, allow_shell: bool = False
) -> Iterator[tuple[Fleet, LocalWorkers]]:
    with (
        LocalWorkers(
            cfg,
            [locations],
            concurrency=concurrency,
            allow_shell=allow_shell,
            extra_args=INCLUDE,
            log_dir=logs,
        ) as workers,
        Fleet(config=cfg) as fleet,
    ):
        yield fleet, workers


def busy_holding_one(fleet: Fleet, client: Any, loc: str) -> tuple[Job, Job]:
    """Make the worker of ``loc`` (concurrency 1) busy with a long job, holding the next one
    reserved (prefetched, unacknowledged). Returns (the long job, the reserved one)."""
    long = fleet.start("sleep", 300, locations=loc)
    eventually(lambda: long.state is JobState.RUNNING, timeout=15)
    reserved = fleet.start("echo", "reserved", locations=loc)
    eventually(lambda: client.zcard(fleet.store.keys.unacked_index) == 1, timeout=10)
    return long, reserved


def stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> list[int]:
    """``root`` and every process under it, walking /proc/*/stat (no psutil)."""
    parents = {pid: st[0] for pid in pids() if (st := stat(pid)) is not None}
    found, frontier = [root], [root]
    while frontier:
        nxt = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += nxt
        frontier = nxt
    return found


def group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies count as gone)."""
    out = []
    for pid in pids():
        st = stat(pid)
        if st is None or st[1] != pgid:
            continue
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
