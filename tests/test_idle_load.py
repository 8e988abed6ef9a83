"""An idle fleet's load on Redis: a few commands and one write per worker per heartbeat,
whatever its locations, as MONITOR on a Redis of the test's own shows them (no other fleet
on it)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import redis

from fleetjobs import Config
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers
from fleetjobs.scripts import source

HB = 1.0  # the heartbeat interval of this fleet, in seconds
WINDOW = 6.0  # seconds watched


def _watch(url: str, seconds: float) -> list[list[str]]:
    """Every command Redis ran for ``seconds`` (Lua's inner calls included), as its words."""
    seen: list[list[str]] = []
    client = redis.Redis.from_url(url, decode_responses=True)
    stop = time.monotonic() + seconds
    with client.monitor() as m:
        for cmd in m.listen():
            seen.append(str(cmd["command"]).split())
            if time.monotonic() > stop:
                break
    client.close()
    return seen


def test_an_idle_fleet_costs_a_few_commands_and_one_write_per_worker_per_beat(
    logs: Path,
) -> None:
    # given three idle workers, one of them serving 500 locations
    groups = [["ia"], [f"ib{i}" for i in range(500)], ["ic1", "ic2"]]
    with EmbeddedRedis(tcp=True) as server:
        cfg = Config(redis_url=server.url, prefix="idle:", heartbeat_interval=HB, host_ttl=5.0)
        with LocalWorkers(cfg, groups, concurrency=1, log_dir=logs):
            time.sleep(2 * HB)  # past the start-up's own reads
            seen = _watch(server.url, WINDOW)
            with redis.Redis.from_url(server.url) as client:  # what Redis says writes
                table = client.command()
    writing = {name.upper() for name, info in table.items() if "write" in info["flags"]}
    names = Counter(words[0].upper() for words in seen if words)
    beats = [w for w in seen if w[:1] == ["EVALSHA"] and len(w) > 5 and w[5].startswith("beat")]
    per_worker = Counter(w[6] for w in beats)
    assert len(per_worker) == 3 and min(per_worker.values()) >= 2, per_worker
    # then each beat is one script, whose try for the fleet's sweep turn is in it: the fleet
    # is swept about once per half beat, not once per worker per beat
    sweeps = names["SMEMBERS"]
    assert 1 <= sweeps <= 2 * WINDOW / HB + 2, (sweeps, len(beats))
    # and the sweep script is run only by the worker whose beat took the turn: no other
    # worker sends it to be turned away by its gate (one call may straddle the window's edge)
    sweep_sha = hashlib.sha1(source("sweep").encode()).hexdigest()
    calls = sum(1 for w in seen if w[:2] == ["EVALSHA", sweep_sha])
    assert abs(calls - sweeps) <= 1, (calls, sweeps)
    # each beat's one write is the ZADD of its worker's liveness and its locations': its
    # document, unchanged, is neither written again nor its expiry moved, and nothing else
    # writes (the SETs are the tries for the sweep turn, which write only when taken)
    # (kombu's BRPOP, a write command, pops nothing from the empty queues)
    writes = [w for w in seen if w[0].upper() in writing - {"BRPOP"}]
    assert {(w[0].upper(), w[1]) for w in writes} <= {
        ("ZADD", "idle:seen"),
        ("SET", "idle:swept"),
    }, writes
    assert abs(sum(1 for w in writes if w[0].upper() == "ZADD") - len(beats)) <= 1, writes
    # kombu's restore of reserved messages looks (one read) and, none being due, takes no lock
    restore_reads = [w for w in seen if w[:1] == ["ZRANGE"] and w[1].endswith("unacked_index")]
    assert restore_reads, names
    assert not [w for w in seen if "unacked_mutex" in " ".join(w[:2])], names
    # and all told a beat costs a handful of commands, the same with 500 locations as with 1
    # (besides what Celery sends by the clock: the BRPOP sent again each second the queues are
    # empty, and the event heartbeat Flower reads, a PUBLISH every 2 s)
    per_beat = (len(seen) - names["BRPOP"] - names["PUBLISH"]) / len(beats)
    assert per_beat <= 12, (per_beat, names.most_common(12))
    print(f"{per_beat:.1f} commands per worker per beat:", dict(names.most_common(12)))
