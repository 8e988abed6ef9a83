"""Hosts: workers' heartbeats, the host list, and liveness.

A worker heartbeats into Redis every ``heartbeat_interval`` seconds with one script
(``beat.lua``) and one write, whatever its number of locations: a ZADD of when its own
liveness and each of its locations' runs out (``seen``, by Redis's clock, ``host_ttl`` after
the beat). Its document (``wk:<worker>``: what it serves and offers) is written when it
changes, and deleted when the worker leaves or is forgotten (:meth:`Hosts.forget_dead_workers`,
``FORGET_TTLS`` host TTLs after a worker killed fell silent). A document per location in the
``hosts`` hash (what the worker offers, its tags) is written when it changes, and stays while
the host is offline. Liveness comes from these, not from Celery's remote-control ping, which
goes silent on Redis (celery#5688).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from .model import HostInfo
from .options import MAX_SECONDS, is_number, is_time
from .store import Store, guarded

log = logging.getLogger("fleetjobs.hosts")

# a host document's fields are read as the types _FIELD_OK says (a worker writes it; a
# confined worker through the relay, which refuses a document they do not hold for)


def read_doc(text: str) -> dict[str, Any]:
    """A host document as consoles read it.

    Raises:
        ValueError: it is not JSON, not an object, or a field is not of its type.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("a host record is not a JSON object")
    for name, value in doc.items():
        if not _FIELD_OK.get(name, _any)(value):
            raise ValueError(f"a host record's {name} is {value!r}")
    return doc


def _any(value: Any) -> bool:
    return True


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _tags(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


_FIELD_OK = {
    "ttl": lambda v: is_number(v) and 0 < v <= MAX_SECONDS,  # NaN fails: no comparison holds
    "last_seen": is_time,
    **dict.fromkeys(("concurrency", "pid"), _integer),
    **dict.fromkeys(("location", "version", "hostname", "worker", "relay_version"), _text),
    **dict.fromkeys(("actions", "suspendable"), _texts),
    "tags": _tags,
    "allow_shell": _flag,
    "signed": _flag,
    "confined": _flag,
}


def read_facts(text: str) -> dict[str, Any]:
    """A host's facts as consoles read them.

    Raises:
        ValueError: not JSON, or not an object.
    """
    facts = json.loads(text)
    if not isinstance(facts, dict):
        raise ValueError("a host's facts are not a JSON object")
    return facts


REWRITE_EVERY = 15  # beats between two looks at the host documents Redis holds (one HMGET)
# host TTLs a worker killed stays in seen, its document kept, before it is forgotten (at most
# twice that: a fleet forgets once per that time)
FORGET_TTLS = 30


CACHE_SECONDS = 1.0  # how long a start may use the host records it read


def facts_text(facts: dict[str, Any]) -> str:
    """Facts as a worker writes them (keys sorted: written again only when they change);
    raises TypeError or ValueError for what no JSON reader takes (a set, NaN, keys that
    cannot be sorted)."""
    return json.dumps(facts, sort_keys=True, allow_nan=False)


class Hosts:
    """The hosts of one fleet.

    Args:
        store: the fleet's Redis (client, keys, settings).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r = store.r
        self._written: dict[str, str] = {}  # the hosts documents this process last wrote
        self._worker_doc: dict[str, str] = {}  # worker -> the document its last beat wrote
        self._forget_at = 0.0  # when forget_now_and_then asks next (monotonic)
        self._beats = 0
        self._seen: dict[tuple[str, ...] | None, tuple[float, list[HostInfo]]] = {}

    def recent(self, only: Sequence[str] | None, fresh: bool = False) -> list[HostInfo]:
        """:meth:`list`, or what it gave this process for the same ``only`` less than
        ``CACHE_SECONDS`` ago, and never longer than a quarter of the hosts' TTL (a start in
        a loop reads the host records about once a second, and sees a host that died no later
        than the TTL says anyway). ``fresh`` reads them now, and keeps what it read."""
        key = None if only is None else tuple(only)
        now = time.monotonic()
        hit = self._seen.get(key)
        max_age = min(CACHE_SECONDS, self.store.config.host_ttl / 4)
        if not fresh and hit is not None and now - hit[0] < max_age:
            return hit[1]
        found = self.list(only)
        if len(self._seen) > 64:
            self._seen.clear()
        self._seen[key] = (now, found)
        return found

    @guarded
    def heartbeat(
        self,
        worker: str,
        info: dict[str, Any],
        locations: Sequence[str],
        sweep_every: float = 0.0,
    ) -> bool:
        """Say that ``worker`` lives and serves ``locations``; it is offline ``host_ttl`` after.

        Args:
            sweep_every: above 0, the same command also takes the fleet's sweep turn when
                nobody swept it within that many seconds (the gate of :meth:`Lifecycle.sweep`).

        Returns:
            Whether the turn was taken: the caller sweeps now, ungated.
        """
        ttl = max(1, round(self.store.config.host_ttl * 1000))
        doc = json.dumps({**info, "locations": list(locations)})
        mode = "beat"
        if sweep_every > 0:
            mode = f"beat:{max(1, round(sweep_every * 1000))}"
            if self._worker_doc.get(worker) == doc:  # as its last beat wrote it: left alone
                mode += ":kept"
        self._worker_doc.pop(worker, None)  # unknown, should the script fail
        reply = self.store.scripts("beat", mode, worker, doc, ttl, *locations)
        self._worker_doc[worker] = doc
        # a plain count when no turn was asked (as a relay of any version answers it)
        added, turn = (reply, 0) if isinstance(reply, int) else reply
        # each location's record leaves the worker's list and its actions' signatures out (in
        # its worker key, read once per worker): a worker may serve thousands
        common = {k: v for k, v in info.items() if k not in ("locations", "signatures")}
        common["ttl"] = ttl / 1000
        docs = {loc: json.dumps({**common, "location": loc}) for loc in locations}
        self._beats += 1
        if int(added) > 0:  # an entry new to seen (first beat, Redis lost its data)
            self._written.clear()
        elif self._beats % REWRITE_EVERY == 0:
            # now and then, in case another worker serving one of these locations wrote its
            # own document: what Redis holds (a read), so only those written again
            if self.store.relay is None:
                held = self.r.hmget(self.keys.hosts, list(locations))
                self._written = {loc: h for loc, h in zip(locations, held, strict=True) if h}
            else:  # a confined worker reads through its relay: its one document, written
                self._written.clear()
        changed = {loc: d for loc, d in docs.items() if self._written.get(loc) != d}
        if changed:
            if self.store.relay is not None:  # a confined worker: its one location's
                self.store.relay.call("hostdoc", changed[self.store.relay.location])
            else:
                self.r.hset(self.keys.hosts, mapping=changed)
            self._written.update(changed)
        return int(turn) == 1

    @guarded
    def publish_facts(self, facts: dict[str, Any], locations: Sequence[str]) -> bool:
        """Record the facts of the host behind ``locations`` where Redis holds other ones
        (one read when nothing changed). Returns whether it wrote."""
        doc = facts_text(facts)
        if all(held == doc for held in self.r.hmget(self.keys.facts, list(locations))):
            return False
        if self.store.relay is not None:  # a confined worker: its one location's
            self.store.relay.call("facts", doc)
        else:
            self.r.hset(self.keys.facts, mapping=dict.fromkeys(locations, doc))
        return True

    @guarded
    def leave(self, worker: str, locations: Sequence[str]) -> None:
        """A worker's clean shutdown: its locations go offline now rather than at expiry."""
        self.store.scripts("beat", "leave", worker, "", 0, *locations)
        self._written.clear()
        self._worker_doc.pop(worker, None)

    def forget_after(self) -> float:
        """Seconds a worker killed stays known (``FORGET_TTLS`` host TTLs)."""
        return FORGET_TTLS * self.store.config.host_ttl

    def forget_now_and_then(self) -> int:
        """:meth:`forget_dead_workers` at the first call, then at most every
        :meth:`forget_after` seconds: what a worker's heartbeat and a relay's upkeep call each
        beat (the fleet's gate makes the asks of many cheap)."""
        now = time.monotonic()
        if now < self._forget_at:
            return 0
        gone = self.forget_dead_workers()
        self._forget_at = now + self.forget_after()
        return gone

    @guarded
    def forget_dead_workers(self) -> int:
        """Remove the entries in ``seen``, and the documents, of workers whose liveness ran
        out more than :meth:`forget_after` seconds ago: a worker killed leaves them (a clean
        shutdown removes its own). At most once per that time for the whole fleet, whoever
        asks first. Returns how many were forgotten."""
        age = max(1, round(self.forget_after() * 1000))
        return int(self.store.scripts("beat", "forget", "", "", age))

    @guarded
    def list(self, only: Sequence[str] | None = None) -> list[HostInfo]:
        """Every location that ever heartbeated (or just ``only``), and whether it is online."""
        if only is not None and not only:
            return []
        # one read-only script: the documents, liveness, running counts, facts and the live
        # workers' published signatures (three round trips before)
        scope = ["1"] if only is None else ["0", *only]
        locs, docs, now_text, due_text, running, facts, workers, wdocs = self.store.scripts(
            "hosts", *scope
        )
        if not locs:
            return []
        order = sorted(range(len(locs)), key=lambda i: locs[i])
        locs, docs = [locs[i] for i in order], [docs[i] for i in order]
        due = [float(due_text[i]) for i in order]
        answers = [running[i] for i in order]
        facts = [facts[i] for i in order]
        now = float(now_text)
        online = [d > now for d in due]
        signatures = {w: _signatures(doc) for w, doc in zip(workers, wdocs, strict=True) if doc}
        out = []
        for i, loc in enumerate(locs):
            try:  # one host's damaged record is that host's trouble, not every console's
                doc = read_doc(docs[i])
            except ValueError as exc:
                log.warning("host %s left out: its record cannot be read: %s", loc, exc)
                continue
            try:
                host_facts = read_facts(facts[i]) if facts[i] else {}
            except ValueError as exc:
                log.warning("host %s: its facts cannot be read: %s", loc, exc)
                host_facts = {}
            # the last beat: when its liveness runs out, less the TTL of the worker that beat
            seen = abs(due[i]) - float(doc.get("ttl", 0.0)) if due[i] else None
            out.append(
                HostInfo(
                    location=loc,
                    online=online[i],
                    last_seen=seen if seen is not None else float(doc.get("last_seen", 0.0)),
                    tags=dict(doc.get("tags", {})),
                    running=int(answers[i]),
                    concurrency=int(doc.get("concurrency", 0)),
                    version=str(doc.get("version", "")),
                    pid=int(doc.get("pid", 0)),
                    hostname=str(doc.get("hostname", "")),
                    actions=tuple(doc.get("actions", ())),
                    allow_shell=bool(doc.get("allow_shell", False)),
                    facts=host_facts,
                    suspendable=tuple(doc.get("suspendable", ())),
                    signatures=signatures.get(str(doc.get("worker", "")), {}),
                    signed=bool(doc.get("signed", False)),
                    confined=bool(doc.get("confined", False)),
                    relay_version=str(doc.get("relay_version", "")),
                )
            )
        return out


def _signatures(text: str) -> dict[str, Any]:
    """The signatures a live worker published (what it offers), {} if its document is bad."""
    try:
        found = json.loads(text).get("signatures", {})
    except (ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}
