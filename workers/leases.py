"""Leases: a live worker keeps the messages it reserved; a dead worker's go back in seconds.

With ``task_acks_late`` off a message is acknowledged when its job starts; until then (it
waits in the worker's prefetch while the pool is busy) it sits in kombu's unacked set, and
kombu's Redis transport puts it back on its queue once it is older than
``visibility_timeout``. A day there stranded a dead worker's reserved jobs for a day; a short
timeout alone would hand a live, busy worker's reserved messages to another worker.

So the timeout is short (:func:`fleetjobs.celery_app.lease_seconds`: the host TTL) and is a
lease: a consumer bootstep renews, every heartbeat interval, the unacked-index score of each
message this worker holds reserved. Renewal stops when the worker dies, and kombu's restore
(every worker's event loop, every heartbeat interval, and at a worker's start) returns the
message to its queue; the worker that serves the location then runs it. The bound: the lease
plus one restore interval after the death, or one restore interval after a worker starts,
whichever is later. A copy that is ever delivered twice runs once: the registry's claim.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state

from fleetjobs.config import Config
from fleetjobs.store import Store

log = logging.getLogger("fleetjobs.worker")


def held_tags() -> list[str]:
    """Delivery tags of the messages this worker has reserved and not acknowledged."""
    tags = []
    held = list(worker_state.reserved_requests)
    held += list(getattr(worker_state, "scheduled_requests", ()))  # ETA ones, if ever used
    for request in held:
        message = getattr(request, "message", None)
        tag = getattr(message, "delivery_tag", None)
        if tag is not None and not getattr(message, "acknowledged", False):
            tags.append(str(tag))
    return tags


def renew(registry: Store, tags: list[str], now: float | None = None) -> int:
    """Restart the lease of these messages; only those still unacked (``XX``). Returns how
    many were renewed."""
    if not tags:
        return 0
    at = time.time() if now is None else now
    confined = registry.config.confined_to  # kombu keeps a confined worker's on its location
    index = registry.keys.loc_unacked_index(confined) if confined else registry.keys.unacked_index
    return int(registry.r.zadd(index, dict.fromkeys(tags, at), xx=True, ch=True) or 0)


def lease_step(config: Config) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep renewing this worker's leases from its event loop (no thread races
    with Celery's own bookkeeping of reserved requests)."""

    class Leases(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            self.tref: Any = None
            self.registry: Store | None = None
            self.warned = False
            super().__init__(parent, **kwargs)

        def start(self, parent: Any) -> None:
            self.tref = parent.timer.call_repeatedly(
                config.heartbeat_interval, self.tick, priority=5
            )

        def stop(self, parent: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def shutdown(self, parent: Any) -> None:
            self.stop(parent)
            if self.registry is not None:
                self.registry.close()

        def tick(self) -> None:
            try:
                if self.registry is None:
                    self.registry = Store.connect(config)
                renew(self.registry, held_tags())
                self.warned = False
            except Exception as exc:  # never let the lease take the event loop down
                if not self.warned:
                    log.warning("could not renew reserved messages' leases: %s", exc)
                    self.warned = True

    return Leases
