"""A child's Celery task message and its ``task-sent`` event, made without Celery.

For a fleet that does not sign its messages, this makes exactly what Celery's ``send_task``
would put on the broker — task protocol 2, JSON, in the envelope kombu's Redis transport
stores (``body`` base64, ``headers``, ``properties``) — field for field and in Celery's
order, so workers, Flower and ``celery inspect`` see no difference. It exists for speed: a
console that starts a job no longer imports Celery (some 0.15-0.2 s of every ``fleetjobs
start`` and ``invoke``), and a message and its event cost ~0.04 ms to make, ~0.33 ms through
``send_task`` with kombu's producer intercepted (a fan-out to 1,000 hosts makes 1,000).
``tests/test_messages.py`` holds it to Celery's own output for the same child, so a Celery
upgrade that changes the protocol fails there first. A signed fleet's messages are made by
Celery (its ``auth`` serializer signs the body): :meth:`fleetjobs.dispatch.Dispatcher.compose`.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .routing import TASK_NAME

# the body's third part: no callbacks, errbacks, chain or chord
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_EVENT_EXCHANGE = "celeryev"
_SENT = "task-sent"


def _b64(data: Any) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def _utcoffset() -> float:
    """This host's offset from UTC in hours *west* (New York: 5.0), as Celery's
    ``celery.utils.time.utcoffset`` reports it: Flower corrects an event's timestamp with it."""
    if time.localtime().tm_isdst:
        return time.altzone / 3600
    return time.timezone / 3600


CONSOLE_PREFIX = "fleetjobs-console@"  # the node name of a machine's consoles' events


class MessageMaker:
    """Makes the messages of one fleet's children (one per console process).

    Args:
        db: the Redis database number (the events' channel names carry it, as kombu's
            ``fanout_prefix`` does).
    """

    def __init__(self, db: int) -> None:
        self._topic = f"/{db}.{_EVENT_EXCHANGE}/{_SENT.replace('-', '.')}"
        self._clock = itertools.count(1)  # the events' Lamport clock (Celery's, per process)
        self._reply_to = str(uuid.uuid4())  # Celery's thread_oid: where replies would go
        self._node = (-1, "")

    def _nodename(self) -> str:
        """Celery's name for a process that is no worker (``gen<pid>@<host>``): the messages'
        origin and the events' hostname; made again in a forked child."""
        pid = os.getpid()
        if self._node[0] != pid:
            self._node = (pid, f"gen{pid}@{socket.gethostname()}")
        return self._node[1]

    def task(
        self,
        child_id: int,
        task_id: str,
        queue: str,
        shadow: str,
        kwargsrepr: str,
        expires: float | None,
    ) -> tuple[str, dict[str, Any]]:
        """The task message of one child (JSON, as kombu stores it) and the fields of its
        ``task-sent`` event (for :meth:`sent_event`).

        Args:
            child_id: the task's one argument.
            task_id: the child's InstanceId.
            queue: the queue's name (without the fleet's key prefix).
            shadow: the name Flower shows (``Name@location``).
            kwargsrepr: what Flower shows as the task's keyword arguments.
            expires: seconds from now after which a worker drops it unrun, or None.
        """
        args = [child_id]
        argsrepr = repr(args)
        expires_at = None
        if expires is not None:
            expires_at = (datetime.now(UTC) + timedelta(seconds=expires)).isoformat()
        headers: dict[str, Any] = {
            "lang": "py",
            "task": TASK_NAME,
            "id": task_id,
            "shadow": shadow,
            "eta": None,
            "expires": expires_at,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": kwargsrepr,
            "origin": self._nodename(),
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        properties: dict[str, Any] = {
            "correlation_id": task_id,
            "reply_to": self._reply_to,
            "kwargsrepr": kwargsrepr,  # Celery passes send_task's leftover options on, too
        }
        if expires is not None:
            properties["expiration"] = str(int(max(0.0, expires) * 1000))
        properties.update(
            delivery_mode=2,
            delivery_info={"exchange": "", "routing_key": queue},
            priority=0,
            body_encoding="base64",
            delivery_tag=str(uuid.uuid4()),
        )
        message = {
            "body": _b64([args, {}, _EMBED]),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
        sent = {
            "uuid": task_id,
            "root_id": task_id,
            "parent_id": None,
            "name": shadow,  # the shadow, as fleetjobs.celery_app._AMQP makes Celery do
            "args": argsrepr,
            "kwargs": kwargsrepr,
            "retries": 0,
            "eta": None,
            "expires": expires_at,
            "queue": queue,
            "exchange": "",
            "routing_key": queue,
        }
        return json.dumps(message), sent

    def sent_event(self, fields: dict[str, Any]) -> list[str]:
        """The ``task-sent`` event of a task (its fields from :meth:`task`): [channel after
        the fleet's key prefix, payload], as Celery's event dispatcher would publish it, in
        the name of this machine's consoles (one name a machine, not one a process: Flower
        counts its metrics by it, and lists it as a worker)."""
        hostname = CONSOLE_PREFIX + socket.gethostname()
        event = {
            "hostname": hostname,
            "utcoffset": _utcoffset(),
            "pid": os.getpid(),
            "clock": next(self._clock),
            **fields,
            "timestamp": time.time(),
            "type": _SENT,
        }
        envelope = {
            "body": _b64(event),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": hostname},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {
                    "exchange": _EVENT_EXCHANGE,
                    "routing_key": _SENT.replace("-", "."),
                },
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return [self._topic, json.dumps(envelope)]
