"""What a signed fleet's worker checks before a child runs, beyond the signature itself.

The signature proves a console made the message. Redis holds everything else, and anyone who
can write to Redis could change a job's record or push a copy of a message again. So, when
the fleet signs, a child runs only if:

- its message says what runs (action, arguments, location, InstanceId), as its console
  signed it, and the job's record says the same (:func:`refusal`);
- its message is younger than the fleet's retention (a job kept no longer than that needs
  no older message, and the journal below need remember no longer);
- this machine has not run that InstanceId before (:class:`Journal`, a SQLite file of the
  machine's own, not in Redis): a finished child's record reset to NotStarted and its signed
  message pushed again does not run it twice.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from fleetjobs.errors import ConfigError
from fleetjobs.model import JobInfo


def default_state_dir() -> Path:
    """``FLEETJOBS_STATE_DIR``, else ``$XDG_STATE_HOME/fleetjobs`` (``~/.local/state``)."""
    given = os.environ.get("FLEETJOBS_STATE_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fleetjobs"


MIN_MESSAGE_AGE = 30 * 86400.0  # a long rollout's last wave may wait this long at least


def max_message_age(retention: float) -> float:
    """How old a signed message may be when it runs: the retention, and at least 30 days."""
    return max(retention, MIN_MESSAGE_AGE)


def refusal(
    spec: dict[str, Any] | None,
    info: JobInfo,
    max_age: float,
    via: str | None = None,
    fleet: str | None = None,
) -> str:
    """Why a signed fleet must not run this child ('' when it may): its message carries no
    job, another one than its record says, came through another location's queue than the
    one it was signed for, was signed for another fleet than ``fleet`` (this worker's key
    prefix), or is older than ``max_age`` seconds. A message that names no fleet was signed
    by an older console (upgrades go workers first): its age still bounds it."""
    if not isinstance(spec, dict):
        return "refused: its signed message does not say what to run (made by no console)"
    if fleet is not None and "fleet" in spec and spec["fleet"] != fleet:
        return (
            f"refused: its signed message is for the fleet of prefix {spec['fleet']!r}, and "
            f"this worker serves {fleet!r}"
        )
    if via is not None and spec.get("location") != via:
        return (
            f"refused: its signed message is for {spec.get('location')!r}, and it came "
            f"through the queue of {via!r}"
        )
    said = (spec.get("action"), spec.get("args"), spec.get("kwargs"), spec.get("location"))
    have = (info.action, list(info.args), dict(info.kwargs), info.location)
    if said != have or spec.get("iid") != info.instance_id:
        return (
            "refused: its record in Redis differs from what its console signed "
            f"(signed {said[0]!r} {said[1]!r} {said[2]!r} on {said[3]}, "
            f"recorded {have[0]!r} {have[1]!r} {have[2]!r} on {have[3]})"
        )
    signed_at = spec.get("signed_at")
    if not isinstance(signed_at, int | float):
        return "refused: its signed message does not say when it was made"
    age = time.time() - signed_at
    if age > max_age:
        return (
            f"refused: its signed message is {age / 86400:.1f} days old, older than "
            f"{max_age / 86400:g} days (the fleet's retention, and at least 30 days)"
        )
    return ""


class Journal:
    """The InstanceIds this machine has run, kept ``keep`` seconds, in a SQLite file.

    Each worker process opens its own connection (none crosses a fork); the pool processes of
    all the machine's workers share the file, and the first to record an InstanceId wins.
    """

    def __init__(self, folder: Path, keep: float) -> None:
        self.path = folder / "ran.sqlite3"
        self.keep = keep
        self._local = threading.local()
        self._pid = -1
        self._count = 0

    def check(self) -> None:
        """Open (or make) the journal now, so a folder the worker cannot write is a clear
        error at its start, not a failure of every signed job.

        Raises:
            ConfigError: the folder or file cannot be made or written.
        """
        try:
            self._db().execute("BEGIN IMMEDIATE")
            self._db().execute("ROLLBACK")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot keep the journal of what this machine ran in {self.path} "
                f"(FLEETJOBS_STATE_DIR): {exc}"
            ) from None

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS ran (iid TEXT PRIMARY KEY, at REAL NOT NULL)")
            self._local.db = db
            self._pid = os.getpid()
        return db

    def first_run(self, iid: str, now: float | None = None) -> float | None:
        """Record that ``iid`` runs now. None if it is the first time; else when it ran."""
        at = time.time() if now is None else now
        db = self._db()
        if db.execute("INSERT OR IGNORE INTO ran VALUES (?, ?)", (iid, at)).rowcount == 1:
            self._count += 1
            if self._count % 1000 == 1:  # now and then, forget what is past keeping
                db.execute("DELETE FROM ran WHERE at < ?", (at - self.keep,))
            return None
        row = db.execute("SELECT at FROM ran WHERE iid = ?", (iid,)).fetchone()
        return float(row[0]) if row else at
