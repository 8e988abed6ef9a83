"""The relay: writes confined workers ask for, checked and made with a console's rights.

A confined worker (``FLEETJOBS_CONFINED_TO``; deploy/redis-acl.conf's per-host worker user)
may write only its own location's keys, so a stolen worker credential reaches no other host:
it can push no message onto another host's queue, change no other job, no schedule, no kept
message. What such a worker must still have written beyond its keys — its jobs' state (their
parents, the fleet's indexes, a throttled parent's next child onto another host's queue), its
records, its heartbeat, its dead letters — it asks here (:mod:`fleetjobs.relaycall`, the
other side). A request arrives on ``loc:<location>:relay``, a list only that location's worker
(and consoles) may write, so the list names who asks; the relay runs it only if it is about
that location's own jobs, with the same scripts a trusted worker runs itself, and answers.

Since confined workers may not sweep the fleet either, the relay also does their upkeep each
heartbeat interval: the sweep (start deadlines, dead hosts) and the retention purge. Run one
or more (``fleetjobs relay``; each request is taken by one); while none runs, confined workers
wait (their calls time out as a Redis that does not answer would) and trusted ones carry on.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from .config import Config
from .deadletters import DeadLetter, push_for_host
from .errors import FleetJobsError
from .hosts import read_doc, read_facts
from .model import reason_text
from .options import is_number
from .records import WRITE_BATCH, is_record
from .registry import id_of_instance
from .relaycall import ANSWER_TTL_MS, RESEND_CHUNK
from .routing import check_location, queue_for
from .store import Store
from .version import __version__

log = logging.getLogger("fleetjobs.relay")
BATCH = 100  # requests of one location served before the next location's turn
TURN_SECONDS = 0.25  # or as long as its requests take: the rest wait for its next turn
MAX_REQUEST = 64 * 2**20  # bytes of one request: a bigger one is refused, not parsed
RINGS = 1000  # rings taken off the bell in one round trip


class Refused(Exception):
    """A request that is not about the asking location's own jobs (or not one it may make)."""


class _Gone(Exception):
    """The job a request names does not exist: the script's own answer for that, unrun (a job
    made between the check and the script must not be changed by another location)."""

    def __init__(self, answer: Any) -> None:
        super().__init__("gone")
        self.answer = answer


class Relay:
    """Takes confined workers' requests off their lists, checks and runs them, answers.

    Args:
        store: the fleet's Redis, as a console (a user that writes the whole fleet).
        upkeep: called each heartbeat interval (the sweep and purge; none in a test that
            drives the relay by hand).
    """

    def __init__(self, store: Store, upkeep: Callable[[], object] | None = None) -> None:
        if store.relay is not None:
            raise FleetJobsError("the relay needs a console's Redis user, not a confined one")
        self.store = store
        self.keys = store.keys
        self.r = store.r
        self.config: Config = store.config
        self.upkeep = upkeep
        self._pending: dict[str, None] = {}  # locations with requests waiting, in turn order
        self.beat_docs: dict[str, str] = {}  # confined worker -> the document its last beat wrote
        self._batch: dict[str, int] = {}  # requests a turn takes, where fewer than BATCH

    # ---- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; Redis away for a while is waited out."""
        # the first sweep waits two heartbeat intervals: after a time with no relay, confined
        # workers' liveness has run out, and their heartbeats come in first (else their
        # running jobs would look Disconnected for a moment)
        last_upkeep = time.monotonic() + self.config.heartbeat_interval
        warned = False
        while not stop.is_set():
            try:
                self.step(timeout=min(1.0, self.config.heartbeat_interval))
                now = time.monotonic()
                if self.upkeep is not None and now - last_upkeep >= self.config.heartbeat_interval:
                    last_upkeep = now
                    self.upkeep()
                warned = False
            except (FleetJobsError, redis.exceptions.RedisError) as exc:
                if not warned:
                    log.warning("relay: %s (will keep trying)", exc)
                    warned = True
                stop.wait(1.0)
            except Exception:  # never let one bad moment end the relay
                log.exception("relay: unexpected error (going on)")
                stop.wait(1.0)

    def step(self, timeout: float = 1.0) -> int:
        """Take the rings waiting, then serve each location with requests one batch
        (:data:`BATCH`, or what :data:`TURN_SECONDS` allows) in turn: a location that rings or
        asks without end (a stolen credential flooding) delays the others by one turn each
        round, not by its backlog. A turn that runs out of time cuts its location's next
        batch to what it served, and a turn that ends early sets it back by its pace (a stall
        passed: a whole batch again), so once a location's requests prove costly the relay
        holds no more of them in hand than a turn serves; what waits is on its list.
        Waits up to ``timeout`` s for a ring when nothing is waiting. Returns how many
        requests it served."""
        self._take_rings(timeout)
        served = 0
        for location in list(self._pending):
            key = self.keys.relay(location)
            want = self._batch.get(location, BATCH)
            taken = self.r.lpop(key, want) or []  # one round trip
            if len(taken) < want:
                del self._pending[location]  # drained: its next request rings again
                self._batch.pop(location, None)
            began = time.monotonic()
            turn_ends = began + TURN_SECONDS
            for i, raw in enumerate(taken):
                if i and time.monotonic() > turn_ends:  # costly requests: the rest go back,
                    self.r.lpush(key, *reversed(taken[i:]))  # first in line, for its next turn
                    self._pending[location] = None
                    # and its next turn takes no more than this one served: what waits stays
                    # on its list (seen there, and there for another relay), not in this one
                    self._batch[location] = i
                    break
                self.serve(location, raw)
                served += 1
            else:
                if len(taken) == want < BATCH:  # a cut batch, served whole: as many as fit
                    took = time.monotonic() - began  # in a turn at this one's pace
                    fits = BATCH if took <= 0 else int(want * TURN_SECONDS / took)
                    if fits >= BATCH:
                        self._batch.pop(location, None)
                    else:
                        self._batch[location] = max(want, fits)
        return served

    def _take_rings(self, timeout: float) -> None:
        rings = self.r.lpop(self.keys.bell, RINGS) or []
        if not rings and not self._pending:
            rung = self.r.brpop([self.keys.bell], timeout=timeout)
            rings = [rung[1]] if rung else []
        new = []
        for ring in dict.fromkeys(str(x) for x in rings):  # each location once
            try:
                check_location(ring)
            except FleetJobsError:
                continue  # a ring is only a wake-up: a bad one names no list to read
            if ring not in self._pending:
                new.append(ring)
        if new:  # only those with requests waiting (a flood of names costs one round trip)
            pipe = self.r.pipeline(transaction=False)
            for location in new:
                pipe.exists(self.keys.relay(location))
            for location, waiting in zip(new, pipe.execute(), strict=True):
                if waiting:
                    self._pending[location] = None

    def serve(self, location: str, raw: str) -> None:
        """Run one request from ``location``'s list and answer it."""
        if len(raw) > MAX_REQUEST:  # refused by its id (written first), not left unanswered
            found = re.match(r'\{"id":"([0-9a-f]{1,64})"', raw)
            if found is None:
                log.error("relay: dropped a request over %d bytes from %s", MAX_REQUEST, location)
                return
            raw = json.dumps({"id": found.group(1), "op": "oversize", "args": []})
        try:
            request = json.loads(raw)
            rid = str(request["id"])
            if not rid.isalnum() or len(rid) > 64:
                raise ValueError("a bad request id")
            op, args = str(request["op"]), list(request["args"])
        except (ValueError, KeyError, TypeError, RecursionError):  # the last: nested too deep
            log.error("relay: dropped a malformed request from %s: %.200s", location, raw)
            return
        try:
            answer: dict[str, Any] = {"ok": self._run(location, op, args)}
        except _Gone as gone:
            answer = {"ok": gone.answer}
        except Refused as exc:
            log.error("relay: refused a request from %s: %s", location, exc)
            answer = {"err": str(exc), "kind": "refused"}
        except redis.exceptions.ConnectionError:
            raise  # Redis away: the loop waits it out (the request is lost; its caller retries)
        except Exception as exc:  # a request that makes no sense must not stop the relay
            log.warning("relay: a request from %s failed: %r", location, exc)
            answer = {"err": f"{type(exc).__name__}: {exc}", "kind": "failed"}
        key = self.keys.relay_answer(location, rid)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(answer, separators=(",", ":")))
        pipe.pexpire(key, ANSWER_TTL_MS)
        pipe.execute()

    # ---- what a location may ask -------------------------------------------------------

    def _run(self, location: str, op: str, args: list[Any]) -> Any:
        if op == "script":
            if not args or not isinstance(args[0], str):
                raise Refused("a script request names no script")
            name = args[0]
            check = _SCRIPTS.get(name)
            if check is None:
                raise Refused(f"script {name!r} is not one a worker runs")
            if len(args) - 1 > _MOST_ARGS[name]:  # before anything is made of them: one
                # request must not hold the relay, and every other location's turn, for long
                most = f"{len(args) - 1} arguments to {name}, which takes {_MOST_ARGS[name]}"
                raise Refused(_TOO_MANY.get(name, most))
            if not all(type(a) in _SCALARS for a in args[1:]):  # a list 32 M long: seconds
                raise Refused(f"an argument to {name} that is not text or a number")
            rest = [str(a) for a in args[1:]]
            answer = self.store.scripts(name, *check(self, location, rest))
            if name == "beat" and rest[0] == "beat":  # that worker's document, as written
                if len(self.beat_docs) >= 10_000:  # workers long gone (each id is its own)
                    self.beat_docs.clear()
                self.beat_docs[rest[1]] = rest[2]
            return answer
        if op == "progress":
            job_id, doc = int(args[0]), args[1]
            if not (
                isinstance(doc, dict)
                and set(doc) <= {"percent", "status"}
                and is_number(doc.get("percent"))
                and isinstance(doc.get("status", ""), str)
            ):
                raise Refused("a progress that is not {percent, status}")
            self._own(location, job_id, gone=False)
            self.r.hset(self.keys.job(job_id), "progress", json.dumps(doc))
            return None
        if op in ("hostdoc", "facts") and not (args and isinstance(args[0], str)):
            raise Refused(f"a {op} that is not a JSON text")  # a worker sends one
        if op == "hostdoc":
            self.r.hset(self.keys.hosts, location, _location_doc(args[0], location))
            return None
        if op == "facts":
            try:
                read_facts(args[0])  # what every console reads as an object
            except ValueError as exc:
                raise Refused(str(exc)) from None
            self.r.hset(self.keys.facts, location, args[0])
            return None
        if op == "deadletter":
            worker = args[0].get("worker") if isinstance(args[0], dict) else None
            if not isinstance(worker, str) or not worker.startswith(location + "/"):
                raise Refused(f"a dead letter not from one of {location}'s workers")
            # what its own queue held, whatever it says: its location and queue are the
            # relay's, and so is when (a letter dated in the year 9999 would list first)
            letter = DeadLetter.checked(
                {**args[0], "location": location, "queue": queue_for(location), "at": time.time()}
            )
            push_for_host(self.store, letter)  # its own list: it pushes out only its own
            if letter.task_id:  # its job's message came and was refused: not lost
                self.r.zrem(self.keys.inq(location), letter.task_id)
            return None
        if op == "oversize":
            raise Refused(f"a request over {MAX_REQUEST // 2**20} MiB (a record this big?)")
        raise Refused(f"unknown request {op!r}")

    def _own(self, location: str, job_id: int | str, gone: Any = None) -> dict[str, str | None]:
        """The child ``job_id``'s parent, iid, state and queued, if it is one of
        ``location``'s; a job that does not exist answers ``gone`` (with None: goes on, for a
        script that looks itself)."""
        names = ("location", "parent", "iid", "state", "queued")
        loc, parent, iid, state, queued = self.r.hmget(self.keys.job(job_id), *names)
        if loc is None:
            if gone is not None:
                raise _Gone(gone)
            return {"parent": None, "iid": None, "state": None, "queued": None}
        if not parent or loc != location:
            raise Refused(f"job {job_id} is not a child job of {location}")
        return {"parent": parent, "iid": iid, "state": state, "queued": queued}

    def _own_iid(self, location: str, iid: str) -> str | None:
        """The child with InstanceId ``iid``'s parent's iid ('' for none), if it is one of
        ``location``'s; None when no such job exists."""
        job_id = id_of_instance(self.r, self.keys, iid)
        if job_id is None:
            return None
        parent = self._own(location, str(job_id))["parent"]
        return str(self.r.hget(self.keys.job(parent), "iid") or "") if parent else ""


def _location_doc(doc: Any, location: str) -> str:
    try:
        parsed = read_doc(str(doc))  # what every console reads it as, types included
    except ValueError as exc:
        raise Refused(f"a host record consoles cannot read: {exc}") from None
    if parsed.get("location") != location:
        raise Refused(f"a host record for another location than {location}")
    # this relay's version, which consoles read to know what it finds (the worker's own word
    # for it does not count): placement.needs_iid_index
    return json.dumps({**parsed, "relay_version": __version__})


# ---- each script a worker runs: what its arguments may name ---------------------------


def _claim(relay: Relay, location: str, args: list[str]) -> list[str]:
    # (job id, worker, the locations its message may be for, task id, attempt): the script
    # refuses a child of any other location than those named, so they must be just this one
    if len(args) < 3 or args[2] != location:
        raise Refused(f"a claim for another location than {location}")
    _own_worker(location, args[1])
    return args


def _one_job(gone: Any) -> Callable[[Relay, str, list[str]], list[str]]:
    # ask, answer, park: the first argument is the child's id; gone: the script's answer for
    # a job that does not exist
    def check(relay: Relay, location: str, args: list[str]) -> list[str]:
        if not args:
            raise Refused("no job named")
        relay._own(location, args[0], gone)
        return args

    return check


# answer, park, stop: a child of the asking location's; a job gone answers as the script
_OWN_CHILD = _one_job(["Missing"])


def _stop(relay: Relay, location: str, args: list[str]) -> list[str]:
    # (job id, reason): Celery ended the task (its own child only); the reason cut as a
    # finish's is, for it becomes the job's Reason
    args = _OWN_CHILD(relay, location, args)
    if len(args) > 1:
        args[1] = reason_text(args[1])
    return args


def _finish(relay: Relay, location: str, args: list[str]) -> list[str]:
    # (job id, state, reason, [iid, [parent iid, cap, warning, records...]])
    if len(args) < 3 or args[1] not in _ENDS:
        raise Refused("a finish to no end state")
    args[2] = reason_text(args[2])  # its Reason, cut as a worker cuts it
    own = relay._own(location, args[0], ["Missing"])
    if own["state"] == "NotStarted" and own["queued"] != "1":
        # waiting for its throttle slot or wave: no message of it was sent, so no worker can
        # have it to settle (settling it would count as a slot or a wave ending)
        raise Refused(f"job {args[0]} waits for its turn: no worker has its message")
    if len(args) > 3:
        if args[3] != own["iid"]:  # its Id was given to another job since: not that one's
            raise _Gone(["Missing"])
        if len(args) > 4:
            if len(args) < 7:
                raise Refused("records with no cap or warning record")
            args = _records(relay, location, args, 3)
    return args


def _append(relay: Relay, location: str, args: list[str]) -> list[str]:
    # (iid, parent iid, cap, warning, records...)
    return _records(relay, location, args, 0)


def _records(relay: Relay, location: str, args: list[str], at: int) -> list[str]:
    if len(args) < at + 4:
        raise Refused("records with no job")
    parent_iid = relay._own_iid(location, args[at])
    if parent_iid is not None and args[at + 1] != parent_iid:
        raise Refused("records announced to another job than the writer's parent")
    out = list(args)
    out[at + 2] = str(relay.config.max_output)  # the fleet's cap, not one the worker says
    if not all(seq.isascii() and seq.isdecimal() for seq in out[at + 4 :: 2]):
        raise Refused("a record number that is not one")
    for text in (out[at + 3], *out[at + 5 :: 2]):  # the warning record, then each record
        if not is_record(text):
            raise Refused("a record that is not one (JSON with its stream, data and time)")
    return out


def _beat(relay: Relay, location: str, args: list[str]) -> list[str]:
    # ('beat' or 'leave', worker id, document, ttl ms, locations...): its own location only,
    # under a worker id of its own (a confined worker's starts with its location and '/'),
    # so no worker keeps another location's worker alive, dead or not
    if len(args) != 5 or args[0] not in ("beat", "leave") or args[4] != location:
        raise Refused(f"a heartbeat for another location than {location}")
    _own_worker(location, args[1])
    if args[0] == "beat" and _locations_of(args[2]) != [location]:
        raise Refused(f"a worker document for other locations than {location}")
    # a document as this relay's last beat for that worker wrote it (Relay._run records it
    # once the beat is done) is left alone: the beat's one write is its liveness (beat.lua
    # writes it again if it is gone)
    worker, doc = args[1], args[2]
    kept = args[0] == "beat" and relay.beat_docs.get(worker) == doc
    relay.beat_docs.pop(worker, None)  # unknown, should the script fail
    return ["beat:0:kept", *args[1:]] if kept else args


def _own_worker(location: str, worker: str) -> None:
    if not worker.startswith(location + "/"):
        raise Refused(f"worker id {worker!r} is not one of {location}'s")


def _locations_of(doc: str) -> list[str] | None:
    try:
        parsed = json.loads(doc)
    except ValueError:
        return None
    found = parsed.get("locations") if isinstance(parsed, dict) else None
    return found if isinstance(found, list) else None


def _overdue(relay: Relay, location: str, args: list[str]) -> list[str]:
    if len(args) != 2 or args[0] != location:
        raise Refused(f"a look at another location's queue than {location}")
    return args


def _resend(relay: Relay, location: str, args: list[str]) -> list[str]:
    for iid in args:
        if relay._own_iid(location, iid) is None:
            raise Refused(f"no child job of {location} has InstanceId {iid}")
    return args


def _pgroups(relay: Relay, location: str, args: list[str]) -> list[str]:
    # ('record' or 'forget', job id, location, record)
    if len(args) != 4 or args[0] not in ("record", "forget") or args[2] != location:
        raise Refused(f"process groups of another location than {location}")
    relay._own(location, args[1])
    return args


_ENDS = {"Completed", "Failed", "Stopped"}
# the most arguments each script takes from a worker (what its .lua reads after the prefix
# and the time); records: WRITE_BATCH pairs of number and record, which is what a worker
# sends at most (workers.context)
_MOST_ARGS = {
    "claim": 5,
    "finish": 7 + 2 * WRITE_BATCH,
    "ask": 2,
    "answer": 3,
    "park": 1,
    "stop": 2,
    "append": 4 + 2 * WRITE_BATCH,
    "beat": 5,
    "overdue": 2,
    "resend": RESEND_CHUNK,
    "pgroups": 4,
}
_SCALARS = (str, int, float)  # what a script's arguments are, as a worker sends them
_TOO_MANY = {
    "append": f"more than {WRITE_BATCH} records in one request",
    "finish": f"more than {WRITE_BATCH} records in one request",
    "resend": f"more than {RESEND_CHUNK} children to resend in one request",
}
_SCRIPTS: dict[str, Callable[[Relay, str, list[str]], list[str]]] = {
    "claim": _claim,
    "finish": _finish,
    "ask": _one_job(["Missing", 0]),
    "answer": _OWN_CHILD,
    "park": _OWN_CHILD,
    # Celery ended the task (a warm shutdown's time limit, a revoke): its own child only
    "stop": _stop,
    "append": _append,
    "beat": _beat,
    "overdue": _overdue,
    "resend": _resend,
    "pgroups": _pgroups,
}
