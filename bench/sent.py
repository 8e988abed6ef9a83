"""Commands the clients send, as ``MONITOR`` shows them: a Lua script's inner calls left out.

``INFO commandstats`` counts every ``redis.call`` a script makes, so a verb done in one
script counts as its EVALSHA plus everything inside it. ``MONITOR`` tells the two apart: a
command a client sent is shown with the client's address, one a script ran with ``lua``.
This counts the former, by name, so both sides are counted in the same unit whether they
talk to Redis in scripts (fleetjobs) or command by command (raw Celery, kombu). A MULTI ...
EXEC counts each command in it, as commandstats does.

MONITOR costs the server CPU, so a run that measures CPU does not run under it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import redis

from bench.common import BenchError, Delta, Snapshot

MARK = "fj-bench-mark-"
SYNC_TIMEOUT = 30.0


class SentCommands:
    """A MONITOR in a thread, counting the commands clients send, by name.

    :meth:`snapshot` is exact: it sends a marker (an ``ECHO``) and waits until the monitor has
    seen it, so every command sent before the call is counted in it, and none after.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._cond = threading.Condition(self._lock)
        self._r: Any = redis.Redis.from_url(url, decode_responses=True)
        self._stop = f"{MARK}stop-{uuid.uuid4().hex}"
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="monitor", daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> SentCommands:
        self._thread.start()
        if not self._ready.wait(SYNC_TIMEOUT):
            raise BenchError("MONITOR did not start")
        self.snapshot()  # from here on, every command is seen
        return self

    def __exit__(self, *exc: object) -> None:
        self._r.echo(self._stop)
        self._thread.join(SYNC_TIMEOUT)
        self._r.close()

    def _watch(self) -> None:
        try:
            with redis.Redis.from_url(self.url, decode_responses=True).monitor() as m:
                self._ready.set()
                for c in m.listen():
                    command = str(c.get("command", ""))
                    name, _, rest = command.partition(" ")
                    if c.get("client_type") == "lua":
                        continue
                    if name.upper() == "ECHO" and rest.startswith(MARK):
                        with self._cond:
                            self._seen.add(rest)
                            self._cond.notify_all()
                        if rest == self._stop:
                            return
                        continue
                    with self._lock:
                        self.calls[name.lower()] += 1
        except BaseException as e:  # reported by the next snapshot
            self._error = e
            with self._cond:
                self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        """The counts so far: every command sent before this call, none after."""
        mark = f"{MARK}{uuid.uuid4().hex}"
        self._r.echo(mark)
        with self._cond:
            if not self._cond.wait_for(
                lambda: mark in self._seen or self._error is not None, SYNC_TIMEOUT
            ):
                raise BenchError("MONITOR fell behind by more than 30 s")
            if self._error is not None:
                raise BenchError(f"MONITOR failed: {self._error}")
            self._seen.discard(mark)
            calls = self.calls.copy()
        return Snapshot(time.monotonic(), sum(calls.values()), calls, 0.0)

    @staticmethod
    def diff(before: Snapshot, after: Snapshot) -> Delta:
        calls = after.calls.copy()
        calls.subtract(before.calls)
        return Delta(after.at - before.at, after.commands - before.commands, +calls, 0.0)

    def idle(self, seconds: float) -> Delta:
        """What the clients send in ``seconds`` of doing nothing asked of them."""
        before = self.snapshot()
        time.sleep(seconds)
        return self.diff(before, self.snapshot())
