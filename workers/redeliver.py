"""Redelivery: a job whose message was lost is sent again, so it runs instead of waiting for
ever as NotStarted.

kombu's Redis transport takes a message off its queue (``BRPOP``) before it records it as
reserved, and a worker acknowledges a message when a pool process accepts it, a moment
before the job is claimed. A worker SIGKILLed in either gap takes the message with it; so
does a console or worker killed after a script released a throttled child and before it sent
the child's message. Nothing else would ever run that job.

The fleet keeps, per location, the children sent there and not yet claimed (``inq:<loc>``, by
when they were sent). At each heartbeat, at most every half lease, the worker serving a
location asks which of them were sent before the oldest message still on its queue (or the
queue is empty) and are reserved by no worker (:meth:`Dispatcher.overdue`). One still
overdue a whole lease later (:func:`fleetjobs.celery_app.lease_seconds`; a claim takes
milliseconds) is lost: the message its console made, kept until the claim (``msg:<iid>``), is
pushed onto its queue again; the worker makes (and signs) nothing. Were it not lost after
all, the copy does no harm, since the registry's claim lets a child run once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from fleetjobs.celery_app import lease_seconds
from fleetjobs.dispatch import Dispatcher
from fleetjobs.store import Store

log = logging.getLogger("fleetjobs.worker")


class Redelivery:
    """The heartbeat's chore that re-sends the lost messages of this worker's locations.

    Args:
        dispatcher: this process's door to Celery.
        locations: the locations this worker serves.
        grace: seconds a child must stay overdue before it counts as lost (default: the
            lease of a reserved message).
    """

    def __init__(
        self, dispatcher: Dispatcher, locations: Sequence[str], grace: float | None = None
    ) -> None:
        self.dispatcher = dispatcher
        self.locations = list(locations)
        self.grace = lease_seconds(dispatcher.config) if grace is None else grace
        self._suspects: dict[str, float] = {}  # InstanceId -> when first seen overdue
        self._resent: dict[str, tuple[int, float]] = {}  # InstanceId -> (times, not before)
        self._next = 0.0

    def __call__(self, store: Store) -> list[int]:
        """Look (if it is time), and re-send what has been overdue for the grace period.
        Returns the ids re-sent."""
        now = time.monotonic()
        if now < self._next:
            return []
        self._next = now + self.grace / 2
        overdue = self.dispatcher.overdue(self.locations)
        # one no longer overdue arrived (or was stopped): it is no suspect any more
        self._suspects = {iid: t for iid, t in self._suspects.items() if iid in overdue}
        # a re-sent one is remembered past its back-off: lost again, it waits longer each time
        self._resent = {iid: r for iid, r in self._resent.items() if r[1] + 1800 > now}
        lost: dict[str, int] = {}
        for iid, job_id in overdue.items():
            times, not_before = self._resent.get(iid, (0, 0.0))
            if now < not_before:
                continue  # sent again already: lost again, maybe, but not every few seconds
            if now - self._suspects.setdefault(iid, now) >= self.grace:
                lost[iid] = job_id
                del self._suspects[iid]
                self._resent[iid] = (times + 1, now + min(600.0, self.grace * 2 ** (times + 1)))
        if lost:
            log.warning(
                "re-sending %d job(s) whose message was lost (a worker or console killed "
                "while it held it): %s",
                len(lost),
                ", ".join(map(str, sorted(lost.values()))),
            )
            self.dispatcher.resend(list(lost))
        return sorted(lost.values())
