"""A job's life in the registry: each change of its state is one function and one Lua script.

::

    create   (a pipeline)   a parent and its children, NotStarted; the first throttle_limit (a
                            rollout: the first wave) queued; the history indexes
    claim    claim.lua      NotStarted -> Running, if no stop was asked and its deadline holds
    finish   finish.lua     Running -> Completed | Failed (Stopped, if a stop was asked)
    stop     stop.lua       unfinished -> Stopping (running) | Stopped (not started, worker gone)
    sweep    sweep.lua      Running <-> Disconnected -> Failed; NotStarted past deadline -> Failed
    ask      ask.lua        Running -> Blocked (a question waits for an answer)
    answer   answer.lua     Blocked -> Running (or Suspending, if a suspend waits)
    suspend  suspend.lua    Running -> Suspending (a request; other unfinished ones keep it)
    park     park.lua       Suspending -> Suspended (its action reached a checkpoint)
    resume   resume.lua     Suspending | Suspended -> Running
    remove   (a pipeline)   a finished job and every key it owns, gone

The scripts that settle a child also settle its parent (by PowerShell's rule, from per-state
counters) and release a throttled parent's next child: such calls return those children's
ids, which the caller must publish (:class:`fleetjobs.dispatch.Dispatcher`). Both sides use
this module: a console to create, stop and remove; a worker to claim, finish and sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from .errors import RedisUnavailableError
from .keys import EVENT_STOP, IX_BUCKET
from .model import JobInfo, default_name, id_in_instance_id, new_instance_id, reason_text
from .registry import Call, num, running_of, snapshot
from .scripts import source
from .states import JobState
from .store import Store, guarded

REMOVE_CHUNK = 1000  # keys or members per command of a remove
ANSWERED = "Answered"  # Lifecycle.answer: this answer was the one taken


@dataclass(frozen=True)
class Composed:
    """A job's Celery messages, made and not sent: each child's, in order, and the events
    (channel after the key prefix, payload) to publish once they are on their queues."""

    messages: list[str]
    events: list[list[str]]


# makes the Celery messages of a job's children (given the job, its children and its Name)
Compose = Callable[["JobSpec", list["NewChild"], str], Composed]


@dataclass(frozen=True)
class NewChild:
    """A child job just created (or released): what it takes to publish its Celery task."""

    id: int
    instance_id: str
    location: str
    queued: bool


@dataclass(frozen=True)
class JobSpec:
    """What a start asks for, before any id is given."""

    action: str
    args: Sequence[Any]
    kwargs: dict[str, Any]
    command: str
    locations: Sequence[str]
    name: str | None = None
    throttle_limit: int = 32
    start_timeout: float | None = None
    timeout: float | None = None
    # a rollout (start --batch): waves of ``batch`` children, the next released ``batch_wait``
    # s after the last one settled; halted once more than ``max_failures`` children failed
    batch: int | None = None
    batch_wait: float = 0.0
    max_failures: int | None = None
    halt_running: bool = False
    prompt_timeout: float | None = None
    default_answer: str | None = None
    # every InstanceId in the iids index, for workers that read only it (older than 0.2:
    # placement.needs_iid_index); else only those that do not carry their Id
    index_iids: bool = False


class Lifecycle:
    """The state changes of one fleet's jobs.

    Args:
        store: the fleet's Redis (client, keys, scripts).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r = store.r

    def _run(self, name: str, *args: Any) -> tuple[str, list[int]]:
        res = self.store.scripts(name, *args)
        return str(res[0]), [int(x) for x in res[1:]]

    def create(self, spec: JobSpec) -> tuple[int, str, list[NewChild]]:
        """Record a parent and one child per location, atomically.

        Returns:
            The parent's id and instance id, and its children in location order; the first
            ``throttle_limit`` are marked queued, the rest wait in the parent's pending list.
        """
        info, children = self.create_job(spec)
        return info.id, info.instance_id, children

    @guarded
    def create_job(
        self, spec: JobSpec, compose: Compose | None = None
    ) -> tuple[JobInfo, list[NewChild]]:
        """:meth:`create`, giving the job's snapshot as written (no read back).

        Args:
            compose: makes each child's Celery message (:meth:`Dispatcher.compose`); the
                messages are kept with the job and the queued children's pushed onto their
                queues in the same script. Without it, the caller sends the messages.
        """
        n = len(spec.locations)
        last, ordinal = (int(v) for v in self.store.scripts("newid", n))
        pid = last - n
        now = time.time()
        piid = new_instance_id(pid)
        name = spec.name or default_name(pid)
        common = {
            "name": name,
            "command": spec.command,
            "action": spec.action,
            "created": repr(now),
        }
        first = spec.throttle_limit if spec.batch is None else spec.batch
        children = [
            NewChild(pid + 1 + i, new_instance_id(pid + 1 + i), loc, i < first)
            for i, loc in enumerate(spec.locations)
        ]
        parent = {
            **common,
            # the arguments are kept once, on the parent: each child's worker reads them there
            "args": json.dumps(list(spec.args)),
            "kwargs": json.dumps(spec.kwargs),
            "id": pid,
            "iid": piid,
            "location": ",".join(spec.locations),
            "state": JobState.NOT_STARTED.value,
            "children": ",".join(str(c.id) for c in children),
            "throttle": spec.throttle_limit,
            # the counters the scripts' move() keeps: how many children are in each state
            # but NotStarted (n less the others: prelude.lua)
            "n": n,
            **_rollout_fields(spec, n),
        }
        rows, deadlines = [], []
        for child in children:
            fields: dict[str, Any] = {
                **common,
                "id": child.id,
                "iid": child.instance_id,
                "location": child.location,
                "state": JobState.NOT_STARTED.value,
                "parent": pid,
                "queued": "1" if child.queued else "",
            }
            if spec.start_timeout is not None:
                fields["start_timeout"] = num(spec.start_timeout)
                if child.queued:  # one that waits for a throttle slot gets its deadline then
                    fields["deadline"] = repr(now + spec.start_timeout)
                    deadlines.append([fields["deadline"], str(child.id)])
            if spec.timeout is not None:
                fields["timeout"] = num(spec.timeout)
            if spec.prompt_timeout is not None:
                fields["prompt_timeout"] = num(spec.prompt_timeout)
            if spec.default_answer is not None:
                fields["default_answer"] = spec.default_answer
            rows.append(_text(fields))
        # the iids index holds the InstanceIds that do not carry their Id (new_instance_id), or
        # all of a job some older worker runs
        iids: list[str] = []
        for job_id, iid in ((pid, piid), *((c.id, c.instance_id) for c in children)):
            if spec.index_iids or id_in_instance_id(iid) != job_id:
                iids += (iid, str(job_id))
        doc = {
            "pid": str(pid),
            # the name index: a default name is not indexed (its Id finds it)
            "name": "" if name == default_name(pid) else name,
            "action": spec.action,
            "now": repr(now),
            "parent": (parent_row := _text(parent)),
            "children": rows,
            "deadlines": deadlines,
            "pending": [str(c.id) for c in children if not c.queued],
            # the history indexes get --action/--location/--since read instead of every job
            "locations": list(dict.fromkeys(spec.locations)),
            "ix": str((ordinal - 1) // IX_BUCKET),  # its bucket in them: by its ordinal
            "iids": iids,
        }
        msgs: list[str] = []
        if compose is not None and children:
            made = compose(spec, children, name)
            msgs, doc["events"] = made.messages, made.events
        # the messages as arguments of their own, not inside the document: they are most of a
        # fan-out's bytes, which Redis's cjson would decode once more and json.dumps escape
        # (10,000 children: decoding the document took 123-158 ms with them, 55-64 without;
        # the create, Redis serving nobody else, 490-493 ms against 524-602)
        try:
            self.store.scripts("create", json.dumps(doc, separators=(",", ":")), *msgs)
        except (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError) as exc:
            # sent, and no answer (a Redis stalled past the socket timeout): it may have run
            # when Redis came back, so a 'cannot reach Redis' could make a retry run it twice
            if "connecting" in str(exc) or not self._created(pid, piid, exc):
                raise  # (one that could not connect sent nothing)
        return snapshot(parent_row, rows), children

    def _created(self, pid: int, piid: str, exc: Exception) -> bool:
        """Whether the create whose answer was lost wrote job ``pid``: asked for a few seconds
        while Redis does not answer, and, when it answers that there is no such job, once
        more a moment later (Redis orders commands per connection: one that came back from a
        stall may serve this read before the create it held on the old connection). False:
        it was not. Neither said: the error says so.

        Raises:
            RedisUnavailableError: Redis does not answer, so what happened is not known.
        """
        answers = 0
        for delay in (0.2, 0.5, 1.0, 2.0, 3.0, 3.0):
            try:
                if self.r.hget(self.keys.job(pid), "iid") == piid:
                    return True
                answers += 1
                if answers == 2:
                    return False
            except redis.exceptions.RedisError:
                pass
            time.sleep(delay)
        raise RedisUnavailableError(
            f"cannot tell whether job {pid} was started: Redis did not answer ({exc}); "
            f"'fleetjobs get {pid}' tells once it does (do not start it again before)"
        ) from None

    @guarded
    def claim(
        self,
        job_id: int,
        worker: str,
        locations: Sequence[str] = (),
        task_id: str = "",
        attempt: str = "",
    ) -> tuple[str, list[int], tuple[JobInfo, Call | None] | None]:
        """Mark a NotStarted child Running on ``worker``; any other answer means: do not run it.

        Args:
            locations: where the message may be for: the location whose queue delivered it
                (or every location the worker serves, when the queue is not known); none: not
                checked (a test driving the scripts by hand).
            task_id: the message's task id, which must be the child's InstanceId (the one the
                fleet published); '': not checked.
            attempt: this delivery's own token: asking again with it (the first answer was
                lost) gets ``Running`` again; another delivery of the same message, even to the
                same worker (a copy), gets ``Taken``.

        Returns:
            The child's state after the claim (``Taken`` when another worker runs it;
            ``Refused: why`` when the message is not addressed to this worker: a parent's id,
            another location's child, a task id the fleet never sent), the children of its
            parent now due to dispatch, and with ``Running`` what the worker runs (read by
            the same script: the child as it now is and its parent's call, None when the
            parent is gone).
        """
        head, child, call = self.store.scripts(
            "claim", job_id, worker, ",".join(locations), task_id, attempt
        )
        state, due = str(head[0]), [int(x) for x in head[1:]]
        return state, due, running_of(child, call) if child else None

    @guarded
    def finish(
        self,
        job_id: int,
        state: JobState,
        reason: str = "",
        tail: Sequence[Any] = (),
        iid: str | None = None,
    ) -> tuple[str, list[int]]:
        """Settle a child as Completed/Failed (Stopped wins if a stop was asked).

        Args:
            tail: records its action wrote that are not in Redis yet, written first by the
                same script (:meth:`Records.tail`'s arguments, the child's iid first).
            iid: with no tail, the child's InstanceId as the worker knows it (its task id).
                A tail or an iid that is not the stored one settles nothing (``Missing``):
                the Id was given to another job since (the job removed, or lost with
                Redis's data).
        """
        extra = list(tail) if tail else ([iid] if iid else [])
        return self._run("finish", job_id, state.value, reason_text(reason), *extra)

    @guarded
    def stop(self, job_id: int, reason: str = "stopped by user") -> tuple[str, list[int]]:
        """Ask a job (a parent: all its children) to stop; durable, whatever the workers do."""
        return self._run("stop", job_id, reason_text(reason))

    @guarded
    def stop_queued(self, instance_id: str, reason: str) -> tuple[str, list[int]]:
        """Stop the child whose InstanceId this is if it has not started (a revoke from
        Celery); one that runs, or is gone, is left as it is. Returns its state after."""
        return self._run("stop", instance_id, reason_text(reason), "queued")

    @guarded
    def fail_queued(self, instance_id: str, location: str, reason: str) -> tuple[str, list[int]]:
        """Fail the child whose InstanceId this is if it has not started and is ``location``'s:
        the worker of its location refused the message the fleet sent for it (the caller
        checked it is that one), or met it expired (its start timeout passed). A child that
        runs, or another location's, is left as it is. Returns its state after."""
        return self._run("stop", instance_id, reason_text(reason), "refused", location)

    @guarded
    def sweep(self, every: float = 0.0) -> tuple[int, list[int]]:
        """Apply start deadlines and worker liveness to every unfinished child, in one script.

        Args:
            every: skip it (one command) when anyone swept the fleet less than ``every``
                seconds ago; 0 sweeps regardless.

        Returns:
            How many children changed state, and children now due to dispatch.
        """
        grace = num(self.store.config.disconnect_grace)
        changed, due = self._run("sweep", grace, max(0, round(every * 1000)))
        return int(changed), due

    @guarded
    def ask(self, job_id: int, prompt: dict[str, Any]) -> tuple[str, int]:
        """A running child asks ``prompt`` and turns Blocked.

        Returns:
            ``Blocked`` and the prompt's number (what an answer must name), or the state that
            kept it from asking (Stopping: end instead).
        """
        state, seq = self.store.scripts("ask", job_id, json.dumps(prompt))
        return str(state), int(seq)

    @guarded
    def answer(self, job_id: int, answer: str, seq: int | None = None) -> str:
        """Answer a Blocked child (prompt number ``seq``, or whatever it asks now).

        Returns:
            :data:`ANSWERED` when this answer was taken; ``Stale`` when the child asks
            another question now; else the state it is in (it was not asking: answered by
            someone else already, stopped, ``Missing``).
        """
        res = self.store.scripts("answer", job_id, answer, "" if seq is None else seq)
        return str(res[0])

    @guarded
    def suspend(self, job_id: int) -> str:
        """Ask a job (a parent: every child) to hold at its next checkpoint."""
        return str(self.store.scripts("suspend", job_id)[0])

    @guarded
    def park(self, job_id: int) -> tuple[str, list[int]]:
        """A child at a checkpoint with a suspend asked: Suspended, its throttle slot given on.

        Returns:
            ``Suspended`` when it must hold (anything else: go on, or end if Stopping), and
            children now due to dispatch.
        """
        return self._run("park", job_id)

    @guarded
    def resume(self, job_id: int) -> str:
        """Let a suspended job (a parent: every child) go on."""
        return str(self.store.scripts("resume", job_id)[0])

    @guarded
    def set_progress(self, job_id: int, doc: dict[str, Any]) -> None:
        """Keep a child's latest progress on its record, for ``get``."""
        if self.store.relay is not None:  # a confined worker's (fleetjobs.relaycall)
            self.store.relay.call("progress", job_id, doc)
            return
        self.r.hset(self.keys.job(job_id), "progress", json.dumps(doc))

    @guarded
    def remove(self, jobs: Sequence[JobInfo]) -> None:
        """Delete every key these top-level jobs and their children own, in one transaction.

        One command per key touched, with all its members (a bulk remove, a retention purge):
        not one per job and key.
        """
        keys = self.keys
        doomed: list[str] = []  # keys unlinked whole
        members: dict[tuple[str, str], list[Any]] = {}  # (command, key) -> members it drops

        def drop(command: str, key: str, member: Any) -> None:
            members.setdefault((command, key), []).append(member)

        stops: list[str] = []
        unindex: list[Any] = []  # each job's id, bucket (its hash's), action, hosts: unindex.lua
        for job in jobs:
            for member in (job, *job.children):
                iid = member.instance_id
                doomed += (keys.job(member.id), keys.out(iid), keys.held(iid), keys.msg(iid))
                drop("hdel", keys.iids, iid)
                drop("srem", keys.active, member.id)
                drop("zrem", keys.deadlines, member.id)
                if member is not job or not job.children:  # a parent is on no host's lists
                    drop("srem", keys.running(member.location), member.id)
                    drop("zrem", keys.inq(member.location), iid)
                if member is not job and not member.finished:
                    # its worker hears it at once and ends the action (no record to write to)
                    stops.append(keys.events(iid))
            doomed.append(keys.pending(job.id))
            if job.name != default_name(job.id) or id_in_instance_id(job.instance_id) != job.id:
                # (a default name is in no index since InstanceIds carry Ids: no SREM for it)
                drop("srem", keys.names(job.name), job.id)
            drop("zrem", keys.waves, job.id)
            locations = {c.location for c in job.children} | set(job.location.split(","))
            unindex += (job.id, "", job.action, ",".join(sorted(locations - {""})))
        unindexing = (source("unindex"), 0, self.keys.prefix, repr(time.time()), *unindex)

        def deletions(pipe: Any) -> Any:
            # UNLINK: a million records are freed in the background, not while Redis waits
            for i in range(0, len(doomed), REMOVE_CHUNK):
                pipe.unlink(*doomed[i : i + REMOVE_CHUNK])
            for (command, key), dropped in members.items():
                for i in range(0, len(dropped), REMOVE_CHUNK):
                    getattr(pipe, command)(key, *dropped[i : i + REMOVE_CHUNK])
            for channel in stops:
                pipe.publish(channel, EVENT_STOP)
            return pipe

        pipe = self.r.pipeline(transaction=True)
        if unindex:  # first: it reads each job's bucket from its hash
            pipe.eval(*unindexing)
        try:
            deletions(pipe).execute()
        except redis.exceptions.OutOfMemoryError:
            # a Redis at its maxmemory queues no command in a transaction, though these only
            # delete (the script's one write is forgiven): the same without one, so that a
            # full Redis can be freed (each step deletes; a remove cut short is done again)
            if unindex:
                self.r.eval(*unindexing)
            deletions(self.r.pipeline(transaction=False)).execute()
        # children that never started may still have a message waiting in their queue
        unstarted: dict[str, list[str]] = {}
        for job in jobs:
            for child in job.children:
                if child.begin_time is None:
                    unstarted.setdefault(child.location, []).append(child.instance_id)
        for location, iids in unstarted.items():
            self.store.scripts("unqueue", location, *iids)


def _text(fields: dict[str, Any]) -> dict[str, str]:
    """Field values as Redis stores them (what redis-py would send: floats by repr)."""
    return {k: repr(v) if isinstance(v, float) else str(v) for k, v in fields.items()}


def _rollout_fields(spec: JobSpec, n: int) -> dict[str, Any]:
    """A rollout parent's fields (none for a plain job): its first wave is queued now."""
    if spec.batch is None:
        return {}
    fields: dict[str, Any] = {
        "batch": spec.batch,
        "wave": 1,
        "wave_left": min(spec.batch, n),
        "batch_wait": num(spec.batch_wait),
    }
    if spec.max_failures is not None:
        fields["max_fail"] = spec.max_failures
    if spec.halt_running:
        fields["halt_running"] = "1"
    return fields
