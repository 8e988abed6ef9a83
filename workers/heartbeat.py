"""Heartbeats: a worker says it lives, where, and what it offers; and it sweeps the fleet.

Liveness comes from these keys, not from Celery's remote-control ping, which goes silent on
Redis (celery#5688). Each beat also runs the registry's sweep, so a job whose worker died is
moved to Disconnected and then Failed by whichever worker is still alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fleetjobs import __version__
from fleetjobs.errors import FleetJobsError
from fleetjobs.registry import Registry

log = logging.getLogger("fleetjobs.worker")


class Heartbeat(threading.Thread):
    """Beats every ``interval`` seconds until :meth:`close`; the last act is to leave."""

    def __init__(
        self,
        registry: Registry,
        worker_id: str,
        locations: Sequence[str],
        info: dict[str, Any],
        dispatch: Callable[[list[int]], None],
        chores: Sequence[Callable[[Registry], object]] = (),
    ) -> None:
        super().__init__(name="fleetjobs-heartbeat", daemon=True)
        self.registry = registry
        self.worker_id = worker_id
        self.locations = list(locations)
        self.info = {
            **info,
            "worker": worker_id,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "version": __version__,
        }
        self._dispatch = dispatch
        self._chores = list(chores)  # more upkeep each beat (workers.reaper)
        self._stop = threading.Event()

    def beat(self) -> None:
        self.registry.heartbeat(self.worker_id, self.info, self.locations)

    def run(self) -> None:
        interval = self.registry.config.heartbeat_interval
        warned = False
        while not self._stop.is_set():
            try:
                self.beat()
                _, due = self.registry.sweep()
                if due:
                    self._dispatch(due)
                for chore in self._chores:
                    chore(self.registry)
                warned = False
            except FleetJobsError as exc:
                if not warned:
                    log.warning("heartbeat failed (will keep trying): %s", exc)
                    warned = True
            except Exception:
                log.exception("heartbeat failed")
            self._stop.wait(interval)

    def close(self) -> None:
        self._stop.set()
        try:
            self.registry.leave(self.worker_id, self.locations)
        except FleetJobsError as exc:
            log.warning("could not say goodbye to the registry: %s", exc)
