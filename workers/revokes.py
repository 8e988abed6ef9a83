"""A revoke from Celery's own tools (Flower's Revoke and Terminate, ``celery control
revoke``) made durable: the children it names that have not started are Stopped in the
registry, whoever delivers their messages later.

Celery keeps a revoke in the memory of the workers alive when it comes (celery#8888): one sent
while a child's own worker was down was lost, and the child ran when that worker came back.
Every worker hears a revoke; one of them (the first to take its mark in Redis) records it, in
a thread of its own, not on the consumer's thread. fleetjobs' own stop says its revoke is
recorded already (``recorded``): nobody writes anything for it. A confined worker records
nothing (its Redis user may write only its own location's jobs); a trusted one does.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from typing import Any

from fleetjobs.errors import FleetJobsError

from .outcome import STOPPED_FROM_CELERY
from .process import PerProcess

log = logging.getLogger("fleetjobs.worker")
ONCE = 600  # seconds a revoke's mark is kept: its other hearers write nothing meanwhile


class _NoBackendToMark(logging.Filter):
    """Celery's revoke marks the task revoked in the result backend; a fleetjobs worker has
    none (the registry is the record), so every worker warned it could not, at every stop
    anywhere in the fleet. That one warning is dropped; any other failure is still said."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("as revoked in backend" in text and "No result backend is configured" in text)


def install(per_process: PerProcess) -> None:
    """Wrap Celery's ``revoke`` control command in this worker process (once)."""
    from celery.worker.control import Panel
    from celery.worker.control import logger as control_log

    if not any(isinstance(f, _NoBackendToMark) for f in control_log.filters):
        control_log.addFilter(_NoBackendToMark())
    celery_revoke = Panel.data["revoke"]
    if getattr(celery_revoke, "fleetjobs", False):
        return

    @functools.wraps(celery_revoke)
    def revoke(state: Any, task_id: Any, terminate: bool = False, **kwargs: Any) -> Any:
        recorded = kwargs.pop("recorded", False)  # a fleetjobs stop's: in the registry already
        reply = celery_revoke(state, task_id, terminate=terminate, **kwargs)
        ids = [task_id] if isinstance(task_id, str) else task_id
        if recorded is not True and isinstance(ids, list | tuple | set):
            iids = sorted({i for i in ids if isinstance(i, str) and i})
            if iids:
                threading.Thread(
                    target=_record, args=(per_process, iids), name="fleetjobs-revoke", daemon=True
                ).start()
        return reply

    revoke.fleetjobs = True  # type: ignore[attr-defined]
    Panel.data["revoke"] = revoke


def _record(per_process: PerProcess, iids: list[str]) -> None:
    """Stop the children these InstanceIds name that have not started (a running one goes
    on where it runs: a terminate is its pool process's, outcome.py), if this worker is the
    one that records this revoke."""
    try:
        layers = per_process()
        store = layers.store
        if store.relay is not None:  # confined: another host's jobs are not its to write
            return
        digest = hashlib.sha256("\n".join(iids).encode()).hexdigest()[:32]
        if not store.r.set(store.keys.revoke_once(digest), "1", nx=True, ex=ONCE):
            return  # another worker that heard it records it
        for iid in iids:
            _, due = layers.lifecycle.stop_queued(iid, f"{STOPPED_FROM_CELERY} before it started")
            per_process.release(due)
    except (FleetJobsError, OSError) as exc:
        log.warning("could not record a revoke from Celery: %s", exc)
    except Exception as exc:  # a Redis error not translated: said, never raised in a thread
        log.warning("could not record a revoke from Celery: %s: %s", type(exc).__name__, exc)
