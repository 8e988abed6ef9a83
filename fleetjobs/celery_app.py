"""The Celery app both sides share: JSON only, routed by location, at-most-once by default.

The console uses it to publish and revoke; a worker (:mod:`workers.app`) adds the one task it
runs. The settings here are the answers to Celery's known traps (see DESIGN.md):

- ``task_acks_late`` is off: a task is acknowledged before it runs, so a worker killed mid-job
  does not make Redis redeliver it an hour later (at-most-once: ops actions such as moving
  files are not safe to repeat blindly). The registry's claim makes a redelivery harmless too.
- ``worker_prefetch_multiplier=1``: a busy worker does not sit on jobs another could run.
- JSON is the only content type accepted: no pickle, no code travels to a worker.
- Each fleet's Celery keys carry the fleet's prefix, so two fleets can share one Redis.
- ``visibility_timeout`` is a short lease (:func:`lease_seconds`), not a day: a message a
  worker reserved but had not started when it died goes back to its queue within seconds.
  A live worker renews the lease of every message it holds at each heartbeat
  (:mod:`workers.leases`), so its own reserved messages are never handed out twice; if one
  ever is (a worker cut off for longer than the lease), the registry's claim still lets
  only one copy run.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .config import Config
from .routing import TASK_NAME

UNACKED_INDEX = "unacked_index"  # kombu's sorted set: unacked delivery tag -> lease start


def lease_seconds(config: Config) -> float:
    """How long a reserved message stays with a worker that no longer renews it: as long as
    a silent host takes to count as offline, and at least three heartbeats."""
    return max(config.host_ttl, 3 * config.heartbeat_interval)


def make_celery(config: Config, main: str = "fleetjobs") -> Celery:
    """A Celery app for the fleet in ``config`` (not set as Celery's current app)."""
    app = Celery(main, broker=config.broker_url, backend=config.backend_url, set_as_current=False)
    transport: dict[str, Any] = {
        "global_keyprefix": config.prefix,
        # with acks_late off only reserved, not-yet-started messages are unacked: a dead
        # worker's go back to their queue once their lease is not renewed (kombu restores
        # them from every worker's event loop, and at a worker's start)
        "visibility_timeout": lease_seconds(config),
        "unacked_index_key": UNACKED_INDEX,
        "unacked_restore_interval": config.heartbeat_interval,
        "unacked_restore_throttle": 1,
        # a worker killed while it held the restore mutex must not stall restores for long
        "unacked_mutex_expire": 60,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        result_expires=int(config.retention),
        result_extended=True,
        broker_transport_options=transport,
        result_backend_transport_options={"global_keyprefix": config.prefix},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        redis_socket_connect_timeout=5,
        task_create_missing_queues=True,
        task_default_queue=f"{config.prefix}default",
        task_routes={TASK_NAME: {"queue": f"{config.prefix}unrouted"}},
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
