"""The benchmark suite still runs: one cheap benchmark, tiny counts, no timing asserted.

Benchmarks are run by hand (``make bench``); this only keeps their code from rotting: the
commands-per-job benchmark starts its private Redis and both sides' workers, measures, and
writes its section of results.json and RESULTS.md where it is told.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _quick(name: str, out: Path, **params: str) -> dict[str, Any]:
    """Run benchmark ``name`` quick with these parameters; its section of results.json."""
    argv = [sys.executable, str(ROOT / "bench" / "run.py"), name, "--quick"]
    for key, value in params.items():
        argv += ["--set", f"{key}={value}"]
    argv += ["--out-dir", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    section: dict[str, Any] = json.loads((out / "results.json").read_text())["benchmarks"][name]
    assert section["status"] == "ok"
    return section


def test_commands_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    section = _quick("commands", tmp_path, n="3", idle="1", redis_benchmark_n="1000")
    assert section["mode"] == "quick"
    assert section["params"]["n"] == 3
    rows = {row["metric"]: row for row in section["rows"]}
    total = rows["per job: start + run + wait + receive"]
    assert total["value"] > 0 and total["base"] > 0  # both sides did Redis work per job
    assert total["base_name"] == "raw Celery"
    # the same phases counted under MONITOR, a script once: fewer than the server's count
    sent = rows["per job, commands sent by clients: start + run + wait + receive"]
    assert 0 < sent["value"] < total["value"] and sent["base"] > 0
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert markdown.startswith("# fleetjobs benchmark results")
    assert "Redis commands per job" in markdown


def test_throughput_benchmark_counts_the_cpu_of_each_side(tmp_path: Path) -> None:
    section = _quick("throughput", tmp_path, n="40", rounds="1", pools="prefork")
    rows = {row["metric"]: row for row in section["rows"]}
    rate = rows["40 jobs submitted then all received, prefork pool"]
    assert rate["value"] > 0 and rate["base"] > 0
    cpu = rows["CPU per job, console + workers + redis-server, prefork pool"]
    # each side's processes did work for its jobs: its workers' pools and Redis are counted
    assert cpu["value"] > 0 and cpu["base"] > 0
    fleetjobs, raw = cpu["note"].split("; raw: ")
    for side in (fleetjobs, raw):
        for part in ("console", "workers", "redis-server"):
            used = side.split(part + " ", 1)[1].split(" us/job", 1)[0]
            assert float(used.replace(",", "")) > 0, (part, cpu["note"])
    # the third side, raw Celery whose task claims its message first, ran too
    claimed = rows["raw Celery with a claim per job (bench.claimed_echo), prefork pool"]
    assert claimed["value"] > 0 and claimed["base"] == rate["base"]
    versus = rows["40 jobs submitted then all received, prefork pool, vs raw Celery with a claim"]
    assert versus["value"] == rate["value"] and versus["base"] == claimed["value"]


def test_propagated_counts_the_writes_the_server_made(tmp_path: Path) -> None:
    """The bench's write count (issue 9's "one write per worker per beat") reads what Redis
    propagated: a script's effects one by one, and nothing for what changed nothing."""
    import redis

    from bench.measure import Propagated, appendonly
    from fleetjobs.embedded import EmbeddedRedis

    with EmbeddedRedis(tcp=True) as server:
        r = redis.Redis.from_url(server.url)
        try:
            with appendonly(r):
                mark = Propagated(r)
                r.set("k", "1")
                assert r.set("k", "2", nx=True) is None  # found its key: wrote nothing
                r.get("k")
                script = (
                    "redis.call('ZADD', KEYS[1], 1, 'a', 2, 'b');"
                    "redis.call('PEXPIRE', KEYS[1], 60000);"
                    "return redis.call('ZCARD', KEYS[1])"
                )
                assert r.eval(script, 1, "z") == 2
                writes = mark.writes(r)
                commands = mark.commands(r)
        finally:
            r.close()
    assert writes == {"set": 1, "zadd": 1, "pexpireat": 1}
    # the script's two effects, wrapped as one transaction (markers, not counted as writes);
    # SELECT: the database the AOF's next commands are for
    names = [c[0].lower() for c in commands if c[0].lower() != b"select"]
    assert names == [b"set", b"multi", b"zadd", b"pexpireat", b"exec"]
