"""A Celery app for Flower to watch the fleet: what ``fleetjobs flower`` runs.

Flower must read the broker with the fleet's own settings (its key prefix above all), or it
sees no events; this module builds that app from ``FLEETJOBS_*`` variables. Workers send task
events (``-E`` is on), and tasks carry the job's name and host (``Nap@web01``) as their name.

Flower's Prometheus metrics label each task series with the task's name. Here that name is
per job and host, so every job would add series for ever (about 3,700 after 130 jobs). Loaded
by Flower, this module makes the ``task`` label the job's *action* (``sleep``, ``run``,
``archive_logs``): a set fixed by the code the workers run, and the question an operator asks
of metrics (how long do archive runs take, how many pings failed). The ``worker`` label is the
worker's stable node name (``fleetjobs@web01``): one per host of the fleet, not per restart.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from .celery_app import make_celery
from .config import Config
from .routing import TASK_NAME

log = logging.getLogger("fleetjobs")
_ACTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")

app = make_celery(Config.from_env())


def action_label(task: Any) -> str:
    """The metrics label of a job's task: its action, or the task's real name if unknown."""
    try:
        action = json.loads(getattr(task, "kwargs", None) or "{}").get("action")
    except (ValueError, AttributeError):
        return TASK_NAME
    return action if isinstance(action, str) and _ACTION_RE.match(action) else TASK_NAME


def _bound_metric_labels() -> None:
    try:
        from flower.events import PrometheusMetrics
    except ImportError:  # not running under Flower
        return
    observe = getattr(PrometheusMetrics, "observe_task", None)
    if observe is None or getattr(observe, "_fleetjobs", False):
        if observe is None:
            log.warning("this Flower has no observe_task: metrics keep per-job labels")
        return

    def observe_task(self: Any, worker: str, event: dict[str, Any], task: Any) -> None:
        observe(self, worker, {**event, "name": action_label(task)}, task)

    observe_task._fleetjobs = True  # type: ignore[attr-defined]
    PrometheusMetrics.observe_task = observe_task


def _metrics_behind_auth() -> None:
    """Flower serves ``/metrics`` to anyone (its handler lacks the ``authenticated`` check its
    pages and API have): every job's action and every host's name, with no credentials.
    Behind the same authentication here; open only where Flower itself is (``--no-auth``)."""
    try:
        import tornado.web
        from flower.views.monitor import Metrics
    except ImportError:  # not running under Flower
        return
    if getattr(Metrics.get, "_fleetjobs", False):
        return
    guarded = tornado.web.authenticated(Metrics.get)
    guarded._fleetjobs = True  # type: ignore[attr-defined]
    Metrics.get = guarded


def _events_survive_junk() -> None:
    """Flower reads task events from pub/sub channels that every worker's credential may
    publish on (a confined one included, deploy/redis-acl.conf). kombu's read of one such
    message raised on a payload that is not an event (``{}``, ``"x"``, JSON too deep, a
    typed value it cannot decode) and Flower's capture of events ended, to start again a
    second later: a steady trickle of junk blinded it to every host. Here a message that
    cannot be read or handled is dropped (logged, at most once a minute), and the next read."""
    try:
        import redis.exceptions
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return
    channel: Any = kombu_redis.Channel
    original = getattr(channel, "_receive_one", None)
    if original is None or getattr(original, "_fleetjobs", False):
        if original is None:
            log.warning("this kombu has no Channel._receive_one: junk events stop Flower")
        return
    from queue import Empty

    last = [0.0]

    def _receive_one(self: Any, c: Any) -> Any:
        try:
            return original(self, c)
        except Empty:
            raise
        except Exception as exc:  # a message that is not an event: dropped, the next one read
            # what reading the connection raises goes on up, for Flower to connect again (a
            # protocol error, a refused subscription, no connection at all); a message that
            # is not an event fails in kombu's or Celery's handling of it instead: KeyError
            # (which kombu counts among its connection errors), ValueError, TypeError, and
            # RecursionError (a RuntimeError) for JSON too deep
            real = (redis.exceptions.RedisError, OSError)
            if isinstance(exc, real) or (
                isinstance(exc, RuntimeError) and not isinstance(exc, RecursionError)
            ):
                raise
            if isinstance(exc, getattr(self, "connection_errors", ())) and not isinstance(
                exc, LookupError
            ):
                raise
            now = time.monotonic()
            if now - last[0] > 60:
                last[0] = now
                log.warning("dropped a message that is not a task event: %r", exc)
            raise Empty() from None

    _receive_one._fleetjobs = True  # type: ignore[attr-defined]
    channel._receive_one = _receive_one


_bound_metric_labels()
_metrics_behind_auth()
_events_survive_junk()
