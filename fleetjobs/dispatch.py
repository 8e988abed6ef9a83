"""Dispatch: the one door to Celery — publish a child's task, release throttled children, revoke.

A child job is one Celery task (``fleetjobs.job``, its one argument the child's Id) on its
location's queue, with the child's InstanceId as the task id and ``Name@location`` as the name
Flower shows. Celery's results are not kept (``ignore_result``): the registry is the one
record of a job. Both sides publish through here: a console when it starts a job, a worker
when a finish (or a sweep) releases a throttled parent's next child.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config import Config
from .errors import RedisUnavailableError
from .lifecycle import Lifecycle, NewChild
from .registry import Registry
from .routing import TASK_NAME, UNACKED, queue_for
from .states import JobState
from .store import guarded

if TYPE_CHECKING:
    from celery import Celery


class Dispatcher:
    """Publishes children's tasks for one fleet.

    Args:
        config: the fleet's settings.
        registry: reads the children to publish.
        lifecycle: fails what could not be published.
        celery: a Celery app to publish with (a worker passes its own); made on first use
            otherwise, since Celery takes a good part of a second to import.
    """

    def __init__(
        self,
        config: Config,
        registry: Registry,
        lifecycle: Lifecycle,
        celery: Celery | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.lifecycle = lifecycle
        self._celery = celery
        self._own_celery = celery is None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            from .celery_app import make_celery

            self._celery = make_celery(self.config)
        return self._celery

    def close(self) -> None:
        if self._celery is not None and self._own_celery:
            self._celery.close()

    def publish(
        self,
        children: Sequence[NewChild],
        name: str,
        start_timeout: float | None,
        action: str = "",
    ) -> None:
        """Publish one task per child, on its location's queue, over one connection.

        Raises:
            RedisUnavailableError: the broker could not be reached; the children that were
                not queued (and what their ends released) are Failed, so nothing waits for
                ever for a publish that did not happen.
        """
        if not children:
            return
        sent = 0
        try:
            with self.celery.producer_or_acquire() as producer:
                for child in children:
                    self.celery.send_task(
                        TASK_NAME,
                        args=[child.id],
                        queue=queue_for(child.location),
                        task_id=child.instance_id,
                        shadow=f"{name}@{child.location}",
                        # Flower shows it; its metrics label a task by action (flower_app.py)
                        kwargsrepr=json.dumps({"action": action, "job": child.id}),
                        expires=start_timeout,
                        ignore_result=True,
                        producer=producer,
                    )
                    sent += 1
        except Exception as exc:  # kombu raises many types for a broker it cannot reach
            left = [c.id for c in children[sent:]]
            while left:
                left = (
                    self.lifecycle.finish(left.pop(), JobState.FAILED, f"not queued: {exc}")[1]
                    + left
                )
            raise RedisUnavailableError(
                f"cannot queue the job on {self.config.safe_url}: {exc}"
            ) from None

    def release(self, ids: Sequence[int]) -> None:
        """Publish children the registry released (a throttled parent's next ones)."""
        for info in self.registry.load(ids, children=False):
            child = NewChild(info.id, info.instance_id, info.location, True)
            self.publish([child], info.name, None, info.action)

    @guarded
    def overdue(self, locations: Sequence[str], limit: int = 100) -> dict[str, int]:
        """Children sent to these locations whose message waits on no queue and is reserved
        by no worker, by InstanceId: lost, or in a worker claiming it this very moment (a
        caller asks again later before it re-sends, :mod:`fleetjobs.workers.redeliver`)."""
        flat = self.registry.store.scripts("overdue", ",".join(locations), limit)
        found = {str(flat[i + 1]): int(flat[i]) for i in range(0, len(flat), 2)}
        if found:
            for iid in self._reserved():
                found.pop(iid, None)
        return found

    @guarded
    def _reserved(self) -> set[str]:
        """The task ids of the messages workers hold reserved (kombu's unacked hash)."""
        held = set()
        for raw in self.registry.r.hvals(self.config.prefix + UNACKED):
            try:
                held.add(str(json.loads(raw)[0]["headers"]["id"]))
            except (ValueError, LookupError, TypeError):
                continue  # not a message the fleet sent: it holds nothing of ours
        return held

    @guarded
    def resend(self, ids: Sequence[int]) -> None:
        """Send these children's messages again (their first was lost). A copy that turns out
        not lost after all is harmless: the claim runs a child once."""
        infos = self.registry.load(ids, children=False)
        keys = self.registry.keys
        with self.registry.r.pipeline(transaction=False) as pipe:
            for info in infos:  # sent again now: not overdue until the queue has moved past it
                pipe.zadd(keys.inq(info.location), {info.instance_id: time.time()}, xx=True)
            pipe.execute()
        for info in infos:
            child = NewChild(info.id, info.instance_id, info.location, True)
            self.publish([child], info.name, None, info.action)

    def revoke(self, instance_ids: Sequence[str]) -> None:
        """Tell live workers to drop these tasks unseen (best effort: the registry's stop flag
        is what holds, since a revoke sent while a worker is down is lost, celery#8888)."""
        if instance_ids:
            with contextlib.suppress(Exception):
                self.celery.control.revoke(list(instance_ids))
