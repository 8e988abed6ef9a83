"""The Celery app both sides share: JSON only, routed by location, at-most-once by default.

The console uses it to publish and revoke; a worker (:mod:`workers.app`) adds the one task it
runs. The settings here are the answers to Celery's known traps (see DESIGN.md):

- ``task_acks_late`` is off: a task is acknowledged before it runs, so a worker killed mid-job
  does not make Redis redeliver it an hour later (at-most-once: ops actions such as moving
  files are not safe to repeat blindly). The registry's claim makes a redelivery harmless too.
- ``worker_prefetch_multiplier=1``: a busy worker does not sit on jobs another could run.
- JSON is the only content type accepted: no pickle, no code travels to a worker.
- Each fleet's Celery keys carry the fleet's prefix, so two fleets can share one Redis.
- No result backend: every publish sets ``ignore_result``, and the registry is the one record
  of a job (Flower learns a task's end from the workers' task events).
- ``visibility_timeout`` is a short lease (:func:`lease_seconds`), not a day: a message a
  worker reserved but had not started when it died goes back to its queue within seconds.
  A live worker renews the lease of every message it holds at each heartbeat
  (:mod:`workers.leases`), so its own reserved messages are never handed out twice; if one
  ever is (a worker cut off for longer than the lease), the registry's claim still lets
  only one copy run.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP

from .config import Config
from .errors import ConfigError
from .keys import SCHEMA
from .routing import TASK_NAME, UNACKED, UNACKED_INDEX

log = logging.getLogger("fleetjobs")

# set while a message is made to be kept for a later release (Dispatcher.compose): Celery
# sends no task-sent event for it (Flower lists it when a worker receives it)
UNSENT: ContextVar[bool] = ContextVar("fleetjobs_unsent", default=False)


def lease_seconds(config: Config) -> float:
    """How long a reserved message stays with a worker that no longer renews it: as long as
    a silent host takes to count as offline, and at least three heartbeats."""
    return max(config.host_ttl, 3 * config.heartbeat_interval)


class _AMQP(AMQP):  # type: ignore[misc]
    """Celery's messaging, with one fix: the ``task-sent`` event carries the shadow name.

    Celery puts the task's real name (``fleetjobs.job``) in task-sent and the shadow
    (``Nap@web01``) in the worker's task-received. The console publishes the message before
    the event, so a worker's task-received can reach Flower first; the late task-sent, of lower
    precedence and with no merge rule, then overwrites the name: the ``fleetjobs.job`` rows.
    """

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        if UNSENT.get():  # made to be kept, not sent now: no task-sent event
            return message._replace(sent_event=None)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


def keep_kombu_clients() -> None:
    """Make kombu's Redis channels keep one redis-py client each instead of making one for
    every publish, reservation and acknowledgement.

    kombu's ``Channel._create_client`` builds a new ``redis.Redis`` on the channel's pool
    each time (``conn_or_acquire``, ``pipe_or_acquire``); with redis-py 8 that costs ~64 µs
    of CPU (its response-callback table is rebuilt), and a busy worker's main thread spent
    a fifth of its time there (py-spy, ``--gil``: three to four per job, for the task
    events, the reservation and the ack). A client is a thread-safe handle on its pool, so
    one per channel does the same work; it is made again when the channel's pool is
    replaced (after a disconnect). Idempotent; every fleetjobs process applies it."""
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    if getattr(channel._create_client, "_fleetjobs_kept", False):
        return
    make: Any = channel._create_client

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return make(self, asynchronous=True)
        pool = self.pool
        kept = self.__dict__.get("_fleetjobs_client")
        if kept is None or kept[0] is not pool:
            kept = (pool, make(self))
            self.__dict__["_fleetjobs_client"] = kept
        return kept[1]

    _create_client._fleetjobs_kept = True  # type: ignore[attr-defined]
    channel._create_client = _create_client


def peek_before_restoring() -> None:
    """Make kombu's periodic restore of reserved messages look before it takes its mutex.

    kombu's Redis ``QoS.restore_visible`` takes a mutex (SET NX, and a release script: GET,
    DEL) and only then reads which reserved messages are past their lease. Every worker runs
    it every heartbeat interval (the lease is short: :mod:`workers.leases`), so an idle fleet
    paid five commands per worker per interval for a restore that finds nothing unless a
    worker died. It now reads first (the same query, one message) and goes on to kombu's own
    restore, mutex and all, only when a message is past its lease: the same restores, and one
    command when there is none. Should the look fail (a kombu whose QoS differs, a lost
    connection), kombu's own restore runs as it did. Idempotent; every fleetjobs process
    applies it."""
    from kombu.transport import redis as kombu_redis

    qos: Any = kombu_redis.QoS
    if getattr(qos.restore_visible, "_fleetjobs_peeks", False):
        return
    restore: Any = qos.restore_visible
    said = False  # that the look failed: once per process

    def nothing_due(self: Any, start: int = 0, num: int = 10, interval: int = 10) -> bool:
        if self._vrestore_count % (interval or 1):
            return False  # kombu's throttle skips this call itself
        with self.channel.conn_or_acquire() as client:
            ceil = time.time() - self.visibility_timeout
            due = client.zrange(
                self.unacked_index_key, ceil, 0, desc=True, byscore=True, offset=0, num=1
            )
        if due:
            return False
        self._vrestore_count += 1  # as kombu counts a call
        return True

    def restore_visible(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal said
        try:
            if nothing_due(self, *args, **kwargs):
                return None
        except Exception:  # a kombu that does it otherwise, or a lost connection: kombu's
            # own restore, which meets the same and handles it as it always has
            if not said:
                said = True
                log.debug("the look before kombu's restore failed; kombu restores", exc_info=True)
        return restore(self, *args, **kwargs)

    restore_visible._fleetjobs_peeks = True  # type: ignore[attr-defined]
    qos.restore_visible = restore_visible


def make_celery(config: Config, main: str = "fleetjobs", kombu_fixes: bool = True) -> Celery:
    """A Celery app for the fleet in ``config`` (not set as Celery's current app); with
    ``kombu_fixes`` (always, but for the benchmarks' raw Celery baseline), this process's
    kombu keeps its Redis clients (:func:`keep_kombu_clients`) and looks before it locks to
    restore reserved messages (:func:`peek_before_restoring`)."""
    if kombu_fixes:
        keep_kombu_clients()
        peek_before_restoring()
    app = Celery(
        main,
        broker=config.broker_url,
        set_as_current=False,
        amqp=_AMQP,
    )
    transport: dict[str, Any] = {
        **config.broker_transport_options,
        "global_keyprefix": config.prefix,
        # with acks_late off only reserved, not-yet-started messages are unacked: a dead
        # worker's go back to their queue once their lease is not renewed (kombu restores
        # them from every worker's event loop, and at a worker's start)
        "visibility_timeout": lease_seconds(config),
        "unacked_key": UNACKED,
        "unacked_index_key": UNACKED_INDEX,
        "unacked_restore_interval": config.heartbeat_interval,
        "unacked_restore_throttle": 1,
        # a worker killed while it held the restore mutex must not stall restores for long
        "unacked_mutex_expire": 60,
    }
    confined = config.confined_to
    if confined:
        # a confined worker's Redis user writes only its own location's keys: kombu keeps
        # its reserved messages there, and BRPOPs one key (the fleet sets no priorities)
        transport.update(
            unacked_key=SCHEMA["loc_unacked"].format(confined),
            unacked_index_key=SCHEMA["loc_unacked_index"].format(confined),
            unacked_mutex_key=SCHEMA["loc_unacked_mutex"].format(confined),
            priority_steps=[0],
        )
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # no backend, so nothing to clean: without this, beat would add Celery's own
        # 'celery.backend_cleanup' to the fleet's schedules
        result_expires=None,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        redis_socket_connect_timeout=5,
        task_create_missing_queues=True,
        task_default_queue=f"{config.prefix}default",
        task_routes={TASK_NAME: {"queue": f"{config.prefix}unrouted"}},
        worker_hijack_root_logger=False,
        enable_utc=True,
        # remote control replies to queues of the asking process, which a confined worker
        # may not write; its task events (what Flower shows) are pub/sub, which it may
        worker_enable_remote_control=not confined,
    )
    if config.signed:
        _sign(app, config)
    return app


def _sign(app: Celery, config: Config) -> None:
    """Sign every task and control message with this process's key, and accept only messages
    signed by a trusted certificate (Celery's ``auth`` serializer; events stay JSON, for
    Flower)."""
    app.conf.update(
        task_serializer="auth",
        accept_content=["auth"],
        security_key=config.signing_key,
        security_certificate=config.signing_cert,
        security_cert_store=config.cert_store,
        security_digest="sha256",
        event_serializer="json",
    )
    try:
        if config.can_sign:
            _key_matches_cert(config.signing_key, config.signing_cert)
            app.setup_security(allowed_serializers=["json"], serializer="json")
        else:
            # a worker verifies with the trusted certificates and holds no key: it cannot
            # sign, so a stolen worker's secrets sign nothing (Celery's setup_security wants
            # a key, so the same steps by hand)
            from celery.security import disable_untrusted_serializers
            from celery.security.serialization import register_auth
            from kombu.serialization import registry

            disable_untrusted_serializers(["json"])
            register_auth(store=config.cert_store, digest="sha256", serializer="json")
            registry._set_default_serializer("auth")  # type: ignore[no-untyped-call]
    except ConfigError:
        raise
    except Exception as exc:  # Celery's ImproperlyConfigured, cryptography's errors
        raise ConfigError(f"cannot set up signed messages: {exc}") from None


def _key_matches_cert(key_path: str, cert_path: str) -> None:
    """Refuse a signing key that is not the certificate's: every message it signed would be
    refused by every worker (as a TypeError inside Celery's verification), its job waiting."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        raise ConfigError(
            f"signing key {key_path!r} is not the key of signing certificate {cert_path!r}"
        )
