"""The key schema: every Redis key and channel of a fleet, written once.

Python builds keys with :class:`Keys`; the Lua scripts get the same builders, generated from
:data:`SCHEMA` by :mod:`fleetjobs.scripts` (``K.job(id)``, ``K.active``), so a key's name is
spelled in exactly one place. Every key sits behind the fleet's prefix (``fj:`` by default),
so two fleets can share one Redis.

::

    seq              counter behind every job Id, fleet-wide
    job:<id>         hash: one job (a parent or a child); fields below
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
    waves            sorted set: rollout parents by the time their next wave is due (--batch-wait)
    created          sorted set: top-level ids by creation time (get --since/--until)
    by-action:<a>    sorted set: top-level ids running action <a>, by creation time
    by-loc:<loc>     sorted set: top-level ids with a child on <loc>, by creation time
    failed           sorted set: top-level ids that ended Failed, by creation time
    facts            hash: location -> its facts (JSON), written when they change

Fields of ``job:<id>``: ``id``, ``iid``, ``name``, ``command``, ``action``, ``args``,
``kwargs`` (JSON), ``location``, ``state``, ``created``, ``begin``, ``end``, ``reason``,
``worker``, ``progress`` (JSON), ``timeout``, ``start_timeout``, ``deadline``, ``stop``,
``stop_reason``, ``lost_at``, ``wseq`` (last record number written); a child also has
``parent`` and ``queued``; a parent has ``children`` (ids, comma-separated), ``throttle``,
``n`` (its number of children), ``c:<State>`` (how many children are in each state, kept by
the scripts' ``move``), ``freasons`` and ``last_reason`` (what its Reason will say); a
rollout's parent (``--batch``) also has ``batch`` (children per wave), ``wave`` (the wave
released last), ``wave_left`` (its children not yet settled), ``max_fail`` (failures allowed,
absent: any), ``halt_running``, ``batch_wait``, ``wave_due`` (when a delayed wave is due),
``failed_hosts`` and ``halted`` (why it halted).
"""

from __future__ import annotations

# name -> the key after the prefix; '{}' is the one variable part
SCHEMA: dict[str, str] = {
    "seq": "seq",
    "job": "job:{}",
    "jobs": "jobs",
    "names": "names:{}",
    "iids": "iids",
    "out": "out:{}",
    "pending": "pending:{}",
    "ended": "ended",
    "active": "active",
    "deadlines": "deadlines",
    "running": "running:{}",
    "host": "host:{}",
    "hosts": "hosts",
    "worker": "wk:{}",
    "events": "ev:{}",
    "waves": "waves",
    "created": "created",
    "by_action": "by-action:{}",
    "by_location": "by-loc:{}",
    "failed": "failed",
    "facts": "facts",
}

# pub/sub messages on a job's ``ev:<iid>`` channel
EVENT_STATE = "state"
EVENT_RECORD = "r"
EVENT_STOP = "stop"


class Keys:
    """The keys of one fleet (one prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _key(self, name: str, part: object = None) -> str:
        template = SCHEMA[name]
        return self.prefix + (template.format(part) if part is not None else template)

    @property
    def seq(self) -> str:
        return self._key("seq")

    def job(self, job_id: int | str) -> str:
        return self._key("job", job_id)

    @property
    def jobs(self) -> str:
        return self._key("jobs")

    def names(self, name: str) -> str:
        return self._key("names", name)

    @property
    def names_prefix(self) -> str:
        return self._key("names", "")

    @property
    def iids(self) -> str:
        return self._key("iids")

    def out(self, iid: str) -> str:
        return self._key("out", iid)

    def pending(self, parent_id: int | str) -> str:
        return self._key("pending", parent_id)

    @property
    def ended(self) -> str:
        return self._key("ended")

    @property
    def active(self) -> str:
        return self._key("active")

    @property
    def deadlines(self) -> str:
        return self._key("deadlines")

    def running(self, location: str) -> str:
        return self._key("running", location)

    def host(self, location: str) -> str:
        return self._key("host", location)

    @property
    def hosts(self) -> str:
        return self._key("hosts")

    def worker(self, worker_id: str) -> str:
        return self._key("worker", worker_id)

    def events(self, iid: str) -> str:
        return self._key("events", iid)

    @property
    def waves(self) -> str:
        return self._key("waves")

    @property
    def created(self) -> str:
        return self._key("created")

    def by_action(self, action: str) -> str:
        return self._key("by_action", action)

    def by_location(self, location: str) -> str:
        return self._key("by_location", location)

    @property
    def failed(self) -> str:
        return self._key("failed")

    @property
    def facts(self) -> str:
        return self._key("facts")
