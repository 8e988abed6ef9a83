"""The runtime: how a worker runs one child job and keeps the registry true about it.

The order matters, and is what makes a stop durable and a job at-most-once:

1. **claim** — one script moves the child NotStarted -> Running only if no stop was asked and
   its start deadline has not passed; any other answer means it must not run (a stopped job
   whose message a worker sees later, a redelivered message, an expired one).
2. **watch** — a thread listens for the job's stop (and its timeout) and, when it comes, kills
   the processes the action started and interrupts the action.
3. **run** — the action writes records through its context; a return value or each yielded
   value is output; an exception fails the job with its message as the Reason.
4. **finish** — one script settles the child (Stopped wins if a stop was asked) and updates
   its parent, and releases a throttled parent's next child, which this worker then publishes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fleetjobs.deadletters as deadletters
from fleetjobs.actions import get_action, registered
from fleetjobs.deadletters import DeadLetter
from fleetjobs.errors import ActionError, FleetJobsError
from fleetjobs.keys import EVENT_END, EVENT_STATE, EVENT_STOP
from fleetjobs.model import JobInfo
from fleetjobs.registry import Registry
from fleetjobs.routing import TASK_NAME, queue_for
from fleetjobs.signatures import describe
from fleetjobs.states import JobState
from fleetjobs.store import Store

from .context import JobContext, JobStopped, persistently
from .process import Layers
from .provenance import Journal, max_message_age, refusal

REFUSED = "Refused:"  # the claim's answer to a message not addressed to this worker

log = logging.getLogger("fleetjobs.worker")
INTERRUPT_SIGNAL = signal.SIGUSR2  # SIGUSR1 is billiard's soft time limit
INTERRUPT_GRACE = 0.5  # seconds an action gets to end by itself after the stop flag is set


class Runtime:
    """Runs child jobs in one worker process.

    Every Redis call here rides out a stall (:func:`persistently`): a host cut off for a few
    seconds waits, its jobs go on.

    Args:
        layers: gives this process's write path (one per process, made after fork).
        worker_id: this worker's identity in the registry, tied to its heartbeats.
        allow_shell: the operator allowed actions that run shell commands.
    """

    def __init__(
        self,
        layers: Callable[[], Layers],
        worker_id: str,
        allow_shell: bool,
        locations: Sequence[str] = (),
        journal: Journal | None = None,
    ) -> None:
        self._layers = layers
        self.worker_id = worker_id
        self.allow_shell = allow_shell
        self.locations = list(locations)  # the ones this worker serves
        self.journal = journal  # what this machine ran (signed fleets: no replay runs)

    def execute(
        self,
        job_id: int,
        via: str | None = None,
        task_id: str | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run one child job from claim to finish; returns the task's (unkept) result.

        Args:
            via: the location whose queue delivered the message (None: not known).
            task_id: the message's task id.
            spec: what the message says runs (a signed fleet's messages carry it); the job
                fails, unrun, when its record says otherwise.
        """
        w = self._layers()
        cfg = w.config
        if via and via not in self.locations:
            # a queue it was told to consume (Celery's remote control: add_consumer) that is
            # not one of its own locations: the claim would take the job for that location
            reason = f"it came through the queue of {via}, which this worker does not serve"
            log.warning("refused a message on %s: %s", via, reason)
            self._refused(w, job_id, via, task_id, reason)
            return {"state": "Refused", "ran": False}
        locations = [via] if via else self.locations
        # this delivery's token: a retry of the claim may go on, a copy not; 64 random bits
        # tell one worker's deliveries of one job apart, and keep a finished job's record
        # within a smaller allocation in Redis (some 64 B per job) than a whole UUID
        attempt = secrets.token_hex(8)
        state, due, running = persistently(
            cfg,
            lambda: w.lifecycle.claim(job_id, self.worker_id, locations, task_id or "?", attempt),
        )
        self._release(w, due)
        if state.startswith(REFUSED):
            # a message that is not addressed to this worker: logged, kept, nothing runs
            reason = state[len(REFUSED) :].strip()
            log.warning("refused a message on %s: %s", ",".join(locations), reason)
            self._refused(w, job_id, via, task_id, reason)
            return {"state": "Refused", "ran": False}
        if state == "Missing":  # removed while queued, or a message no console made
            log.warning("job %s not run: no such job in the registry", job_id)
            return {"state": state, "ran": False}
        if state != JobState.RUNNING.value or running is None:
            log.info("job %s not run: it is %s", job_id, state)
            return {"state": state, "ran": False}
        info, call = running  # the child and its parent's call, read by the claim itself
        parent_iid = None
        if info.parent_id is not None:
            if call is None:
                return {"state": "Missing", "ran": False}  # removed between claim and now
            parent_iid, args, kwargs = call
            info = dataclasses.replace(info, args=tuple(args), kwargs=kwargs)
        if cfg.signed:
            refused = refusal(spec, info, max_message_age(cfg.retention), via, cfg.prefix)
            if not refused and self.journal is not None:
                ran_at = self.journal.first_run(info.instance_id)
                if ran_at is not None:
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ran_at))
                    refused = f"refused: a replay; this machine ran this job at {when}"
            if refused:
                log.error("job %s not run: %s", job_id, refused)
                iid = info.instance_id
                state, due = persistently(
                    cfg, lambda: w.lifecycle.finish(job_id, JobState.FAILED, refused, iid=iid)
                )
                self._release(w, due)
                return {"state": state, "ran": False, "reason": refused}
        ctx = JobContext(w.records, w.lifecycle, info, parent_iid)
        ctx.release_due = lambda due: self._release(w, due)
        final, reason = self._run(ctx, info, w)
        ctx.kill_processes()
        # what was written once the action ended goes with the finish, in the same script
        tail = w.records.tail(info.instance_id, parent_iid, ctx.take_tail())
        state, due = persistently(cfg, lambda: w.lifecycle.finish(job_id, final, reason, tail))
        w.records.truncated.discard(info.instance_id)
        self._release(w, due)
        return {"state": state, "ran": True, "reason": reason if state == final.value else ""}

    def _refused(
        self, w: Layers, job_id: int, via: str | None, task_id: str | None, reason: str
    ) -> None:
        letter = DeadLetter(
            at=time.time(),
            queue=queue_for(via) if via else "",
            location=via or "",
            reason=reason,
            worker=self.worker_id,
            task=TASK_NAME,
            task_id=task_id or "",
            content_type="application/json",
            body=json.dumps([[job_id], {}, {}]),
        )
        with contextlib.suppress(FleetJobsError):
            deadletters.push(w.store, letter)

    def _release(self, w: Layers, due: list[int]) -> None:
        if due:
            persistently(w.config, lambda: w.dispatcher.release(due))

    def _run(self, ctx: JobContext, info: JobInfo, w: Layers) -> tuple[JobState, str]:
        spec = get_action(info.action)
        if spec is None:
            offers = ", ".join(sorted(self.offered()))
            reason = f"unknown action {info.action!r} on {info.location} (it offers: {offers})"
            return self._fail_early(ctx, reason)
        if spec.shell and not self.allow_shell:
            reason = (
                f"{info.action!r} is not allowed on {info.location}: its operator did not start "
                "the worker with --allow-shell"
            )
            return self._fail_early(ctx, reason)
        try:
            _signature(spec.fn).bind(ctx, *info.args, **info.kwargs)
        except TypeError as exc:
            return self._fail_early(ctx, f"bad arguments for {info.action!r}: {exc}")
        timeout = info.timeout
        watcher = _Watcher(w.store, w.registry, ctx, timeout)
        watcher.start()
        try:
            with _interruptible(ctx) as guard:
                result = spec.fn(ctx, *info.args, **info.kwargs)
                if not inspect.isgenerator(result):  # its values are all made: the action ended
                    ctx.defer()
                for value in _outputs(result):
                    ctx.output(value)
                guard.done()
            return JobState.COMPLETED, ""
        except JobStopped as exc:
            if watcher.timed_out:
                reason = f"timed out after {_secs(timeout)} s"
                _quiet(ctx, reason)
                return JobState.FAILED, reason
            return JobState.STOPPED, ctx.stop_reason or str(exc) or "stopped"
        except ActionError as exc:
            _quiet(ctx, str(exc))
            return JobState.FAILED, str(exc)
        except Exception as exc:  # an action's failure is data, never a crash of the worker
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            _quiet(ctx, reason)
            return JobState.FAILED, reason
        finally:
            watcher.close()

    def _fail_early(self, ctx: JobContext, reason: str) -> tuple[JobState, str]:
        _quiet(ctx, reason)
        return JobState.FAILED, reason

    def offered(self) -> list[str]:
        """The actions this worker runs (shell ones only where the operator allowed them)."""
        return sorted(
            name for name, spec in registered().items() if self.allow_shell or not spec.shell
        )

    def signatures(self) -> dict[str, list[dict[str, Any]]]:
        """The offered actions' parameters, for consoles to bind arguments to (Get-Command)."""
        return {n: describe(spec.fn) for n in self.offered() if (spec := get_action(n))}

    def suspendable(self) -> list[str]:
        """The offered actions that mark checkpoints (a suspend can take hold in them)."""
        return [n for n in self.offered() if (spec := get_action(n)) and spec.suspendable]


def _outputs(result: Any) -> Iterator[Any]:
    """PowerShell unrolls what a script block returns: a list is many outputs, None none."""
    if result is None:
        return
    if inspect.isgenerator(result) or isinstance(result, (list, tuple)):
        yield from result
    else:
        yield result


_watch_threads: tuple[int, ThreadPoolExecutor] | None = None
# seconds between a watcher's reads of its job's stop flag, for a message it missed (a stop
# and a remove are published on the job's channel, and heard at once)
RECHECK = 5.0
# seconds a job runs before its watcher subscribes to its channel (a stop of a job younger
# than that is heard when it subscribes, or at its end)
QUIET = 0.05


def _watch_pool() -> ThreadPoolExecutor:
    """This process's threads that watch jobs, kept between jobs: starting a thread for each
    job cost ~0.8 ms of its round trip (the job waited for the new thread to be scheduled).
    Made after the fork, in the pool process that runs the jobs."""
    global _watch_threads
    if _watch_threads is None or _watch_threads[0] != os.getpid():
        pool = ThreadPoolExecutor(max_workers=4096, thread_name_prefix="fleetjobs-watch")
        _watch_threads = (os.getpid(), pool)
    return _watch_threads[1]


_signatures = functools.cache(inspect.signature)


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """An action's signature, made once per process: ``inspect.signature`` took 36 of the 43
    us the check of a job's arguments cost (timeit, ``echo``); binding to it takes the rest.
    An action that cannot be a key (a callable object without a hash) has it made each time."""
    try:
        return _signatures(fn)
    except TypeError:
        return inspect.signature(fn)


class _Later:
    """Watchers to start once their job is QUIET s old, from one thread of the process that
    looks every QUIET/2 s while any is due: handing each job's watcher to a kept thread at
    its start (waking that thread) cost an echo ~0.45 ms of its pool process (py-spy), and
    most jobs end before they need a watcher at all."""

    def __init__(self) -> None:
        self._due: collections.deque[tuple[float, _Watcher]] = collections.deque()
        self._wake = threading.Event()
        self._pid = -1
        self._lock = threading.Lock()

    def add(self, watcher: _Watcher) -> None:
        if self._pid != os.getpid():  # made after the fork, in the process that runs jobs
            with self._lock:
                if self._pid != os.getpid():
                    self._due.clear()
                    threading.Thread(target=self._loop, name="fleetjobs-later", daemon=True).start()
                    self._pid = os.getpid()
        self._due.append((time.monotonic() + QUIET, watcher))
        if len(self._due) == 1:
            self._wake.set()  # it was idle

    def _loop(self) -> None:
        due = self._due
        while True:
            if not due:
                self._wake.wait(1.0)
                self._wake.clear()
            time.sleep(QUIET / 2)
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, watcher = due.popleft()
                if not watcher.closed:
                    try:
                        _watch_pool().submit(watcher.run)
                    except RuntimeError:  # the process is ending: no new thread to watch
                        return


_later = _Later()


class _Watcher:
    """Listens for the job's stop and its timeout; interrupts the action when either comes."""

    def __init__(
        self, store: Store, registry: Registry, ctx: JobContext, timeout: float | None
    ) -> None:
        self._registry = registry
        self._ctx = ctx
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._closed = threading.Event()
        self.timed_out = False
        self._store = store
        self._channel = store.keys.events(ctx.instance_id)
        self._pubsub: Any = None  # subscribed once the job is no longer young (QUIET)
        self._main = threading.main_thread().ident
        self._runner = threading.get_ident()

    def start(self) -> None:
        """Watch from a kept thread once the job is QUIET s old (at once for a timeout sooner
        than that); the job does not wait for it. Most jobs end within QUIET s: they need no
        watcher and no subscription (its SUBSCRIBE and UNSUBSCRIBE were a fifth of an echo's
        time in its pool process). The claim has just read the stop flag and finish settles a
        job stopped meanwhile as Stopped, so a stop given before the watcher listens is only
        heard later, never lost."""
        if self._deadline is not None and self._left() < QUIET:
            _watch_pool().submit(self.run, self._left())
        else:
            _later.add(self)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def run(self, wait: float = 0.0) -> None:
        ended = False
        try:
            if not self._closed.wait(wait):
                self._watch()
            ended = True
        finally:
            # only this thread touches the subscription: ending it from the runtime's thread
            # while this one reads would hand a half-read connection on
            if self._pubsub is not None:
                self._store.unsubscribe(self._pubsub, reuse=ended)

    def _left(self) -> float:
        return 0.0 if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _listen(self) -> bool:
        """Subscribe to the job's channel if not yet (False: Redis is away for now)."""
        if self._pubsub is None:
            try:
                self._pubsub = self._store.subscribe([self._channel])
            except Exception:
                return False
        return True

    def _watch(self) -> None:
        # A stop and a remove say so on the job's channel; a state change (a suspend, a
        # settle by the sweep) makes it look. The registry is read once subscribed (for what
        # was said before), then only when told or every RECHECK s, for a message missed
        began = time.monotonic()
        last_check = began - RECHECK
        self._ctx.poke()  # and the next checkpoint looks, for a suspend asked before
        while not self._closed.is_set():
            try:
                # short reads while the job is young: most jobs end within a second, and
                # their thread and connection are free for the next one within 20 ms
                young = time.monotonic() - began < 1.0
                if self._listen():
                    msg = self._pubsub.get_message(timeout=0.02 if young else 0.25)
                else:  # Redis away: the deadline still counts, the flag is read when back
                    msg = None
                    self._closed.wait(0.25)
                now = time.monotonic()
                # a reused connection may bring a former job's message: only this channel's count
                mine = msg is not None and msg.get("channel") == self._channel
                data = msg.get("data") if msg is not None and mine else None
                changed = data in (EVENT_STATE, EVENT_END, EVENT_STOP)
                if changed and data != EVENT_STOP:
                    self._ctx.poke()  # a suspend asked: the next checkpoint looks
                stop = False
                if changed or now - last_check >= RECHECK:
                    # a message is only a reason to look at the job's record: whoever may
                    # publish on the fleet's channels could send one (a confined worker)
                    last_check = now
                    stop = self._registry.should_end(self._ctx.job_id)
            except FleetJobsError:
                continue  # Redis away for a moment: the deadline still counts
            except Exception:
                if self._closed.is_set():
                    return
                if self._pubsub is not None:  # its connection broke: subscribe again
                    self._store.unsubscribe(self._pubsub, reuse=False)
                    self._pubsub = None
                time.sleep(0.25)
                continue
            if stop:
                self._interrupt("stopped by user")
                return
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.timed_out = True
                self._interrupt("timed out")
                return

    def _interrupt(self, reason: str) -> None:
        self._ctx.request_stop(reason)
        if self._closed.wait(INTERRUPT_GRACE):
            return
        # the action did not notice the flag: interrupt it where it is
        if self._runner == self._main:
            with contextlib.suppress(ProcessLookupError):
                signal.pthread_kill(self._runner, INTERRUPT_SIGNAL)

    def close(self) -> None:
        self._closed.set()


class _Guard:
    def __init__(self) -> None:
        self.active = True

    def done(self) -> None:
        self.active = False


@contextlib.contextmanager
def _interruptible(ctx: JobContext) -> Iterator[_Guard]:
    """While the action runs (main thread only), the interrupt signal raises JobStopped in it."""
    guard = _Guard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def handler(signum: int, frame: object) -> None:
        if guard.active and ctx.should_stop:
            guard.active = False
            raise JobStopped(ctx.stop_reason or "stopped")

    previous = signal.signal(INTERRUPT_SIGNAL, handler)
    try:
        yield guard
    finally:
        guard.active = False
        signal.signal(INTERRUPT_SIGNAL, previous)


def _quiet(ctx: JobContext, text: str) -> None:
    """Write the error record of the job's end, to go with its finish (deferred: it cannot
    fail here, whether the job was removed or Redis is away)."""
    ctx.defer()
    ctx.error(text)


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)
