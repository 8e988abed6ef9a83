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
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import ConfigError, FleetJobsError, RedisUnavailableError
from .lifecycle import Composed, JobSpec, Lifecycle, NewChild
from .messages import MessageMaker
from .registry import Registry
from .relaycall import RESEND_CHUNK
from .routing import TASK_NAME, queue_for
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
        self._maker: MessageMaker | None = None

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
                    self._send(producer, child, name, start_timeout, action, None)
                    sent += 1
        except Exception as exc:  # kombu raises many types for a broker it cannot reach
            self._fail([c.id for c in children[sent:]], f"not queued: {exc}")
            raise RedisUnavailableError(
                f"cannot queue the job on {self.config.safe_url}: {exc}"
            ) from None

    def compose(self, spec: JobSpec, children: Sequence[NewChild], name: str) -> Composed:
        """Each child's Celery message, exactly as Celery would put it on the broker (signed,
        when the fleet signs), without sending it: the registry keeps it and pushes it onto
        its queue, with the job (queued children) or when the child is released or its
        message was lost. So the console that starts a job makes every message of it, and a
        worker never makes or signs one. The queued children's ``task-sent`` events (Flower's)
        are made too, for the same script to publish: no round trip of their own.

        A signed message also carries what runs (action, arguments): a worker runs only what
        a console signed, whatever the registry's records say.

        Raises:
            ConfigError: the fleet signs and this process has no key (a worker's settings).
            RedisUnavailableError: Celery could not prepare the messages (its broker
                connection, where the queues are declared, is down).
        """
        if self.config.signed and not self.config.can_sign:
            raise ConfigError(
                "this process verifies signed messages but holds no key to sign them "
                "(FLEETJOBS_CERT_STORE alone, a worker's setting): a console that starts jobs "
                "needs FLEETJOBS_SIGNING_KEY and FLEETJOBS_SIGNING_CERT too"
            )
        if not self.config.signed:
            return self._make(spec, children, name)
        return self.compose_with_celery(spec, children, name)

    def compose_with_celery(
        self, spec: JobSpec, children: Sequence[NewChild], name: str
    ) -> Composed:
        """:meth:`compose` by Celery's own ``send_task``, with kombu's producer intercepted
        (a signed fleet's path; ``tests/test_messages.py`` holds the unsigned path to it)."""
        from kombu.utils import json as kombu_json  # what the transport encodes with

        from .celery_app import UNSENT

        out: list[str] = []
        events: list[list[str]] = []  # [channel, payload] of each task-sent event
        action, start_timeout = spec.action, spec.start_timeout
        # what a signed message says runs; each child's adds its location and InstanceId.
        # fleet: its key prefix, so that a message signed for one fleet is refused by another
        # that shares its Redis or trusts the same console
        call = {
            "action": action,
            "args": list(spec.args),
            "kwargs": dict(spec.kwargs),
            "signed_at": time.time(),
            "fleet": self.config.prefix,
        }

        def keep(queue: str, message: dict[str, Any], **_: Any) -> None:
            out.append(str(kombu_json.dumps(message)))  # type: ignore[no-untyped-call]

        def keep_event(exchange: str, message: dict[str, Any], routing_key: str, **_: Any) -> None:
            payload = str(kombu_json.dumps(message))  # type: ignore[no-untyped-call]
            for topic in channel._get_publish_topics(exchange, routing_key):
                events.append([topic, payload])  # the script adds the fleet's key prefix

        try:
            with self.celery.producer_or_acquire() as producer:
                channel = producer.channel
                channel._put = keep  # the one place a message would reach Redis
                channel._put_fanout = keep_event  # and an event (task-sent)
                try:
                    for child in children:
                        said = None
                        if self.config.signed:
                            said = {**call, "location": child.location, "iid": child.instance_id}
                        timeout = start_timeout if child.queued else None  # counted from release
                        unsent = UNSENT.set(not child.queued)  # its task-sent: none for now
                        try:
                            self._send(producer, child, name, timeout, action, said, declare=False)
                        finally:
                            UNSENT.reset(unsent)
                finally:
                    del channel._put, channel._put_fanout
        except FleetJobsError:
            raise  # a signing key that is not its certificate's: a setting, not the broker
        except Exception as exc:  # kombu raises many types for a broker it cannot reach
            raise RedisUnavailableError(
                f"cannot prepare the job's messages on {self.config.safe_url}: {exc}"
            ) from None
        if len(out) != len(children):
            raise RedisUnavailableError(
                f"Celery made {len(out)} messages for {len(children)} children"
            )
        return Composed(out, events)

    def _make(self, spec: JobSpec, children: Sequence[NewChild], name: str) -> Composed:
        """:meth:`compose` for a fleet that does not sign: the same messages, made by
        :mod:`fleetjobs.messages` without importing Celery."""
        maker = self._maker
        if maker is None:
            maker = self._maker = MessageMaker(self.config.db)
        out: list[str] = []
        events: list[list[str]] = []
        for child in children:
            message, sent = maker.task(
                child.id,
                child.instance_id,
                queue_for(child.location),
                *_shown(child, name, spec.action),
                spec.start_timeout if child.queued else None,  # counted from release
            )
            out.append(message)
            if child.queued:  # its task-sent: none for now
                events.append(maker.sent_event(sent))
        return Composed(out, events)

    def _send(
        self,
        producer: Any,
        child: NewChild,
        name: str,
        start_timeout: float | None,
        action: str,
        spec: dict[str, Any] | None,
        declare: bool = True,
    ) -> None:
        # a kept message is pushed by the registry, not by kombu: no queue to declare for it
        # (a worker declares its own queues; declaring each of 10,000 took 2 round trips each)
        options: dict[str, Any] = {} if declare else {"declare": []}
        shadow, kwargsrepr = _shown(child, name, action)
        self.celery.send_task(
            TASK_NAME,
            args=[child.id],
            kwargs={"spec": spec} if spec is not None else None,
            queue=queue_for(child.location),
            task_id=child.instance_id,
            shadow=shadow,
            kwargsrepr=kwargsrepr,
            expires=start_timeout,
            ignore_result=True,
            producer=producer,
            **options,
        )

    def release(self, ids: Sequence[int]) -> None:
        """Publish children the registry released with no kept message (started by a
        fleetjobs older than kept messages: the registry pushes a kept one itself)."""
        if self.config.signed and not self.config.can_sign:
            self._fail(
                ids,
                "released with no kept message (started by an older fleetjobs), and this "
                "worker signs nothing: start the job again",
            )
            return
        for info in self.registry.load(ids, children=False):
            child = NewChild(info.id, info.instance_id, info.location, True)
            self.publish([child], info.name, None, info.action)

    def _fail(self, ids: Sequence[int], why: str) -> None:
        """Fail children that will not be sent, and the ones their ends release in turn, so
        nothing waits for ever for a message that was never sent."""
        left = list(ids)
        while left:
            left = self.lifecycle.finish(left.pop(), JobState.FAILED, why)[1] + left

    @guarded
    def overdue(self, locations: Sequence[str], limit: int = 100) -> dict[str, int]:
        """Children sent to these locations whose message is on no queue and reserved by no
        worker, by InstanceId: lost, or in a worker claiming it this very moment (a caller
        asks again later before it re-sends, :mod:`fleetjobs.workers.redeliver`)."""
        flat = self.registry.store.scripts("overdue", ",".join(locations), limit)
        return {str(flat[i + 1]): int(flat[i]) for i in range(0, len(flat), 2)}

    @guarded
    def resend(self, iids: Sequence[str]) -> None:
        """Push these children's kept messages onto their queues again (the first was lost).
        A copy that turns out not lost after all is harmless: the claim runs a child once."""
        for i in range(0, len(iids), RESEND_CHUNK):  # a relay takes so many in one request
            self.registry.store.scripts("resend", *iids[i : i + RESEND_CHUNK])

    def revoke(self, instance_ids: Sequence[str]) -> None:
        """Tell live workers to drop these tasks unseen (best effort: the registry's stop flag
        is what holds, since a revoke sent while a worker is down is lost, celery#8888)."""
        if instance_ids:
            with contextlib.suppress(Exception):
                # recorded: the registry holds these stops already, so a worker that hears
                # the revoke writes nothing (it records a revoke from Celery's own tools)
                self.celery.control.revoke(list(instance_ids), recorded=True)


def _shown(child: NewChild, name: str, action: str) -> tuple[str, str]:
    """What Flower shows of a child's task: its name (``Name@location``) and its keyword
    arguments (its metrics label a task by action, flower_app.py)."""
    return f"{name}@{child.location}", json.dumps({"action": action, "job": child.id})
