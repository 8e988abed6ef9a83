"""The key schema: every Redis key and channel of a fleet, written once.

Python builds keys with :class:`Keys`; the Lua scripts get the same builders, generated from
:data:`SCHEMA` by :mod:`fleetjobs.scripts` (``K.job(id)``, ``K.active``), so a key's name is
spelled in exactly one place. Every key sits behind the fleet's prefix (``fj:`` by default),
so two fleets can share one Redis.

::

    seq              counter behind every job Id, fleet-wide
    job:<id>         hash: one job (a parent or a child); fields below
    ix:<b>:<family>  sorted set: bucket <b> of a history index (fleetjobs.indexes): the
                     top-level ids of the ``IX_BUCKET`` (128) jobs whose ordinal is in it, each
                     by its creation time (its end time in ``ended``); families: ``top`` (every
                     top-level job: Get-Job's list), ``ended`` (finished ones, for retention),
                     ``failed``, ``action:<a>``, ``loc:<loc>`` (a host it has a child on). At
                     most 128 members, Redis keeps each as a listpack: some 30 B a member,
                     against some 100 B in one big sorted set
    ixdir:<family>   sorted set: the family's buckets that have members, each by the latest
                     creation time in it (a query ``--since`` reads only those that reach
                     it); ``ended``'s by the earliest end in it (retention reads those due)
    ixorder          sorted set: ``top``'s buckets by number (Get-Job's list, in order)
    tseq             counter: the top-level jobs' ordinals (a parent's ``ix`` field is its
                     bucket, ordinal // 128); ``tlow`` counts down from 0 for the jobs an
                     older version indexed, moved into buckets below every new one
    names:<name>     set of top-level ids carrying that name, when it was given at start (a
                     default name, Job<Id>, is in none: the Id it names finds the job)
    iids             hash: InstanceId -> Id
    out:<iid>        list of a child's stream records, oldest first, taken once
    held:<iid>       hash: records taken and not yet acknowledged, by take token, with leases
    pending:<id>     list of a throttled parent's children still waiting for a slot
    active           set of children running somewhere, for the liveness sweep
    deadlines        sorted set: NotStarted children by the time they must have started
    running:<loc>    set of children running on a location
    seen             sorted set: location -> when its liveness runs out (its last beat + the
                     TTL), negated once its worker left cleanly; and ``@worker:<worker>`` ->
                     when that worker process's runs out (removed when it leaves, or some 30
                     host TTLs after it was killed). One write per worker per beat: the ZADD
    hosts            hash: location -> its worker's document, written when it changes
    wk:<worker>      a worker process's document (what it serves and offers), written when
                     it changes, deleted when the worker leaves or is forgotten: its liveness
                     is its entry in seen (a worker older than 0.4 has none: its document
                     then expires with its heartbeats)
    workers          set of the worker ids that have an entry in seen (what forgetting reads)
    forgot           string, expiring: someone forgot the killed workers lately
    ev:<iid>         pub/sub channel: 'state', 'r' (a record), 'stop'
    fleetjobs.loc.<loc>  a location's Celery queue (kombu's list, under the same prefix)
    msg:<iid>        string: a child's Celery message as its console made it (signed, when the
                     fleet signs), from its start until it is claimed: what the registry pushes
                     onto the queue when a throttle or rollout releases the child, or again
                     when its message was lost; so no worker ever makes (or signs) a message
    inqlocs          set of the locations whose inq may have entries (one read per look)
    unacked          kombu's hash: reserved (unacknowledged) messages by delivery tag
    unacked_index    kombu's sorted set: their delivery tags by lease start
    inq:<loc>        sorted set: InstanceIds of the children sent to a location's queue and not
                     yet claimed, by when they were sent; the location's worker re-sends one
                     whose message was lost (workers.redeliver)
    pgroups:<loc>    hash: child id -> the process groups it started there (workers.reaper)
    pglocs           set of the locations whose pgroups hash has entries (one read per beat)
    deadletters      list: messages workers refused, newest first (fleetjobs.deadletters)
    deadletters:loc:<loc>  list: a confined location's dead letters (the relay's), its newest
                     100, newest first
    deadletter-hosts set of the locations that have such a list
    deadletters:counted  hash: location -> its letters so far (less what its list holds: those
                     its newer ones pushed out)
    deadletters:once:<digest>  string, expiring: a broadcast every worker refused was kept once
    revoked:once:<digest>  string, expiring: a revoke from Celery, recorded by one worker
    serving:<location>  set of the workers that serve a location (by their beats): a clean
                     shutdown leaves it online while another of them lives
                     (the first worker's letter; the others' only logged)
    flower:lost      list: children the sweep settled for a vanished host, whose end no
                     worker reported to Flower (fleetjobs.monitor.announce_lost sends it)
    waves            sorted set: rollout parents by the time their next wave is due (--batch-wait)
    jobs, created, ended, failed, by-action:<a>, by-loc:<loc>
                     the history indexes as 0.2 kept them (one big sorted set each): read
                     only to move their jobs into buckets (fleetjobs.indexes.migrate)
    facts            hash: location -> its facts (JSON), written when they change
    loc:<loc>:unacked, loc:<loc>:unacked_index, loc:<loc>:unacked_mutex
                     a confined worker's own kombu bookkeeping (fleetjobs.celery_app)
    loc:<loc>:relay  list: a confined worker's requests to the relay (fleetjobs.relay); each
                     answer on loc:<loc>:relay:<request id>, expiring
    relay            list: locations whose relay list has requests (a wake-up, not trusted)

Fields of ``job:<id>``: ``id``, ``iid``, ``name``, ``command``, ``action``, ``args``,
``kwargs`` (JSON), ``location``, ``state``, ``created``, ``begin``, ``end``, ``reason``,
``worker``, ``progress`` (JSON), ``timeout``, ``start_timeout``, ``deadline``, ``stop``,
``stop_reason``, ``lost_at``, ``wseq`` (last record number written); a child also has
``parent`` and ``queued``; a top-level job has ``ix`` (its history indexes' bucket); a parent
has ``children`` (ids, comma-separated), ``throttle``,
``n`` (its number of children), ``c:<State>`` (how many children are in each state but
NotStarted, which is ``n`` less the others, kept by the scripts' ``move``), ``freasons`` and
``last_reason`` (what its Reason will say); a rollout's parent (``--batch``) also has
``batch`` (children per wave), ``wave`` (the wave released last), ``wave_left`` (its children
not yet settled), ``max_fail`` (failures allowed, absent: any), ``halt_running``,
``batch_wait``, ``wave_due`` (when a delayed wave is due), ``failed_hosts`` and ``halted``
(why it halted).
"""

from __future__ import annotations

from .routing import QUEUE_PREFIX, UNACKED, UNACKED_INDEX

# name -> the key after the prefix; '{}' is the one variable part
SCHEMA: dict[str, str] = {
    "seq": "seq",
    "job": "job:{}",
    "ix": "ix:{}",  # '<bucket>:<family>'
    "ixdir": "ixdir:{}",  # '<family>'
    "ixorder": "ixorder",
    "tseq": "tseq",
    "tlow": "tlow",
    "jobs": "jobs",
    "names": "names:{}",
    "iids": "iids",
    "out": "out:{}",
    "held": "held:{}",
    "pending": "pending:{}",
    "ended": "ended",
    "active": "active",
    "deadlines": "deadlines",
    "running": "running:{}",
    "hosts": "hosts",
    "seen": "seen",
    "worker": "wk:{}",
    "events": "ev:{}",
    "queue": QUEUE_PREFIX + "{}",  # a location's Celery queue (a list kombu keeps)
    "inq": "inq:{}",
    "inqlocs": "inqlocs",
    "unacked": UNACKED,  # kombu's: a reserved message by delivery tag
    "unacked_index": UNACKED_INDEX,  # kombu's: its lease start (workers.leases)
    "msg": "msg:{}",
    "lost": "flower:lost",
    "pgroups": "pgroups:{}",
    "pglocs": "pglocs",
    "deadletters": "deadletters",
    "host_letters": "deadletters:loc:{}",
    "letter_hosts": "deadletter-hosts",
    "letters_counted": "deadletters:counted",
    "letter_once": "deadletters:once:{}",
    "revoke_once": "revoked:once:{}",
    "serving": "serving:{}",
    "waves": "waves",
    "created": "created",
    "by_action": "by-action:{}",
    "by_location": "by-loc:{}",
    "failed": "failed",
    "facts": "facts",
    "swept": "swept",
    "forgot": "forgot",
    "workers": "workers",
    # a confined worker's own keys (deploy/redis-acl.conf: its Redis user writes no other)
    "loc_unacked": "loc:{}:unacked",  # kombu's unacked hash, index and mutex, per location
    "loc_unacked_index": "loc:{}:unacked_index",
    "loc_unacked_mutex": "loc:{}:unacked_mutex",
    "relay": "loc:{}:relay",  # its requests to the relay (fleetjobs.relay); answers: :<id>
    "bell": "relay",  # the locations whose relay list has requests (a wake-up, not trusted)
}

# the history indexes (fleetjobs.indexes): top-level jobs per bucket, and the families
IX_BUCKET = 128  # Redis's zset-max-listpack-entries: a bucket stays a listpack
IX_TOP = "top"
IX_ENDED = "ended"
IX_FAILED = "failed"
IX_ACTION = "action:"
IX_LOCATION = "loc:"

# pub/sub messages on a job's ``ev:<iid>`` channel: a state change (EVENT_END when the new
# state is one a wait stops at: finished, Suspended, Disconnected or Blocked, so that a wait
# sleeps through the others), a record written, a stop asked
EVENT_STATE = "state"
EVENT_END = "end"
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

    @property
    def schedules(self) -> str:
        """The prefix of RedBeat's keys for this fleet's schedules (``schedules.py``): a
        schedule's definition is this plus its name."""
        return self.prefix + "redbeat:"

    def job(self, job_id: int | str) -> str:
        return self._key("job", job_id)

    def ix(self, bucket: int, family: str) -> str:
        return self._key("ix", f"{bucket}:{family}")

    def ixdir(self, family: str) -> str:
        return self._key("ixdir", family)

    @property
    def ixorder(self) -> str:
        return self._key("ixorder")

    @property
    def tseq(self) -> str:
        return self._key("tseq")

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

    def held(self, iid: str) -> str:
        return self._key("held", iid)

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

    @property
    def seen(self) -> str:
        return self._key("seen")

    @property
    def hosts(self) -> str:
        return self._key("hosts")

    def worker(self, worker_id: str) -> str:
        return self._key("worker", worker_id)

    def events(self, iid: str) -> str:
        return self._key("events", iid)

    def queue(self, location: str) -> str:
        return self._key("queue", location)

    def inq(self, location: str) -> str:
        return self._key("inq", location)

    @property
    def unacked(self) -> str:
        return self._key("unacked")

    @property
    def unacked_index(self) -> str:
        return self._key("unacked_index")

    @property
    def inqlocs(self) -> str:
        return self._key("inqlocs")

    def msg(self, iid: str) -> str:
        return self._key("msg", iid)

    @property
    def lost(self) -> str:
        return self._key("lost")

    def pgroups(self, location: str) -> str:
        return self._key("pgroups", location)

    @property
    def pglocs(self) -> str:
        return self._key("pglocs")

    @property
    def deadletters(self) -> str:
        return self._key("deadletters")

    def host_letters(self, location: str) -> str:
        return self._key("host_letters", location)

    @property
    def letter_hosts(self) -> str:
        return self._key("letter_hosts")

    @property
    def letters_counted(self) -> str:
        return self._key("letters_counted")

    def letter_once(self, digest: str) -> str:
        return self._key("letter_once", digest)

    def revoke_once(self, digest: str) -> str:
        return self._key("revoke_once", digest)

    def serving(self, location: str) -> str:
        return self._key("serving", location)

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

    def loc_unacked_index(self, location: str) -> str:
        return self._key("loc_unacked_index", location)

    def relay(self, location: str) -> str:
        return self._key("relay", location)

    def relay_answer(self, location: str, request_id: str) -> str:
        return f"{self.relay(location)}:{request_id}"

    @property
    def bell(self) -> str:
        return self._key("bell")

    @property
    def swept(self) -> str:
        return self._key("swept")

    @property
    def forgot(self) -> str:
        return self._key("forgot")

    @property
    def workers(self) -> str:
        return self._key("workers")
