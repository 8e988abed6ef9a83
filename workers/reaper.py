"""The reaper: a job's processes die with the job, even when its worker died first.

A ``run`` job's command runs in its own process group, which a stop kills whole. When the
pool process running the job, or the whole worker, is killed instead, nothing is left to kill
that group: the job turns Failed and its command goes on. Two things close that gap:

- **Parent-death signal** (Linux): what ``run`` starts gets ``PR_SET_PDEATHSIG`` = SIGKILL, so
  the command it started dies the moment the process running the job does (armed by
  util-linux's ``setpriv``, :func:`orphan_proof`, else by a ``preexec_fn``).
- **Recorded groups**: while a job runs, the process groups it started are recorded on the
  child job's hash (field ``pgids``) and in ``pgroups:<location>`` (job Id -> the same record),
  with this machine's identity and each group leader's start time. Every worker, at start-up
  and at each heartbeat, kills the recorded groups of its locations' jobs that have ended
  (Failed, Stopped, Completed or removed) and were run on this machine, then forgets them.
  A group is killed only if it is still the same group: its leader, if alive, has the
  recorded start time; members without a leader started after it (pids are not reused
  while a process group of that id exists).

The bound: the direct child at once; the rest of the group within one heartbeat interval of
the job being Failed when a pool process dies (the worker fails the job at once), and within
one heartbeat interval of the job turning Failed (host TTL + disconnect grace) when the whole
worker died and a worker serves that location on this machine again.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fleetjobs.registry import Registry
from fleetjobs.states import JobState
from fleetjobs.store import Store, guarded

log = logging.getLogger("fleetjobs.worker")
PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


# the check a command's first moments make: the process that started it still is its parent
# (else it died before the signal was armed, and the command must not outlive it)
_STILL_MINE = '[ "$PPID" = {parent} ] || exit 137; exec "$0" "$@"'


def orphan_proof(args: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """How to start ``args`` (a program and its arguments) so that it gets SIGKILL when the
    process starting it dies: the argv to give ``Popen`` and its ``preexec_fn``.

    With util-linux's ``setpriv`` (Linux), the signal is armed by ``setpriv --pdeathsig``,
    then a ``sh`` checks that its parent is still this process and ``exec``s the command
    (same pid: ``ps`` shows the command): no ``preexec_fn``, so Python starts it with
    ``vfork`` — some 1 ms from a worker's pool process, against ~11 ms for the ``fork`` a
    ``preexec_fn`` forces (measured from a 92 MiB process), which every ``run`` job paid.
    Without ``setpriv``: ``args`` as given and :func:`die_with_parent`'s ``preexec_fn``.
    """
    setpriv = _setpriv()
    if setpriv is None or not args:
        return list(args), die_with_parent()
    check = _STILL_MINE.format(parent=os.getpid())
    return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", check, *args], None


@functools.cache
def _setpriv() -> str | None:
    if not Path("/proc/self/stat").exists() or not Path("/bin/sh").exists():
        return None  # not Linux: no parent-death signal to arm
    found = shutil.which("setpriv")
    if found is None:
        return None
    try:  # util-linux older than 2.33 has no --pdeathsig
        done = subprocess.run(
            [found, "--help"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found if "--pdeathsig" in done.stdout else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the process starting it dies
    (Linux); None elsewhere. Loaded before the fork: the child only makes one system call."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is None or not Path("/proc/self/stat").exists():
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(137)

    return preexec


PR_SET_DUMPABLE = 4


def not_dumpable() -> bool:
    """Make this process, and the pool processes it forks, not dumpable (Linux): its
    ``/proc/PID/environ``, which holds the worker's Redis URL and password, is then root's to
    read, no longer any process of the worker's user, such as a ``run`` command reading its
    parent's (a command's own exec makes it dumpable again). It also means no core dump,
    and no debugger of the same user. Returns whether it was done."""
    prctl = getattr(_LIBC, "prctl", None)
    return prctl is not None and prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def machine() -> str:
    """This machine (host name and boot) as recorded with a job's process groups."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2 :].split()
    # after the command: state ppid pgrp session ... starttime is field 22 of the whole line
    try:
        return int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def group_of(pid: int) -> list[int] | None:
    """The record for the process group ``pid`` leads: [pgid, its start time]; None if it
    is gone or leads no group of its own (started without ``start_new_session``)."""
    found = _stat(pid)
    return None if found is None or found[0] != pid else [pid, found[1]]


def _members(pgid: int) -> list[tuple[int, int]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None and found[0] == pgid:
                out.append((int(entry), found[1]))
    return out


def kill_group(pgid: int, started: int) -> int:
    """SIGKILL process group ``pgid`` if it is still the one recorded; returns how many
    processes it had (0: gone, or not ours any more)."""
    if pgid <= 1 or pgid == os.getpgid(0):
        return 0
    members = _members(pgid)
    if not members:
        return 0
    leader = dict(members).get(pgid)
    if leader is not None and leader != started:
        return 0  # a new group under a reused id
    if any(start < started for _, start in members):
        return 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
        return len(members)
    return 0


# ---- the registry's record ----------------------------------------------------------------


def _index(store: Store, location: str) -> str:
    return store.keys.pgroups(location)


@guarded
def record(store: Store, job_id: int, location: str, groups: Sequence[list[int]]) -> None:
    """Record (or, with no groups, forget) the process groups a running job started."""
    doc = json.dumps({"machine": machine(), "groups": list(groups)}) if groups else ""
    store.scripts("pgroups", "record", job_id, location, doc)


@guarded
def reap(store: Store, locations: Iterable[str]) -> int:
    """Kill the recorded process groups of these locations' ended jobs run on this machine.

    Returns:
        How many processes were killed.
    """
    here = machine()
    killed = 0
    locations = list(locations)
    if store in _scanned and locations:
        # only the locations pglocs names: one read per beat, not one per location
        marked = store.r.smismember(store.keys.pglocs, locations)
        locations = [loc for loc, m in zip(locations, marked, strict=True) if m]
    for location in locations:
        index = _index(store, location)
        recorded = store.r.hgetall(index)
        if not recorded:
            continue
        if store not in _scanned and store.relay is None:
            store.r.sadd(store.keys.pglocs, location)  # an index from before pglocs existed
        ids = list(recorded)
        states = Registry(store).states([int(i) for i in ids])
        for job_id, state in zip(ids, states, strict=True):
            if state is not None and not JobState(state).finished:
                continue  # still running (or waiting to be failed): its worker owns it
            try:
                doc = json.loads(recorded[job_id])
                mine = doc.get("machine") == here
                groups = [(int(g[0]), int(g[1])) for g in doc.get("groups", [])]
            except (ValueError, TypeError, KeyError, IndexError):
                mine, groups = True, []
            if not mine:
                continue
            for pgid, started in groups:
                n = kill_group(pgid, started)
                if n:
                    log.warning(
                        "killed %d leftover process(es) of job %s (group %d) on %s",
                        n,
                        job_id,
                        pgid,
                        location,
                    )
                    killed += n
            store.scripts("pgroups", "forget", job_id, location, "")
    _scanned.add(store)
    return killed


# the stores whose every location this process reaped once (from then on, pglocs says which)
_scanned: weakref.WeakSet[Store] = weakref.WeakSet()
