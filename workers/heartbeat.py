"""Heartbeats: a worker says it lives, where, and what it offers; and it sweeps the fleet.

Liveness comes from these keys, not from Celery's remote-control ping, which goes silent on
Redis (celery#5688). Each beat also asks, in the same command, for the fleet's sweep turn
(once per half beat for the whole fleet); the worker that gets it sweeps, so a job whose worker
died is moved to Disconnected and then Failed by whichever worker is still alive. Each worker
also purges the finished jobs past the retention period, so an idle fleet does not keep them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fleetjobs.errors import FleetJobsError
from fleetjobs.hosts import Hosts
from fleetjobs.housekeeping import Housekeeping
from fleetjobs.store import Store
from fleetjobs.version import __version__

from .process import Layers

log = logging.getLogger("fleetjobs.worker")


class Heartbeat(threading.Thread):
    """Beats every ``interval`` seconds until :meth:`close`; the last act is to leave."""

    def __init__(
        self,
        layers: Layers,
        worker_id: str,
        locations: Sequence[str],
        info: dict[str, Any],
        chores: Sequence[Callable[[Store], object]] = (),
    ) -> None:
        super().__init__(name="fleetjobs-heartbeat", daemon=True)
        self.config = layers.config
        self.hosts = Hosts(layers.store)
        # every beat sweeps (forced); the retention purge, every 10 s at most (a read saved)
        self.housekeeping = Housekeeping(
            layers.registry, layers.lifecycle, layers.dispatcher, every=10.0, migrates=False
        )
        self.worker_id = worker_id
        self.locations = list(locations)
        self.info = {
            **info,
            "worker": worker_id,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "version": __version__,
            # its relay says its own version beside (placement.needs_iid_index reads both)
            "confined": layers.store.relay is not None,
        }
        self._store = layers.store
        self._chores = list(chores)  # more upkeep each beat (workers.reaper)
        self._closing = threading.Event()

    def beat(self, take_turn: bool = True) -> bool:
        """Beat; and with ``take_turn``, but for a confined worker (its relay keeps the
        fleet), try for the fleet's sweep turn in the same command. Returns whether the turn
        was taken: the caller must then sweep."""
        sweeps = take_turn and self._store.relay is None
        every = self.housekeeping.shared_every if sweeps else 0.0
        return self.hosts.heartbeat(self.worker_id, self.info, self.locations, every)

    def run(self) -> None:
        interval = self.config.heartbeat_interval
        warned = False
        while not self._closing.is_set():
            try:
                turn = self.beat()
                if self._store.relay is None:  # a confined worker's fleet: the relay's upkeep
                    if turn:  # nobody swept the fleet within half a beat: this worker does
                        self.housekeeping.sweep(force=True, turn_taken=True)
                    self.housekeeping.purge_expired()
                    self.hosts.forget_now_and_then()  # killed workers, at start and later
                for chore in self._chores:
                    chore(self._store)
                warned = False
            except FleetJobsError as exc:
                if not warned:
                    log.warning("heartbeat failed (will keep trying): %s", exc)
                    warned = True
            except Exception:
                log.exception("heartbeat failed")
            self._closing.wait(interval)

    def close(self) -> None:
        self._closing.set()
        try:
            self.hosts.leave(self.worker_id, self.locations)
        except FleetJobsError as exc:
            log.warning("could not say goodbye to the registry: %s", exc)
