"""A confined worker's side of the relay: what it would write beyond its own location's keys,
it asks ``fleetjobs relay`` to write (:mod:`fleetjobs.relay`, the other side).

A confined worker's Redis user (deploy/redis-acl.conf) reads the fleet but writes only its own
location's keys: its queue, kombu's record of the messages it reserved, and its requests
(``loc:<location>:relay``) with their answers. Its state changes touch its jobs' parents, the
fleet's indexes and other hosts' queues (a throttle releasing the next child), so they go to
the relay, which checks that each is about this location's own jobs and runs it with the same
scripts a trusted worker runs itself. The list a request arrives on names its location: no
other location's worker may write it.

A request is JSON ``{"id", "op", "args"}`` pushed onto the location's list, with the location
pushed onto the shared bell list (a wake-up; the relay trusts only the list it reads from).
The answer comes on ``loc:<location>:relay:<id>``: ``{"ok": value}`` or ``{"err", "kind"}``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from .keys import Keys
from .scripts import READS, Scripts

# seconds a confined worker waits for the relay's answer before it takes the relay for down
# (as it would a Redis that does not answer: its callers ride that out, or fail the job)
WAIT = 10.0
ANSWER_TTL_MS = 60_000  # an answer nobody took (its worker gave up) expires
TAKE_BACK_TRIES = 6  # waits of WAIT s for a request the relay took before giving up on it
RESEND_CHUNK = 1000  # children one resend request names at most (the relay refuses more)


class RelayClient:
    """Requests from a confined worker's location to the relay."""

    def __init__(self, client: Any, keys: Keys, location: str, wait: float = WAIT) -> None:
        self._r = client
        self.keys = keys
        self.location = location
        self.wait = wait

    def _answer(self, key: str) -> Any:
        """The answer on ``key`` within ``wait`` s, or None: read in waits shorter than the
        client's socket timeout (a URL's ``?socket_timeout=``), which a longer BLPOP ran
        into, raising before the request could be taken back."""
        kwargs = getattr(getattr(self._r, "connection_pool", None), "connection_kwargs", {})
        limit = kwargs.get("socket_timeout")
        step = self.wait if not limit else max(0.05, min(self.wait, float(limit) * 0.8))
        deadline = time.monotonic() + self.wait
        while True:
            left = deadline - time.monotonic()
            try:
                got = self._r.blpop([key], timeout=max(0.01, min(step, left)))
            except redis.exceptions.TimeoutError:  # slower than the client waits: none yet
                got = None
            if got is not None or time.monotonic() >= deadline:
                return got

    def call(self, op: str, *args: Any) -> Any:
        """The relay's answer to ``op(args)``.

        Raises:
            redis.exceptions.ConnectionError: no answer within ``wait`` s (the relay is down).
            redis.exceptions.NoPermissionError: the relay refused it (not this location's).
            redis.exceptions.ResponseError: it failed on the relay.
        """
        rid = uuid.uuid4().hex
        request = json.dumps({"id": rid, "op": op, "args": list(args)}, separators=(",", ":"))
        answer_key = self.keys.relay_answer(self.location, rid)
        pipe = self._r.pipeline(transaction=True)
        pipe.rpush(self.keys.relay(self.location), request)
        pipe.lpush(self.keys.bell, self.location)
        pipe.execute()
        got = self._answer(answer_key)
        # no answer: a request no relay took is taken back (it must not run later, when its
        # caller has gone on: a claim made for nobody); one a relay took (it may put it back
        # for the location's next turn) gets its answer waited for, and taken back again
        for _ in range(TAKE_BACK_TRIES):
            if got is not None or self._r.lrem(self.keys.relay(self.location), 1, request):
                break
            got = self._answer(answer_key)
        if got is None:
            raise redis.exceptions.ConnectionError(
                f"the relay did not answer within {self.wait:g} s (is `fleetjobs relay` "
                "running for this fleet?)"
            )
        answer = json.loads(got[1])
        if "ok" in answer:
            return answer["ok"]
        if answer.get("kind") == "refused":
            raise redis.exceptions.NoPermissionError(f"NOPERM the relay refused: {answer['err']}")
        raise redis.exceptions.ResponseError(f"the relay failed: {answer.get('err')}")


class RelayedScripts:
    """A confined worker's scripts: the read-only ones run here, the others on the relay."""

    def __init__(self, local: Scripts, relay: RelayClient) -> None:
        self._local = local
        self._relay = relay

    def __call__(self, name: str, *args: Any) -> Any:
        if name in READS:
            return self._local(name, *args)
        return self._relay.call("script", name, *args)
