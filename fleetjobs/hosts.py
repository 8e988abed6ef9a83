"""Hosts: workers' heartbeats, the host list, and liveness.

A worker heartbeats into Redis every ``heartbeat_interval`` seconds: a key per worker process
(``wk:<worker>``) and per location (``host:<loc>``) that expire ``host_ttl`` after the last
beat, and a document per location in the ``hosts`` hash that stays while the host is offline.
Liveness comes from these keys, not from Celery's remote-control ping, which goes silent on
Redis (celery#5688).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .model import HostInfo
from .store import Store, guarded


class Hosts:
    """The hosts of one fleet.

    Args:
        store: the fleet's Redis (client, keys, settings).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.r = store.r

    @guarded
    def heartbeat(self, worker: str, info: dict[str, Any], locations: Sequence[str]) -> None:
        """Say that ``worker`` lives and serves ``locations``; it is offline ``host_ttl`` after."""
        ttl = max(1, round(self.store.config.host_ttl * 1000))
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(
            self.keys.worker(worker), json.dumps({**info, "locations": list(locations)}), px=ttl
        )
        # each location's record leaves the worker's list and its actions' signatures out (in
        # its worker key, read once per worker): a worker may serve thousands
        common = {k: v for k, v in info.items() if k not in ("locations", "signatures")}
        for loc in locations:
            doc = json.dumps({**common, "location": loc, "last_seen": now})
            pipe.set(self.keys.host(loc), worker, px=ttl)
            pipe.hset(self.keys.hosts, loc, doc)
        pipe.execute()

    @guarded
    def publish_facts(self, facts: dict[str, Any], locations: Sequence[str]) -> bool:
        """Record the facts of the host behind ``locations`` where Redis holds other ones
        (one read when nothing changed). Returns whether it wrote."""
        doc = json.dumps(facts, sort_keys=True)
        if all(held == doc for held in self.r.hmget(self.keys.facts, list(locations))):
            return False
        self.r.hset(self.keys.facts, mapping=dict.fromkeys(locations, doc))
        return True

    @guarded
    def leave(self, worker: str, locations: Sequence[str]) -> None:
        """A worker's clean shutdown: its locations go offline now rather than at expiry."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.keys.worker(worker))
        for loc in locations:
            pipe.delete(self.keys.host(loc))
        pipe.execute()

    @guarded
    def list(self, only: Sequence[str] | None = None) -> list[HostInfo]:
        """Every location that ever heartbeated (or just ``only``), and whether it is online."""
        if only is None:
            docs = self.r.hgetall(self.keys.hosts)
        else:
            found = self.r.hmget(self.keys.hosts, list(only)) if only else []
            docs = {loc: doc for loc, doc in zip(only, found, strict=True) if doc}
        locs = sorted(docs)
        if not locs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for loc in locs:
            pipe.exists(self.keys.host(loc))
            pipe.scard(self.keys.running(loc))
        pipe.hmget(self.keys.facts, locs)
        answers = pipe.execute()
        facts = answers.pop()
        parsed = {loc: json.loads(docs[loc]) for loc in locs}
        signatures = self._signatures(
            {str(parsed[loc].get("worker", "")) for i, loc in enumerate(locs) if answers[2 * i]}
        )
        out = []
        for i, loc in enumerate(locs):
            doc = parsed[loc]
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
                    facts=json.loads(facts[i]) if facts[i] else {},
                    suspendable=tuple(doc.get("suspendable", ())),
                    signatures=signatures.get(str(doc.get("worker", "")), {}),
                )
            )
        return out

    def _signatures(self, workers: set[str]) -> dict[str, dict[str, Any]]:
        """The actions' parameters each live worker published (one read per worker)."""
        names = sorted(w for w in workers if w)
        if not names:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.get(self.keys.worker(name))
        out = {}
        for name, doc in zip(names, pipe.execute(), strict=True):
            if doc:
                out[name] = dict(json.loads(doc).get("signatures", {}))
        return out
