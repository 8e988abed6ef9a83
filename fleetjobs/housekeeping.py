"""Housekeeping: the sweep (start deadlines, hosts that went silent) and retention.

No state may wait for a worker that will never come: whichever process is alive applies the
deadlines and the liveness rules now and then — a worker on each heartbeat, when the beat got
it the fleet's turn (one sweep per half beat, whoever asks), and every console while it reads
(a console whose Redis user may not write skips it) — and releases what a settled child frees.
Finished jobs older than the retention period are purged with everything they own, by the
workers on each heartbeat and by each start.
"""

from __future__ import annotations

import logging
import time

from .dispatch import Dispatcher
from .errors import PermissionDeniedError, RedisFullError
from .lifecycle import Lifecycle
from .monitor import announce_lost
from .registry import Registry

log = logging.getLogger("fleetjobs")


class Housekeeping:
    """Sweeps and purges for one fleet, at most once per ``every`` seconds each.

    Args:
        registry, lifecycle, dispatcher: the fleet's layers.
        every: the least time between two sweeps of this process.
    """

    def __init__(
        self,
        registry: Registry,
        lifecycle: Lifecycle,
        dispatcher: Dispatcher,
        every: float = 1.0,
        migrates: bool = True,
    ) -> None:
        self.registry = registry
        # moves an older version's history indexes (a console's: workers and relays, upgraded
        # first, leave them to the older consoles still reading them)
        self.migrates = migrates
        self.lifecycle = lifecycle
        self.dispatcher = dispatcher
        self.every = every
        self.writable = True
        self._last_sweep = 0.0
        self._last_purge = -float("inf")

    @property
    def shared_every(self) -> float:
        """One sweep per half heartbeat for the whole fleet, whoever asks: with a worker per
        host each sweeping every running child, 10 workers swept it 10 times a beat."""
        return self.lifecycle.store.config.heartbeat_interval / 2

    def sweep(self, force: bool = False, turn_taken: bool = False) -> int:
        """Apply deadlines and liveness now (unless this process did within ``every`` s).

        Args:
            force: whatever this process's own ``every`` says.
            turn_taken: the caller took the fleet's sweep turn already (a worker's beat
                does, in the same command): sweep without asking for it again.

        Returns:
            How many children changed state.
        """
        now = time.monotonic()
        if not self.writable or (not force and now - self._last_sweep < self.every):
            return 0
        self._last_sweep = now
        try:
            changed, due = self.lifecycle.sweep(every=0.0 if turn_taken else self.shared_every)
        except PermissionDeniedError:
            # a read-only console (a monitoring user): the workers' sweeps keep the fleet true
            self.writable = False
            return 0
        except RedisFullError as exc:
            # a Redis at its maxmemory takes no write: the verb that swept (a get, a wait)
            # goes on reading, and says what is wrong only if it must write itself
            log.warning("the fleet was not swept: %s", exc)
            return 0
        if due:
            self.dispatcher.release(due)
        if changed:  # Flower hears of the jobs a vanished host left
            announce_lost(self.registry, self.dispatcher.celery)
        return changed

    def purge_expired(self, force: bool = False) -> int:
        """Remove finished jobs older than the retention period (unless this process looked
        within ``every`` s: a start does not pay a read for it each time); returns how many."""
        now = time.monotonic()
        if not force and now - self._last_purge < self.every:
            return 0
        self._last_purge = now
        expired = self.registry.expired(migrate=self.migrates)
        if expired:
            found = self.registry.load(list(expired))
            self.lifecycle.remove(found)
            # listed with no record left (removed by hand, damaged): out of the lists, or
            # retention would find them first at every pass
            read = {j.id for j in found}
            gone = {i: b for i, b in expired.items() if i not in read}
            self.registry.indexes.forget(gone)
        return len(expired)
