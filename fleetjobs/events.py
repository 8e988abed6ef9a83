"""Job events: blocking on Redis pub/sub until a job changes, instead of polling for it.

Every state change and every record a worker writes is published on the job's channel
(``ev:<InstanceId>``, its parent's too); a console that waits subscribes first, then reads the
state, then sleeps on the subscription. A periodic re-read (the caller's timeout) covers a
message missed while the subscription was being set up or the connection was replaced, so the
subscription is only an accelerator: when Redis goes away for a moment it is set up again on
the next wait, and meanwhile a wait is a plain sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis.exceptions

from .errors import CredentialsRefusedError, RedisUnavailableError
from .store import Store, translate

RIDE_OUT = 10.0  # seconds a waiting verb rides out a Redis that went away (a restart, a failover)
T = TypeVar("T")


class JobEvents:
    """A pub/sub subscription to jobs' event channels, to block instead of polling."""

    def __init__(self, store: Store, iids: Sequence[str], only: str | None = None) -> None:
        self._store = store
        self._channels = [store.keys.events(i) for i in iids]
        self._mine = set(self._channels)
        self._only = only  # wake only for this kind of event ('state': a wait, not a record)
        self._pubsub: Any = None

    def __enter__(self) -> JobEvents:
        try:
            self._subscribe()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            pass  # Redis away: the caller's looks ride it out, and next() subscribes then
        except redis.exceptions.RedisError as exc:
            raise translate(exc, self._store.safe_url) from None
        return self

    def _subscribe(self) -> None:
        self._pubsub = self._store.subscribe(self._channels)

    def __exit__(self, kind: object, *_: object) -> None:
        # its connection serves the next wait, unless an exception (a Ctrl-C mid-read) ended it
        self._drop(reuse=kind is None)

    def _drop(self, reuse: bool = False) -> None:
        if self._pubsub is not None:
            self._store.unsubscribe(self._pubsub, reuse=reuse)
            self._pubsub = None

    def next(self, timeout: float) -> None:
        """Block until an event arrives or ``timeout`` passes, then drain what else came."""
        timeout = max(0.0, timeout)
        try:
            if self._pubsub is None:
                self._subscribe()
            deadline = time.monotonic() + timeout
            msg = self._pubsub.get_message(timeout=timeout)
            # None before the deadline is a (un)subscribe confirmation, which redis-py drops;
            # a reused connection may still bring its former subscription's messages: neither
            # is an event, so the wait goes on (each woke the caller for a needless look)
            while msg is None or not self._wanted(msg):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                msg = self._pubsub.get_message(timeout=left)
            while msg is not None:
                msg = self._pubsub.get_message(timeout=0.0)
        except redis.exceptions.RedisError:
            # Redis went away: the caller's own reads say whether for long; until the
            # subscription is back, waiting is sleeping
            self._drop()
            time.sleep(timeout)

    def _wanted(self, msg: dict[str, Any]) -> bool:
        if msg.get("channel") not in self._mine:
            return False
        return self._only is None or msg.get("type") != "message" or msg["data"] == self._only


def ride_out(call: Callable[[], T], until: float | None = None) -> T:
    """``call()``; a waiting verb rides out a Redis that is away for a few seconds (a restart,
    a failover) instead of giving up at once: it retries for ``RIDE_OUT`` seconds, and no
    later than ``until`` (``time.monotonic()``: a verb's own timeout), then the error stands.
    Credentials Redis refused are not ridden out: they do not come right by waiting."""
    deadline: float | None = None
    delay = 0.1
    while True:
        try:
            return call()
        except CredentialsRefusedError:
            raise
        except RedisUnavailableError:
            now = time.monotonic()
            if deadline is None:
                deadline = now + RIDE_OUT if until is None else min(now + RIDE_OUT, until)
            if now + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def ride_out_iter(make: Callable[[], Iterator[T]], ping: Callable[[], None]) -> Iterator[T]:
    """Items of ``make()``, made again once ``ping`` answers if Redis went away mid-way (each
    new iterator goes on from where the last one was: nothing is handed twice)."""
    while True:
        try:
            yield from make()
            return
        except RedisUnavailableError:
            ride_out(ping)
