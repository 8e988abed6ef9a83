"""Redis commands per job, verb by verb, beside raw Celery's; redis-benchmark as the limit.

The server counts (``INFO stats`` / ``commandstats``, commands run inside Lua scripts
included). To tell one verb's commands from the worker's, the workers are frozen (SIGSTOP of
the whole process group) while the console submits, so a phase holds only what it names:

- start:   N ``fleet.start("echo", "x")`` with every worker frozen   | raw: N ``send_task``
- run:     the worker thawed until all N are finished; this process's own polling (counted
           on its side) and the idle worker's rate (heartbeats, sweeps, BRPOP timeouts,
           measured first) are subtracted                              | raw: the same
- wait:    ``fleet.wait([job])`` on each finished job                  | raw: (none)
- receive: ``fleet.receive(job)`` on each                              | raw: ``.get()``
- remove:  ``fleet.remove([job])`` on each (beside the sum)            | raw: ``.forget()``

The other side's worker stays frozen throughout. Then the same phases once more under
``MONITOR`` (bench.sent), counting only the commands the clients sent: a script counts once,
its inner calls left out, as kombu's commands count for raw Celery. Then ``redis-benchmark``
(PING, SET, GET) against the same server, workers frozen: the physical limit, and the jobs/s
it would allow at each side's commands per job. And an idle worker of each side, measured
first, with the server's AOF on: its commands and the bytes appended to the AOF per
heartbeat interval.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import BenchError, Delta, ServerCounter, Sides, both_sides, median
from bench.measure import ConsoleCommands, appendonly, by_name, frozen, idle_window
from bench.raw_celery import ECHO
from bench.report import Ctx, Row, ratio_of
from bench.sent import SentCommands

LOC = "bench01"
RAW_QUEUE = "raw"
TIMEOUT = 120.0
FJ_VERBS = ["start", "run", "wait", "receive"]
RAW_VERBS = {"start": "send_task", "run": "worker", "wait": "", "receive": "get"}
TARGET = 27.0


class Phases:
    """Commands per job of each phase, and by command name."""

    def __init__(self, counter: ServerCounter | SentCommands, n: int) -> None:
        self.counter = counter
        self.n = n
        self.per_job: dict[str, float] = {}
        self.cpu_us: dict[str, float] = {}  # redis-server CPU per job, microseconds
        self.names: dict[str, Counter[str]] = {}

    def measure(
        self,
        label: str,
        body: Callable[[], Any],
        idle: Delta | None = None,
        own: bool = False,
    ) -> Any:
        """Run ``body``; less the idle rate (if given) and this process's commands (if
        ``own``: they were polling, not the verb)."""
        before = self.counter.snapshot()
        with ConsoleCommands() as mine:
            result = body()
        d = self.counter.diff(before, self.counter.snapshot())
        total, calls, cpu = float(d.commands), Counter(d.calls), d.cpu
        if own:
            total -= mine.total
            calls.subtract(mine.calls)
        if idle is not None:
            share = d.seconds / idle.seconds
            total -= idle.commands * share
            cpu -= idle.cpu * share
            calls.subtract(Counter({k: round(v * share) for k, v in idle.calls.items()}))
        self.per_job[label] = total / self.n
        self.cpu_us[label] = max(0.0, cpu) / self.n * 1e6
        self.names[label] = +calls
        return result


def fj_phases(s: Sides, n: int, idle: Delta, sent: SentCommands | None = None) -> Phases:
    fleet = s.fleet
    ph = Phases(sent or s.counter, n)
    with frozen(s.raw.procs):
        with frozen(s.workers.procs):
            jobs = ph.measure(
                "start", lambda: [fleet.start("echo", "x", locations=LOC) for _ in range(n)]
            )
        ids = [j.id for j in jobs]

        def until_done() -> None:
            deadline = time.monotonic() + TIMEOUT
            while not all(st in ("Completed", "Failed", "Stopped") for st in _states(s, ids)):
                if time.monotonic() > deadline:
                    raise BenchError(f"{n} fleetjobs jobs not finished in {TIMEOUT:g} s")
                time.sleep(0.05)

        ph.measure("run", until_done, idle=idle, own=True)
        ph.measure("wait", lambda: [fleet.wait([j], timeout=TIMEOUT) for j in jobs], idle=idle)
        out = ph.measure("receive", lambda: [list(fleet.receive(j)) for j in jobs], idle=idle)
        if any(o != ["x"] for o in out):
            raise BenchError(f"a fleetjobs echo received {next(o for o in out if o != ['x'])}")
        ph.measure("remove", lambda: [fleet.remove([j]) for j in jobs], idle=idle)
    return ph


def _states(s: Sides, ids: list[int]) -> list[str | None]:
    states: list[str | None] = s.fleet.registry.states(ids)
    return states


def raw_phases(s: Sides, n: int, idle: Delta, sent: SentCommands | None = None) -> Phases:
    app = s.app
    ph = Phases(sent or s.counter, n)
    with frozen(s.workers.procs):
        with frozen(s.raw.procs):
            results = ph.measure(
                "start",
                lambda: [app.send_task(ECHO, args=["x"], queue=RAW_QUEUE) for _ in range(n)],
            )

        # poll the result keys with a client of our own: asking the AsyncResults would
        # fetch their results now and leave .get() nothing to do
        keys = [s.app.backend.get_key_for_task(r.id) for r in results]

        def until_done() -> None:
            deadline = time.monotonic() + TIMEOUT
            while s.counter.r.exists(*keys) < len(keys):
                if time.monotonic() > deadline:
                    raise BenchError(f"{n} raw Celery tasks not finished in {TIMEOUT:g} s")
                time.sleep(0.05)

        ph.measure("run", until_done, idle=idle, own=True)
        values = ph.measure("receive", lambda: [r.get(timeout=TIMEOUT) for r in results], idle=idle)
        if any(v != "x" for v in values):
            raise BenchError("a raw echo returned something else than 'x'")
        ph.measure("remove", lambda: [r.forget() for r in results], idle=idle)
    return ph


def sent_rows(ctx: Ctx, fj: Phases, raw: Phases, n: int) -> None:
    """Commands the clients sent per job, by verb and in all (MONITOR; see bench.sent)."""
    for verb in FJ_VERBS:
        raw_verb = RAW_VERBS[verb]
        mine, base = fj.per_job.get(verb), raw.per_job.get(verb) if raw_verb else None
        ctx.add(
            Row(
                f"{verb}: commands sent by clients (raw: {raw_verb or 'no such step'})",
                "cmds/job",
                mine,
                base=base,
                base_name="raw Celery" if raw_verb else "",
                ratio=ratio_of(mine, base) if raw_verb else None,
                note=f"fleetjobs: {_top(fj.names[verb], n)}"
                + (f"; raw: {_top(raw.names[verb], n)}" if raw_verb else ""),
                n=n,
            )
        )
    fj_total = sum(fj.per_job.get(v) or 0.0 for v in FJ_VERBS)
    raw_total = sum(raw.per_job.get(v) or 0.0 for v in FJ_VERBS)
    ctx.add(
        total_row(
            "per job, commands sent by clients: start + run + wait + receive",
            fj_total,
            raw_total,
            "MONITOR: commands as clients sent them, a script counted once (its inner "
            "calls are in the server-side row above); idle workers' rate subtracted",
            n,
        )
    )


def total_row(label: str, fj_total: float, raw_total: float, note: str, n: int) -> Row:
    """A per-job total of commands beside raw Celery's, against the target."""
    return Row(
        label,
        "cmds/job",
        fj_total,
        base=raw_total,
        base_name="raw Celery",
        ratio=ratio_of(fj_total, raw_total),
        target=f"<= {TARGET:g} cmds/job",
        met=fj_total <= TARGET,
        note=note,
        n=n,
    )


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """ops/s of redis-benchmark's PING_INLINE, PING_MBULK, SET and GET ({} if absent)."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return {}
    argv = [tool, "-h", "127.0.0.1", "-p", str(port), "-t", "ping,set,get"]
    argv += ["-n", str(requests), "-q", "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False).stdout
    rates = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] != "test":
            try:
                rates[cells[0]] = float(cells[1])
            except ValueError:
                continue
    return rates


def _top(calls: Counter[str], n: float, k: int = 8) -> str:
    return ", ".join(f"{name} {v / n:.1f}" for name, v in calls.most_common(k) if v / n >= 0.05)


def bench_commands(ctx: Ctx) -> None:
    n = ctx.param("n", 20, 200)
    rounds = ctx.param("rounds", 1, 2)
    idle_s = ctx.param("idle", 3.0, 10.0)
    rb_n = ctx.param("redis_benchmark_n", 20000, 200000)
    with both_sides(ctx.log_dir) as s:
        for _ in range(3):  # warm-up: every pool process has run one, channels are known
            job = s.fleet.start("echo", "x", locations=LOC)
            s.fleet.wait([job], timeout=TIMEOUT)
            s.fleet.receive(job)
            s.fleet.remove([job])
            res = s.app.send_task(ECHO, args=["x"], queue=RAW_QUEUE)
            res.get(timeout=TIMEOUT)
            res.forget()
        with appendonly(s.counter.r):
            with frozen(s.raw.procs):
                fj_window = idle_window(s.counter, idle_s)
            with frozen(s.workers.procs):
                raw_window = idle_window(s.counter, idle_s)
        idle_fj, aof_fj = fj_window.delta, fj_window.aof_bytes
        idle_raw, aof_raw = raw_window.delta, raw_window.aof_bytes
        writes_fj, writes_raw = by_name(fj_window.written), by_name(raw_window.written)
        fj_runs, raw_runs = [], []
        for _ in range(rounds):  # alternated
            fj_runs.append(fj_phases(s, n, idle_fj))
            raw_runs.append(raw_phases(s, n, idle_raw))
        # the same phases again under MONITOR, counting only what the clients sent (a
        # script's inner calls left out): apart, since MONITOR costs the server CPU
        with SentCommands(s.server.url) as sent:
            with frozen(s.raw.procs):
                idle_fj_sent = sent.idle(idle_s)
            with frozen(s.workers.procs):
                idle_raw_sent = sent.idle(idle_s)
            fj_sent = fj_phases(s, n, idle_fj_sent, sent)
            raw_sent = raw_phases(s, n, idle_raw_sent, sent)
        with frozen(s.workers.procs), frozen(s.raw.procs):
            rates = redis_benchmark(s.server.port, rb_n)

    def med(runs: list[Phases], label: str) -> float | None:
        vals = [r.per_job[label] for r in runs if label in r.per_job]
        return median(vals) if vals else None

    def cpu(runs: list[Phases], label: str) -> float | None:
        vals = [r.cpu_us[label] for r in runs if label in r.cpu_us]
        return median(vals) if vals else None

    for verb in [*FJ_VERBS, "remove"]:
        raw_verb = RAW_VERBS.get(verb, "forget")
        ctx.add(
            Row(
                f"{verb}" + (f" (raw: {raw_verb})" if raw_verb else " (raw: no such step)"),
                "cmds/job",
                med(fj_runs, verb),
                base=med(raw_runs, verb) if raw_verb else None,
                base_name="raw Celery" if raw_verb else "",
                ratio=ratio_of(med(fj_runs, verb), med(raw_runs, verb)) if raw_verb else None,
                note=f"fleetjobs: {_top(fj_runs[-1].names[verb], n)}"
                + (f"; raw: {_top(raw_runs[-1].names[verb], n)}" if raw_verb else "")
                + f"; redis-server CPU {cpu(fj_runs, verb) or 0:.0f} us/job"
                + (f" (raw {cpu(raw_runs, verb) or 0:.0f})" if raw_verb else ""),
                n=n,
            )
        )
    fj_total = sum(med(fj_runs, v) or 0.0 for v in FJ_VERBS)
    raw_total = sum(med(raw_runs, v) or 0.0 for v in FJ_VERBS)
    ctx.add(
        total_row(
            "per job: start + run + wait + receive",
            fj_total,
            raw_total,
            "server-side counts, Lua's inner calls included; idle workers' rate subtracted",
            n,
        )
    )
    sent_rows(ctx, fj_sent, raw_sent, n)
    # what the count stands for: the server's time per job (a command inside a script costs
    # less than one sent alone: no parsing, no round trip)
    fj_cpu = sum(cpu(fj_runs, v) or 0.0 for v in FJ_VERBS)
    raw_cpu = sum(cpu(raw_runs, v) or 0.0 for v in FJ_VERBS)  # raw Celery has no wait step
    ctx.add(
        Row(
            "redis-server CPU per job: start + run + wait + receive",
            "us/job",
            fj_cpu,
            base=raw_cpu,
            base_name="raw Celery",
            ratio=ratio_of(fj_cpu, raw_cpu),
            note=f"INFO cpu (user + sys), idle rate subtracted; at this CPU one Redis core "
            f"serves {1e6 / fj_cpu:,.0f} fleetjobs jobs/s, {1e6 / raw_cpu:,.0f} raw ones"
            if fj_cpu and raw_cpu
            else "",
            n=n,
        )
    )
    # an idle worker: per heartbeat interval, what the server runs and what it appends to the
    # AOF (and sends every replica); raw Celery's worker has no heartbeat of its own
    beat = s.config.heartbeat_interval
    for label, unit, fj, raw in (
        ("commands", "cmds", idle_fj.commands, idle_raw.commands),
        ("bytes appended to the AOF", "B", aof_fj, aof_raw),
    ):
        ctx.add(
            Row(
                f"idle worker, one location: {label} per {beat:g} s heartbeat",
                unit,
                fj / idle_fj.seconds * beat,
                base=raw / idle_raw.seconds * beat,
                base_name="raw Celery worker",
                ratio=ratio_of(fj / idle_fj.seconds, raw / idle_raw.seconds) if raw else None,
                note=f"{idle_s:g} s each, the other side frozen; appendonly on, appendfsync no"
                if unit == "B"
                else f"fleetjobs: {_top(idle_fj.calls, round(idle_fj.seconds / beat))}",
            )
        )
    # the writes among them, as propagated (a script's effects, a SET NX that wrote nothing
    # left out): issue 9's "one write per worker per beat"; its many-location form is in
    # bench/fleet_scale.py
    fj_w, raw_w = (
        sum(w.values()) / d.seconds * beat
        for w, d in ((writes_fj, idle_fj), (writes_raw, idle_raw))
    )
    ctx.add(
        Row(
            f"idle worker, one location: writes appended to the AOF per {beat:g} s heartbeat",
            "writes",
            fj_w,
            base=raw_w,
            base_name="raw Celery worker",
            ratio=ratio_of(fj_w, raw_w) if raw_w else None,
            note=f"fleetjobs: {_top(writes_fj, idle_fj.seconds / beat)}; "
            f"raw: {_top(writes_raw, idle_raw.seconds / beat) or 'none'}",
        )
    )
    if not rates:
        ctx.note("redis-benchmark not found on PATH: the physical-limit rows are skipped")
        return
    for test, rps in rates.items():
        ctx.add(Row(f"redis-benchmark {test} (same server, workers frozen)", "ops/s", rps))
    get = rates.get("GET") or max(rates.values())
    ctx.add(
        Row(
            "jobs/s Redis alone could serve at these commands per job (GET rate / cmds per job)",
            "jobs/s",
            get / fj_total if fj_total else None,
            base=get / raw_total if raw_total else None,
            base_name="raw Celery",
            ratio=ratio_of(raw_total, fj_total),
            note="an upper bound: single commands, no Lua, no pipelining",
        )
    )
    ctx.note(
        "each phase is counted by the server over N jobs in a row; 'wait' is measured on jobs "
        "already finished (a wait on a running job adds its pub/sub wake-ups); 'run' is what "
        "the worker did, less its idle rate and this console's own polling"
    )
    ctx.params["idle_commands_per_s"] = {
        "fleetjobs worker": round(idle_fj.commands / idle_fj.seconds, 1),
        "raw worker": round(idle_raw.commands / idle_raw.seconds, 1),
    }
