"""Job events: blocking on Redis pub/sub until a job changes, instead of polling for it.

Every state change and every record a worker writes is published on the job's channel
(``ev:<InstanceId>``, its parent's too); a console that waits subscribes first, then reads the
state, then sleeps on the subscription. A periodic re-read (the caller's timeout) covers a
message missed while the subscription was being set up or the connection was replaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import redis.exceptions

from .store import Store, translate


class JobEvents:
    """A pub/sub subscription to jobs' event channels, to block instead of polling."""

    def __init__(self, store: Store, iids: Sequence[str]) -> None:
        self._pubsub = store.r.pubsub(ignore_subscribe_messages=True)
        self._channels = [store.keys.events(i) for i in iids]
        self._url = store.safe_url

    def __enter__(self) -> JobEvents:
        with self._guard():
            self._pubsub.subscribe(*self._channels)
        return self

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise translate(exc, self._url) from None

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._pubsub.close()

    def next(self, timeout: float) -> None:
        """Block until an event arrives or ``timeout`` passes, then drain what else came."""
        with self._guard():
            msg = self._pubsub.get_message(timeout=max(0.0, timeout))
            while msg is not None:
                msg = self._pubsub.get_message(timeout=0.0)
