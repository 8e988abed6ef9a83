"""The registry: jobs, their stream records and the fleet's hosts, kept in Redis.

Keys (all behind the configured prefix, ``fj:`` by default)::

    seq              counter behind every job Id, fleet-wide
    job:<id>         hash: one job (a parent or a child)
    jobs             sorted set of the top-level job ids (Get-Job's list)
    names:<name>     set of top-level ids carrying that name
    iids             hash: InstanceId -> Id
    out:<iid>        list of a child's stream records, oldest first, taken once
    pending:<id>     list of a throttled parent's children still waiting for a slot
    ended            sorted set: finished top-level ids by end time, for retention
    active           set of children running somewhere, for the liveness sweep
    deadlines        sorted set: NotStarted children by the time they must have started
    running:<loc>    set of children running on a location
    host:<loc>       a location's liveness (expires with its heartbeats)
    hosts            hash: location -> its last heartbeat, kept while it is offline
    wk:<worker>      a worker process's liveness (expires with its heartbeats)
    ev:<iid>         pub/sub channel: 'state', 'r' (a record), 'stop'
    pgroups:<loc>    hash: child id -> the process groups it started there (workers.reaper)
    deadletters      list: messages workers refused, newest first (fleetjobs.deadletters)

Every state change is a Lua script (:mod:`fleetjobs.lua`); everything else is a pipeline.
A console never asks Celery for a job's state: an id with no record here is "not found".
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import redis
import redis.exceptions

from . import lua
from .config import Config
from .errors import JobNotFoundError, RedisUnavailableError, RegistryError
from .model import HostInfo, JobInfo, Record
from .routing import is_glob
from .states import JobState

P = ParamSpec("P")
T = TypeVar("T")


def guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn redis-py's connection errors into one clear :class:`RedisUnavailableError`."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            registry = args[0]
            url = registry.safe_url if isinstance(registry, Registry) else "Redis"
            raise RedisUnavailableError(f"cannot reach Redis at {url}: {_why(exc)}") from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise RedisUnavailableError(f"Redis refused the credentials: {exc}") from None
            raise RegistryError(f"Redis answered an error: {exc}") from exc

    return wrapper


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


@dataclass(frozen=True)
class NewChild:
    """A child job just created: what it takes to publish its Celery task."""

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


class Registry:
    """Jobs, records and hosts in one Redis.

    Args:
        client: a redis-py client with ``decode_responses=True``.
        config: the fleet's settings (prefix, retention, heartbeat timings).
    """

    def __init__(self, client: redis.Redis, config: Config) -> None:
        # Any: redis-py's annotations cannot know that decode_responses makes every reply str
        self.r: Any = client
        self.config = config
        self.p = config.prefix
        self.safe_url = config.safe_url
        self._scripts = {
            name: client.register_script(getattr(lua, name))
            for name in ("CLAIM", "FINISH", "STOP", "SWEEP", "TAKE", "APPEND")
        }

    @classmethod
    def connect(cls, config: Config) -> Registry:
        """A registry on a new connection pool to ``config.redis_url``."""
        client = redis.Redis.from_url(
            config.redis_url,
            decode_responses=True,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        return cls(client, config)

    def close(self) -> None:
        self.r.close()

    # ---- keys ---------------------------------------------------------------------------

    def jk(self, job_id: int | str) -> str:
        return f"{self.p}job:{job_id}"

    def out_key(self, iid: str) -> str:
        return f"{self.p}out:{iid}"

    def channel(self, iid: str) -> str:
        return f"{self.p}ev:{iid}"

    # ---- creating and finding jobs ------------------------------------------------------

    @guarded
    def ping(self) -> None:
        self.r.ping()

    @guarded
    def create(self, spec: JobSpec) -> tuple[int, str, list[NewChild]]:
        """Record a parent and one child per location, atomically.

        Returns:
            The parent's id and instance id, and its children in location order; the first
            ``throttle_limit`` are marked queued, the rest wait in the parent's pending list.
        """
        n = len(spec.locations)
        last = int(self.r.incrby(f"{self.p}seq", n + 1))
        pid = last - n
        now = time.time()
        piid = str(uuid.uuid4())
        name = spec.name or f"Job{pid}"
        common = {
            "name": name,
            "command": spec.command,
            "action": spec.action,
            "args": json.dumps(list(spec.args)),
            "kwargs": json.dumps(spec.kwargs),
            "created": repr(now),
        }
        children = [
            NewChild(pid + 1 + i, str(uuid.uuid4()), loc, i < spec.throttle_limit)
            for i, loc in enumerate(spec.locations)
        ]
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.jk(pid),
            mapping={
                **common,
                "id": pid,
                "iid": piid,
                "location": ",".join(spec.locations),
                "state": JobState.NOT_STARTED.value,
                "children": ",".join(str(c.id) for c in children),
                "throttle": spec.throttle_limit,
                # the counters lua.move() keeps: how many children are in each state
                "n": n,
                "c:NotStarted": n,
            },
        )
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
                fields["start_timeout"] = _num(spec.start_timeout)
                if child.queued:  # one that waits for a throttle slot gets its deadline then
                    fields["deadline"] = repr(now + spec.start_timeout)
                    pipe.zadd(f"{self.p}deadlines", {str(child.id): now + spec.start_timeout})
            if spec.timeout is not None:
                fields["timeout"] = _num(spec.timeout)
            pipe.hset(self.jk(child.id), mapping=fields)
            pipe.hset(f"{self.p}iids", child.instance_id, child.id)
        pending = [c.id for c in children if not c.queued]
        if pending:
            pipe.rpush(f"{self.p}pending:{pid}", *pending)
        pipe.hset(f"{self.p}iids", piid, pid)
        pipe.zadd(f"{self.p}jobs", {str(pid): pid})
        pipe.sadd(f"{self.p}names:{name}", pid)
        pipe.execute()
        return pid, piid, children

    @guarded
    def resolve(self, ref: int | str) -> list[int]:
        """The ids a person means by ``ref``: an Id, an InstanceId, or a Name (globs allowed).

        Raises:
            JobNotFoundError: nothing matches, with the reference in the message.
        """
        text = str(ref).strip()
        if text.isdigit():
            if self.r.exists(self.jk(text)):
                return [int(text)]
            raise JobNotFoundError(f"no job with Id {text}")
        if _looks_like_uuid(text):
            found = self.r.hget(f"{self.p}iids", text.lower())
            if found is None:
                raise JobNotFoundError(f"no job with InstanceId {text}")
            return [int(found)]
        ids = self.ids_named(text)
        if not ids:
            raise JobNotFoundError(f"no job named {text!r}")
        return ids

    @guarded
    def ids_named(self, pattern: str) -> list[int]:
        """Top-level ids whose Name matches ``pattern`` (exact, or a glob), oldest first."""
        if not is_glob(pattern):
            return sorted(int(i) for i in self.r.smembers(f"{self.p}names:{pattern}"))
        ids: set[int] = set()
        base = f"{self.p}names:"
        for key in self.r.scan_iter(match=base + "*", count=500):
            if fnmatch.fnmatchcase(key[len(base) :], pattern):
                ids.update(int(i) for i in self.r.smembers(key))
        return sorted(ids)

    @guarded
    def iter_top_ids(self, batch: int = 500) -> Iterator[int]:
        """Every top-level job id, oldest first, read ``batch`` at a time."""
        start = 0
        key = f"{self.p}jobs"
        while True:
            chunk = self.r.zrange(key, start, start + batch - 1)
            if not chunk:
                return
            yield from (int(i) for i in chunk)
            start += batch

    @guarded
    def load(self, ids: Sequence[int], children: bool = True) -> list[JobInfo]:
        """Snapshots of the jobs with these ids, in order; ids with no record are left out."""
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.jk(i))
        raw = [h for h in pipe.execute() if h]
        child_ids: list[int] = []
        if children:
            for h in raw:
                child_ids.extend(_ids(h.get("children", "")))
        pipe = self.r.pipeline(transaction=False)
        for cid in child_ids:
            pipe.hgetall(self.jk(cid))
        child_raw = pipe.execute() if child_ids else []
        pipe = self.r.pipeline(transaction=False)
        lengths_of = [h for h in raw if not h.get("children")] + [h for h in child_raw if h]
        for h in lengths_of:
            pipe.llen(self.out_key(h["iid"]))
        unread = dict(zip((h["iid"] for h in lengths_of), pipe.execute(), strict=True))
        kids = {int(h["id"]): _info(h, unread.get(h["iid"], 0)) for h in child_raw if h}
        out = []
        for h in raw:
            mine = tuple(kids[c] for c in _ids(h.get("children", "")) if c in kids)
            out.append(_info(h, unread.get(h["iid"], 0), mine))
        return out

    # ---- the worker's side of a job's life ----------------------------------------------

    def _run(self, name: str, *args: Any) -> tuple[str, list[int]]:
        res = self._scripts[name](args=[self.p, repr(time.time()), *args])
        return str(res[0]), [int(x) for x in res[1:]]

    @guarded
    def claim(self, job_id: int, worker: str) -> tuple[str, list[int]]:
        """Mark a NotStarted child Running on ``worker``; any other answer means: do not run it.

        Returns:
            The child's state after the claim, and children of its parent now due to dispatch.
        """
        return self._run("CLAIM", job_id, worker)

    @guarded
    def finish(self, job_id: int, state: JobState, reason: str = "") -> tuple[str, list[int]]:
        """Settle a child as Completed/Failed (Stopped wins if a stop was asked)."""
        return self._run("FINISH", job_id, state.value, reason)

    @guarded
    def stop(self, job_id: int, reason: str = "stopped by user") -> tuple[str, list[int]]:
        """Ask a job (a parent: all its children) to stop; durable, whatever the workers do."""
        return self._run("STOP", job_id, reason)

    @guarded
    def sweep(self) -> tuple[int, list[int]]:
        """Apply start deadlines and worker liveness to every unfinished child, in one script.

        Returns:
            How many children changed state, and children now due to dispatch.
        """
        changed, due = self._run("SWEEP", _num(self.config.disconnect_grace))
        return int(changed), due

    @guarded
    def append(
        self, iid: str, parent_iid: str | None, stream: str, data: Any, seq: int, at: float
    ) -> bool:
        """Add record number ``seq`` to a child's streams, once, and tell who waits on it.

        Returns:
            False when the job no longer exists (it was removed while it ran).
        """
        rec = json.dumps({"s": stream, "d": data, "t": at}, separators=(",", ":"))
        script = self._scripts["APPEND"]
        return bool(script(args=[self.p, "0", iid, rec, parent_iid or "", seq]))

    @guarded
    def set_fields(self, job_id: int, **fields: str) -> None:
        self.r.hset(self.jk(job_id), mapping=fields)

    @guarded
    def should_end(self, job_id: int) -> bool:
        """Whether a running child must end now: a stop was asked, or it was settled without
        its worker (failed by the sweep while its host was cut off), or it was removed."""
        state, stop = self.r.hmget(self.jk(job_id), "state", "stop")
        return state is None or stop == "1" or JobState(state).finished

    @guarded
    def states(self, ids: Sequence[int]) -> list[str | None]:
        """Just the states of these jobs (None for a job that is gone), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.jk(job_id), "state")
        return list(pipe.execute())

    # ---- records ------------------------------------------------------------------------

    @guarded
    def take(self, children: Sequence[JobInfo], keep: bool = False) -> list[Record]:
        """The records of these children in the order each wrote them, removed unless ``keep``.

        One script for all of them: concurrent receivers get each record exactly once.
        """
        if not children:
            return []
        lists = self._scripts["TAKE"](
            args=[self.p, "1" if keep else "0", *(c.instance_id for c in children)]
        )
        out: list[Record] = []
        for child, items in zip(children, lists, strict=True):
            for item in items:
                rec = json.loads(item)
                out.append(Record(child.id, child.location, rec["s"], rec["d"], float(rec["t"])))
        return out

    # ---- removing -----------------------------------------------------------------------

    @guarded
    def remove(self, jobs: Sequence[JobInfo], extra_keys: Iterable[str] = ()) -> None:
        """Delete every key these top-level jobs and their children own, in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        for job in jobs:
            for member in (job, *job.children):
                pipe.delete(self.jk(member.id), self.out_key(member.instance_id))
                pipe.hdel(f"{self.p}iids", member.instance_id)
                pipe.srem(f"{self.p}active", member.id)
                pipe.zrem(f"{self.p}deadlines", member.id)
                pipe.srem(f"{self.p}running:{member.location}", member.id)
            pipe.delete(f"{self.p}pending:{job.id}")
            pipe.zrem(f"{self.p}jobs", job.id)
            pipe.zrem(f"{self.p}ended", job.id)
            pipe.srem(f"{self.p}names:{job.name}", job.id)
        for key in extra_keys:
            pipe.delete(key)
        pipe.execute()

    @guarded
    def expired(self, limit: int = 200) -> list[int]:
        """Top-level ids that finished longer ago than the retention period."""
        cutoff = time.time() - self.config.retention
        found = self.r.zrangebyscore(f"{self.p}ended", "-inf", cutoff, start=0, num=limit)
        return [int(i) for i in found]

    # ---- hosts --------------------------------------------------------------------------

    @guarded
    def heartbeat(self, worker: str, info: dict[str, Any], locations: Sequence[str]) -> None:
        """Say that ``worker`` lives and serves ``locations``; it is offline ``host_ttl`` after."""
        ttl = max(1, round(self.config.host_ttl * 1000))
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(f"{self.p}wk:{worker}", json.dumps({**info, "locations": list(locations)}), px=ttl)
        # each location's record leaves the worker's list out: a worker may serve thousands
        common = {k: v for k, v in info.items() if k != "locations"}
        for loc in locations:
            doc = json.dumps({**common, "location": loc, "last_seen": now})
            pipe.set(f"{self.p}host:{loc}", worker, px=ttl)
            pipe.hset(f"{self.p}hosts", loc, doc)
        pipe.execute()

    @guarded
    def leave(self, worker: str, locations: Sequence[str]) -> None:
        """A worker's clean shutdown: its locations go offline now rather than at expiry."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(f"{self.p}wk:{worker}")
        for loc in locations:
            pipe.delete(f"{self.p}host:{loc}")
        pipe.execute()

    @guarded
    def hosts(self, only: Sequence[str] | None = None) -> list[HostInfo]:
        """Every location that ever heartbeated (or just ``only``), and whether it is online."""
        if only is None:
            docs = self.r.hgetall(f"{self.p}hosts")
        else:
            found = self.r.hmget(f"{self.p}hosts", list(only)) if only else []
            docs = {loc: doc for loc, doc in zip(only, found, strict=True) if doc}
        locs = sorted(docs)
        if not locs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for loc in locs:
            pipe.exists(f"{self.p}host:{loc}")
            pipe.scard(f"{self.p}running:{loc}")
        answers = pipe.execute()
        out = []
        for i, loc in enumerate(locs):
            doc = json.loads(docs[loc])
            out.append(
                HostInfo(
                    location=loc,
                    online=bool(answers[2 * i]),
                    last_seen=float(doc.get("last_seen", 0.0)),
                    tags=dict(doc.get("tags", {})),
                    running=int(answers[2 * i + 1]),
                    concurrency=int(doc.get("concurrency", 0)),
                    version=str(doc.get("version", "")),
                    pid=int(doc.get("pid", 0)),
                    hostname=str(doc.get("hostname", "")),
                    actions=tuple(doc.get("actions", ())),
                    allow_shell=bool(doc.get("allow_shell", False)),
                )
            )
        return out

    @guarded
    def forget_host(self, location: str) -> bool:
        """Drop an offline location from the host list; False if it is online or unknown."""
        if self.r.exists(f"{self.p}host:{location}"):
            return False
        return bool(self.r.hdel(f"{self.p}hosts", location))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _looks_like_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return "-" in text


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _info(h: dict[str, str], unread: int, children: tuple[JobInfo, ...] = ()) -> JobInfo:
    state = JobState(h["state"])
    if h.get("children"):
        more = any(c.has_more_data for c in children)
    else:
        more = not state.finished or unread > 0
    progress = h.get("progress")
    return JobInfo(
        id=int(h["id"]),
        instance_id=h["iid"],
        name=h.get("name", ""),
        command=h.get("command", ""),
        action=h.get("action", ""),
        args=tuple(json.loads(h.get("args", "[]"))),
        kwargs=json.loads(h.get("kwargs", "{}")),
        location=h.get("location", ""),
        state=state,
        has_more_data=more,
        created=float(h.get("created", "0")),
        begin_time=_float(h.get("begin")),
        end_time=_float(h.get("end")),
        reason=h.get("reason") or None,
        parent_id=int(h["parent"]) if h.get("parent") else None,
        child_ids=tuple(_ids(h.get("children", ""))),
        children=children,
        worker=h.get("worker") or None,
        progress=json.loads(progress) if progress else None,
        timeout=_float(h.get("timeout")),
    )
