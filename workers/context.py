"""The job context: what an action sees of its job — its streams, its host, its stop flag.

Every record an action writes while it runs lands in Redis as it is made, so a receive from a
running job gets what is there so far; what is written once it has ended (the values it
returned, why it failed) goes with the job's finish, in one script. A stop (or a timeout)
sets the stop flag; long actions check ``ctx.should_stop`` or sleep through ``ctx.sleep``,
and processes they start through ``ctx.register_process`` are killed with their whole
process group.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fleetjobs.config import Config
from fleetjobs.errors import FleetJobsError, RedisUnavailableError
from fleetjobs.lifecycle import Lifecycle
from fleetjobs.model import JobInfo
from fleetjobs.records import Pending, Records, write_parts

from . import reaper
from .control import Interaction

T = TypeVar("T")
STREAMS = ("output", "error", "warning", "verbose", "debug", "information")


def persistently(config: Config, call: Callable[[], T]) -> T:
    """``call()``, retried while Redis cannot be reached, for as long as a job on this host
    could still come back from Disconnected (host TTL + grace); then the error stands.

    A host cut off from Redis for a few seconds must not fail its jobs: they wait, as a
    write to a slow disk would, and go on when the network does.
    """
    patience = config.host_ttl + config.disconnect_grace
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return call()
        except RedisUnavailableError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class JobStopped(BaseException):
    """Raised inside an action to end it because its job was stopped, timed out or removed.

    A BaseException, like KeyboardInterrupt, so an action's ``except Exception`` does not
    swallow it.
    """


class JobContext(Interaction):
    """The first argument of every action.

    Attributes:
        location: the host (location) the job runs on.
        job_id: the child job's Id.
        name: the job's Name.
        instance_id: the child job's InstanceId.
    """

    def __init__(
        self,
        records: Records,
        lifecycle: Lifecycle,
        info: JobInfo,
        parent_iid: str | None,
    ) -> None:
        self._records = records
        self._lifecycle = lifecycle
        self._config = records.store.config
        self._info = info
        self._parent_iid = parent_iid
        self.location = info.location
        self.job_id = info.id
        self.name = info.name
        self.instance_id = info.instance_id
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self._procs: dict[int, subprocess.Popen[Any]] = {}
        self._lock = threading.Lock()
        self._seq = 0  # record numbers: a retried write is recognised, not doubled
        self._tail: list[Pending] | None = None  # once the action has ended: for the finish
        self._poked = threading.Event()
        self._poked.set()  # the first checkpoint reads the registry

    # ---- streams ------------------------------------------------------------------------

    def write_many(self, stream: str, values: Sequence[Any]) -> None:
        """Write these values to one stream (``output``, ``error``, ``warning``, ``verbose``,
        ``debug`` or ``information``), in order, in one write per 1,000 values or 4 Mi
        characters (:func:`fleetjobs.records.write_parts`): what a command printed at once
        (``run``'s lines of one read) costs one round trip to Redis, not one per value. They
        are in Redis when this returns, as one ``output`` is (once the action has ended,
        they go with the job's finish)."""
        if stream not in STREAMS:
            raise ValueError(f"no such stream: {stream!r} (one of {', '.join(STREAMS)})")
        if isinstance(values, (str, bytes)):
            raise TypeError("write_many takes a sequence of values, not one string")
        self._write(stream, *values)

    def _write(self, stream: str, *values: Any) -> None:
        if self.instance_id in self._records.truncated:
            return  # past the output cap: the registry said so once, with a warning record
        at = time.time()
        batch = []
        for value in values:
            # what JSON cannot carry, as text (a string is carried as it is: a command's lines)
            if type(value) is str:
                data, size = value, len(value)
            else:
                text = json.dumps(value, default=str)
                data, size = json.loads(text), len(text)
            self._seq += 1
            batch.append(Pending(stream, data, self._seq, at, size))
        if self._tail is not None:
            self._tail.extend(batch)
            return
        if not self._send(batch):
            self.request_stop("the job was removed")
            raise JobStopped("the job was removed while it ran")

    def _send(self, batch: Sequence[Pending]) -> bool:
        """Append ``batch`` to Redis, in writes of at most 1,000 records and 4 Mi characters
        (:func:`fleetjobs.records.write_parts`); False when the job no longer exists (it was
        removed while it ran). Past the output cap, the rest is not sent (the registry drops
        it)."""
        return self._send_parts(write_parts(batch))

    def _send_parts(self, parts: Sequence[Sequence[Pending]]) -> bool:
        iid, parent_iid, records = self.instance_id, self._parent_iid, self._records
        for part in parts:
            written = persistently(
                self._config, functools.partial(records.append, iid, parent_iid, part)
            )
            if not written:
                return False
            if iid in records.truncated:
                return True
        return True

    def defer(self) -> None:
        """What is written from now on goes into Redis with the job's finish, in the same
        script, not one record per call. The runtime calls it once the action has ended (for
        the values it returned, or why it failed); an action that has nothing left to do but
        write (``echo``) may call it first. Until then, what an action writes is in Redis when
        the write returns, so it survives the action's process dying next."""
        if self._tail is None:
            self._tail = []

    def take_tail(self) -> list[Pending]:
        """The records written since :meth:`defer`, for the finish: the last write's worth
        of them (:func:`write_parts`). Any before those are appended first, as
        :meth:`write_many` appends, so that no one script (nor one request to the relay)
        carries more; the finish then reports a job removed meanwhile."""
        tail, self._tail = self._tail or [], []
        parts = write_parts(tail)
        if len(parts) > 1 and (
            not self._send_parts(parts[:-1]) or self.instance_id in self._records.truncated
        ):
            return []
        return parts[-1] if parts else []

    def output(self, value: Any) -> None:
        """Write one value to the output stream (``Write-Output``)."""
        self._write("output", value)

    def error(self, message: Any) -> None:
        """Write a non-terminating error (``Write-Error``); the job goes on."""
        self._write("error", str(message))

    def warning(self, message: Any) -> None:
        """``Write-Warning``."""
        self._write("warning", str(message))

    def verbose(self, message: Any) -> None:
        """``Write-Verbose``."""
        self._write("verbose", str(message))

    def debug(self, message: Any) -> None:
        """``Write-Debug``."""
        self._write("debug", str(message))

    def information(self, message: Any) -> None:
        """``Write-Information``."""
        self._write("information", message)

    def progress(self, percent: float, status: str = "") -> None:
        """``Write-Progress``: the latest is also kept on the job for ``get``."""
        doc = {"percent": max(0.0, min(100.0, float(percent))), "status": str(status)}
        persistently(self._config, lambda: self._lifecycle.set_progress(self.job_id, doc))
        self._write("progress", doc)

    # ---- stopping -----------------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """True once the job was asked to stop (or timed out): end soon."""
        return self.stop_event.is_set()

    def check(self) -> None:
        """Raise :class:`JobStopped` if the job was asked to stop."""
        if self.stop_event.is_set():
            raise JobStopped(self.stop_reason or "stopped")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake and raise :class:`JobStopped` the moment the job is stopped; a
        checkpoint every half second, so a suspend holds it (the time held does not count)."""
        end = time.monotonic() + max(0.0, float(seconds))
        while True:
            if self.stop_event.wait(max(0.0, min(0.5, end - time.monotonic()))):
                raise JobStopped(self.stop_reason or "stopped")
            end += self.checkpoint()
            if time.monotonic() >= end:
                return

    def _persist(self, call: Callable[[], T]) -> T:
        return persistently(self._config, call)

    def request_stop(self, reason: str) -> None:
        """Set the stop flag and kill every registered process group (term, then kill)."""
        with self._lock:
            if self.stop_event.is_set():
                return
            self.stop_reason = reason
            self.stop_event.set()
            procs = list(self._procs.values())
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)

    def register_process(self, proc: subprocess.Popen[Any]) -> None:
        """Kill this process's group when the job stops; start it with start_new_session."""
        with self._lock:
            self._procs[proc.pid] = proc
            stopped = self.stop_event.is_set()
        self._record_groups()
        if stopped:
            _signal_group(proc, signal.SIGKILL)
            raise JobStopped(self.stop_reason or "stopped")

    def unregister_process(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._procs.pop(proc.pid, None)
        self._record_groups()

    def _record_groups(self) -> None:
        """Keep the registry's record of this job's process groups true, so that a worker
        on this host can end them if this process dies (:mod:`workers.reaper`)."""
        with self._lock:
            pids = list(self._procs)
        groups = [g for g in (reaper.group_of(pid) for pid in pids) if g is not None]
        store = self._records.store
        with contextlib.suppress(FleetJobsError):
            persistently(
                self._config, lambda: reaper.record(store, self.job_id, self.location, groups)
            )

    def kill_processes(self) -> None:
        """Kill what is left of every registered process group (the job is over)."""
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
        if procs:
            self._record_groups()


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
