"""What both benchmarks share: the machine banner, raw Celery workers, and Redis counters.

Nothing here runs by itself; see ``bench/roundtrip.py`` and ``bench/fanout.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import celery
import kombu
import redis
import redis.connection
from celery import Celery

from fleetjobs import Config, Fleet
from fleetjobs.embedded import (
    EmbeddedRedis,
    LocalWorkers,
    redis_server_binary,
    stop_process_groups,
)
from fleetjobs.errors import FleetJobsError

ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A benchmark could not measure what it meant to (a timeout, a wrong result)."""


# ---- process hygiene --------------------------------------------------------------------


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM unwind the stack like Ctrl-C does, so every ``finally`` cleans up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _die_with_parent() -> None:
    """In the child, before exec: have Linux SIGTERM it when this process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def python_path_env(**extra: str) -> dict[str, str]:
    """This environment with the repository root first on PYTHONPATH (for ``bench.*``)."""
    parts = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(parts)), **extra}


# ---- the banner -------------------------------------------------------------------------


def machine_lines() -> list[str]:
    """nproc, Python, Celery, kombu, redis-py and the redis-server the benchmarks run."""
    binary = redis_server_binary()
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        server = next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())
    except (OSError, subprocess.SubprocessError) as exc:
        server = f"unknown ({exc})"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return [
        f"machine: nproc={usable} (cpu_count={os.cpu_count()}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()} ({sys.executable})",
        f"celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}",
        f"redis-server {server} ({binary})",
        "load average {:.2f} {:.2f} {:.2f} (other work on the cores skews every number)".format(
            *os.getloadavg()
        ),
    ]


def print_banner(title: str) -> None:
    print(title)
    for line in machine_lines():
        print("  " + line)
    print(flush=True)


# ---- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (p99 of 200 values is the 198th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio(a: float, b: float) -> str:
    if not (b > 0) or math.isnan(a):
        return "n/a"
    return f"{a / b:.2f}x"


# ---- raw Celery workers -----------------------------------------------------------------


class RawWorkers:
    """``celery -A bench.raw_celery worker`` processes, one per entry of ``queues``.

    Started with the flags a fleetjobs worker uses (prefork, no mingle, no gossip, task
    events), each in its own session so that stopping it takes its pool processes along.
    """

    def __init__(
        self,
        url: str,
        queues: Sequence[Sequence[str]],
        concurrency: int = 1,
        log_dir: Path | None = None,
        pool: str = "prefork",
    ) -> None:
        self.url = url
        self.queues = [list(q) for q in queues]
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.pool = pool
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> RawWorkers:
        try:
            self.start()
        except BaseException:
            self.stop()  # `with` calls no __exit__ when __enter__ raises
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self, index: int, queues: Sequence[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.raw_celery",
            "worker",
            "-Q",
            ",".join(queues),
            "-c",
            str(self.concurrency),
            "--pool",
            self.pool,
            "--without-mingle",
            "--without-gossip",
            "-E",
            "-n",
            f"raw{index}.{os.getpid()}@%h",
            "--loglevel",
            "WARNING",
        ]

    def start(self) -> None:
        """Start every worker process (see :meth:`wait_ready` for when they consume)."""
        from bench.raw_celery import URL_ENV

        env = python_path_env(**{URL_ENV: self.url})
        for i, queues in enumerate(self.queues):
            out: int | IO[bytes] = subprocess.DEVNULL
            if self.log_dir is not None:
                out = open(self.log_dir / f"raw-{i}.log", "ab")  # noqa: SIM115
            try:
                self.procs.append(
                    subprocess.Popen(
                        self.command(i, queues),
                        cwd=ROOT,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_die_with_parent,
                        start_new_session=True,
                    )
                )
            finally:
                if not isinstance(out, int):
                    out.close()

    def wait_ready(self, app: Celery, timeout: float) -> None:
        """Block until every worker answered a ``bench.echo`` sent to one of its queues.

        Raises:
            BenchError: a worker exited, or ``timeout`` seconds passed first.
        """
        from celery.exceptions import TimeoutError as CeleryTimeout

        from bench.raw_celery import ECHO

        deadline = time.monotonic() + timeout
        pending = [app.send_task(ECHO, args=["ping"], queue=q[0]) for q in self.queues]
        try:
            for res in pending:
                while True:
                    try:
                        if res.get(timeout=0.25) != "ping":
                            raise BenchError("a raw worker answered the ping wrongly")
                        break
                    except CeleryTimeout:
                        dead = [p for p in self.procs if p.poll() is not None]
                        if dead:
                            raise BenchError(
                                f"a raw Celery worker exited with {dead[0].returncode}"
                            ) from None
                        if time.monotonic() > deadline:
                            raise BenchError(f"raw workers not up in {timeout:g} s") from None
        finally:
            for res in pending:
                with contextlib.suppress(Exception):
                    res.forget()

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown, then kill, of every worker with all its pool processes."""
        stop_process_groups(self.procs, timeout)
        self.procs.clear()


class PoolWorkers(LocalWorkers):
    """fleetjobs workers (``LocalWorkers``) on another Celery pool (``bench/fj_worker.py``)."""

    def __init__(self, *args: Any, pool: str = "prefork", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    def command(self, locations: Sequence[str]) -> list[str]:
        argv = super().command(locations)
        if self.pool == "prefork":
            return argv
        at = argv.index("-m")
        return [*argv[:at], "-m", "bench.fj_worker", "--pool", self.pool, *argv[at + 2 :]]


def log_tail(log_dir: Path, limit: int = 1500) -> str:
    """The end of every worker log in ``log_dir``, to explain a failure."""
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace").strip()
        if text:
            parts.append(f"--- {path.name}\n{text[-limit:]}")
    return "\n".join(parts) or "(the worker logs are empty)"


# ---- counting Redis work ----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The server's counters at one moment."""

    at: float  # time.monotonic()
    commands: int  # INFO stats total_commands_processed
    calls: Counter[str]  # INFO commandstats calls, by command name
    cpu: float  # INFO cpu used_cpu_user + used_cpu_sys, seconds


@dataclass(frozen=True)
class Delta:
    """What the server did between two snapshots, the snapshots' own INFO left out."""

    seconds: float
    commands: int
    calls: Counter[str]
    cpu: float


class ServerCounter:
    """The server's own count of commands and CPU (``INFO stats``, ``commandstats``, ``cpu``).

    Commands a Lua script runs count too (Redis counts every ``redis.call``), so a script is
    its EVALSHA plus what it did inside. Each snapshot costs three INFO, left out of diffs.
    """

    INFOS = ("stats", "commandstats", "cpu")

    def __init__(self, url: str) -> None:
        self.r: Any = redis.Redis.from_url(url, decode_responses=True)

    def close(self) -> None:
        self.r.close()

    def snapshot(self) -> Snapshot:
        stats, commandstats, cpu = (self.r.info(section) for section in self.INFOS)
        calls = Counter(
            {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in commandstats.items()}
        )
        return Snapshot(
            time.monotonic(),
            int(stats["total_commands_processed"]),
            calls,
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )

    @classmethod
    def diff(cls, before: Snapshot, after: Snapshot) -> Delta:
        # a command is counted once it has run, so each diff holds exactly as many INFO as
        # one snapshot sends: all of `before`'s for the total, for commandstats the ones
        # after `before`'s commandstats and up to `after`'s
        own = len(cls.INFOS)
        calls = after.calls.copy()
        calls.subtract(before.calls)
        calls["info"] -= own
        return Delta(
            after.at - before.at,
            after.commands - before.commands - own,
            +calls,
            after.cpu - before.cpu,
        )


class ClientRequests:
    """Counts what this process sends to Redis (every client: registry, kombu, results).

    One count is one write to a socket: a command, or a whole pipeline, so it is the number
    of network round trips this process asks for (a SUBSCRIBE whose reply is read later is
    one too). ``connects`` counts new sockets, with their handshake commands inside.
    """

    def __init__(self) -> None:
        self.sends: Counter[str] = Counter()
        self.connects: Counter[str] = Counter()
        self.label = "other"
        self._saved: list[tuple[type, str, Callable[..., Any]]] = []

    def __enter__(self) -> ClientRequests:
        counter = self
        base: Any = redis.connection.AbstractConnection  # redis-py's methods are untyped
        send = base.send_packed_command
        handshake = base.on_connect_check_health

        def send_packed_command(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.sends[counter.label] += 1
            send(conn, command, check_health)

        def on_connect_check_health(conn: Any, *args: Any, **kwargs: Any) -> None:
            counter.connects[counter.label] += 1
            handshake(conn, *args, **kwargs)

        self._saved = [
            (base, "send_packed_command", send),
            (base, "on_connect_check_health", handshake),
        ]
        base.send_packed_command = send_packed_command
        base.on_connect_check_health = on_connect_check_health
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, fn in self._saved:
            setattr(owner, name, fn)
        self._saved.clear()

    @contextlib.contextmanager
    def as_(self, label: str) -> Iterator[None]:
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous


@dataclass
class Sides:
    """Both sides of a benchmark on one private Redis: fleetjobs' and raw Celery's."""

    server: EmbeddedRedis
    config: Config
    fleet: Fleet
    app: Celery
    workers: LocalWorkers
    raw: RawWorkers
    counter: ServerCounter


@contextlib.contextmanager
def both_sides(
    log_dir: Path,
    locations: Sequence[Sequence[str]] = (("bench01",),),
    raw_queues: Sequence[Sequence[str]] = (("raw",),),
    concurrency: int = 2,
    pool: str = "prefork",
    allow_shell: bool = False,
) -> Iterator[Sides]:
    """A private redis-server, fleetjobs workers and raw Celery workers with the same pool
    and concurrency, a Fleet and the raw app; everything stopped when the block ends."""
    from bench.raw_celery import make_app

    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        app = make_app(server.url)
        workers = PoolWorkers(
            config,
            locations,
            concurrency=concurrency,
            log_dir=log_dir,
            pool=pool,
            allow_shell=allow_shell,
        )
        raw = RawWorkers(server.url, raw_queues, concurrency, log_dir, pool)
        counter = ServerCounter(server.url)
        try:
            t = time.perf_counter()
            workers.start()
            raw.start()
            raw.wait_ready(app, timeout=90.0)
            print(
                f"  private redis {server.url}; {len(locations)} fleetjobs and {len(raw_queues)} "
                f"raw Celery worker(s), {pool} pool, concurrency {concurrency}, up in "
                f"{time.perf_counter() - t:.1f} s",
                flush=True,
            )
            with Fleet(config=config) as fleet:
                yield Sides(server, config, fleet, app, workers, raw, counter)
        finally:
            raw.stop()
            workers.stop()
            counter.close()
            app.close()


def bench_main(title: str, run: Callable[[Any, Path], None], ns: Any) -> int:
    """Run one benchmark with worker logs in a temporary folder; returns the exit code."""
    import tempfile

    exit_cleanly_on_sigterm()
    print_banner(title)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleetjobs-bench-") as tmp:
        log_dir = Path(tmp)
        try:
            run(ns, log_dir)
        except (BenchError, FleetJobsError) as exc:
            print(f"\nbenchmark failed: {exc}\n{log_tail(log_dir)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted: stopped the workers and the server", file=sys.stderr)
            return 130
    print(f"total {time.perf_counter() - t:.1f} s")
    return 0
