"""What Flower sees of the fleet: a worker's node name, and the ends no worker could report.

Flower builds its picture from Celery's events alone. A worker's node name is its identity
there, so it is derived from what the worker serves, never from a pid: a restarted worker is
the same row (``fleetjobs@web01``). A child that the sweep fails because its host vanished
gets no event from that host, nor does a child no worker started within its start timeout;
:func:`announce_lost` sends the ``task-failed`` (or ``task-revoked``) event in the name of its
location's worker, so Flower does not show it STARTED (or PENDING) for ever.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from .errors import FleetJobsError
from .model import JobInfo
from .registry import Registry
from .states import JobState

log = logging.getLogger("fleetjobs")
NODE_PREFIX = "fleetjobs@"
_BATCH = 500


def node_name(locations: Sequence[str]) -> str:
    """The Celery node name of the worker serving ``locations``: stable across restarts."""
    return NODE_PREFIX + "+".join(locations)


def announce_lost(registry: Registry, celery: Any) -> int:
    """Send Flower the end of every child the sweep settled because its host vanished, or
    because no worker started it within its start timeout.

    The event carries the child's task id (its InstanceId), the node name of the worker that
    ran it, and the Reason. Called by whoever swept (a console, a worker's heartbeat).

    Returns:
        How many ends were announced.
    """
    try:
        ids = registry.r.lpop(registry.keys.lost, _BATCH) or []
        if not ids:
            return 0
        infos = registry.load([int(i) for i in ids], children=False)
    except (FleetJobsError, ValueError) as exc:
        log.warning("could not read the jobs the sweep ended: %s", exc)
        return 0
    return announce_ended(infos, celery)


def announce_ended(infos: Sequence[JobInfo], celery: Any) -> int:
    """Send Flower the end of each of these children (Stopped: ``task-revoked``; else
    ``task-failed`` with the Reason) in the name of its location's worker: ends no worker
    will report (its host vanished, or is down while its queued child was stopped).

    Returns:
        How many ends were announced.
    """
    sent = 0
    dispatchers: dict[str, Any] = {}
    # an event lost is a display, never the job
    with contextlib.suppress(Exception), celery.connection_for_write() as conn:
        for info in infos:
            node = node_name([info.location])
            if node not in dispatchers:
                dispatchers[node] = celery.events.Dispatcher(conn, hostname=node, enabled=True)
            if info.state is JobState.STOPPED:
                dispatchers[node].send(
                    "task-revoked",
                    uuid=info.instance_id,
                    terminated=False,
                    signum=None,
                    expired=False,
                )
            else:
                dispatchers[node].send(
                    "task-failed",
                    uuid=info.instance_id,
                    exception=f"JobFailed({info.reason!r})",
                    traceback="",
                )
            sent += 1
        for dispatcher in dispatchers.values():
            dispatcher.close()
    return sent
