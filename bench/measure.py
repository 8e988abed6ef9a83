"""Measuring instruments the benchmarks share: whole processes, memory, frozen workers.

- :func:`run_measured` runs one command and returns its wall time and its own peak RSS
  (``wait4``'s rusage for that child alone, not the cumulative ``RUSAGE_CHILDREN``);
- :func:`tree_peak` reads the peak RSS (``VmHWM``) of a process and its descendants;
- :func:`tree_cpu` reads the CPU time (user + system) a process and its descendants used;
- :class:`ConsoleCommands` counts the Redis commands this process sends (to subtract its own
  polling from a server-side count);
- :func:`freeze` stops a worker's whole process group (SIGSTOP) so that what a console verb
  does can be counted apart from what the worker does with it;
- :func:`hyperfine` times whole commands, alternated round by round;
- :func:`appendonly` turns a server's AOF on for a block, and :class:`Propagated` reads what
  it appended there since a mark: the writes the server propagated (to its AOF and to every
  replica), command by command, as Lua scripts' effects and not as the scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.connection

from bench.common import Delta, ServerCounter

MiB = 1024 * 1024
AOF_BUSY = ("aof_rewrite_in_progress", "aof_rewrite_scheduled")  # INFO persistence


@dataclass(frozen=True)
class Measured:
    """One finished command: wall seconds, its own peak RSS in bytes, exit code, output."""

    seconds: float
    maxrss: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    keep_stdout: bool = False,
) -> Measured:
    """Run ``argv`` to its end; its wall time and peak RSS (killed after ``timeout``).

    The peak comes from GNU time (``/usr/bin/time -f %M``), which forks the command from a
    small process: a child forked from this big Python would carry this process's own RSS
    into its ``ru_maxrss`` (Linux keeps the pre-exec peak). Without GNU time, ``wait4``'s
    figure is returned, an overestimate by this process's size.
    """
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else "")
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss,
    ):
        cmd = [gnu_time, "-f", "%M", "-o", rss.name, "--", *argv] if gnu_time else list(argv)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out if keep_stdout else subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, args=(proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace") if keep_stdout else ""
        stderr = err.read().decode(errors="replace")
        maxrss = int(usage.ru_maxrss) * 1024  # KiB on Linux
        if gnu_time:
            lines = rss.read().split()
            maxrss = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
    return Measured(seconds, maxrss, proc.returncode, stdout, stderr)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# ---- memory of running processes --------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _kib(value: str | None) -> int:
    return int(value.split()[0]) * 1024 if value else 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, read from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def tree_peak(pid: int) -> int:
    """Bytes: the sum of each process's own peak RSS (VmHWM) in ``pid``'s tree (an upper
    bound of the tree's peak: the peaks need not have come at the same moment)."""
    return sum(_kib(_status(p).get("VmHWM")) for p in descendants(pid))


def tree_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) that ``pid`` and every process below it have used, from
    /proc (a descendant that has exited is no longer counted: take it around work that keeps
    its processes, as a worker keeps its pool)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after the name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def tree_rss(pid: int) -> int:
    """Bytes: the RSS of ``pid``'s tree now."""
    return sum(_kib(_status(p).get("VmRSS")) for p in descendants(pid))


class RedisPeak:
    """Redis's own peak of allocated memory over a phase (``used_memory_peak`` after a
    ``CONFIG RESETSTAT``, which also zeroes the command counters: never inside a count)."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self.before = 0

    def __enter__(self) -> RedisPeak:
        self.r.config_resetstat()
        self.before = int(self.r.info("memory")["used_memory"])
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def peak(self) -> int:
        """Bytes: the highest ``used_memory`` since the phase began."""
        return int(self.r.info("memory")["used_memory_peak"])


# ---- what this process sends ------------------------------------------------------------


class ConsoleCommands:
    """Counts the commands this process sends to any Redis (a pipeline counts each of its
    commands), by name. Lua's inner calls are the server's to count, not ours."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._saved: list[tuple[str, Any]] = []

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __enter__(self) -> ConsoleCommands:
        base: Any = redis.connection.AbstractConnection
        counter = self.calls
        send, pack_many = base.send_command, base.pack_commands

        def send_command(conn: Any, *args: Any, **kwargs: Any) -> None:
            if args:
                counter[str(args[0]).lower()] += 1
            send(conn, *args, **kwargs)

        def pack_commands(conn: Any, commands: Any) -> Any:
            commands = list(commands)
            for cmd in commands:
                if cmd:
                    counter[str(cmd[0]).lower()] += 1
            return pack_many(conn, commands)

        self._saved = [("send_command", send), ("pack_commands", pack_many)]
        base.send_command = send_command
        base.pack_commands = pack_commands
        return self

    def __exit__(self, *exc: object) -> None:
        base: Any = redis.connection.AbstractConnection
        for name, fn in self._saved:
            setattr(base, name, fn)
        self._saved.clear()


# ---- freezing workers -------------------------------------------------------------------


@contextlib.contextmanager
def frozen(procs: Sequence[subprocess.Popen[bytes]]) -> Iterator[None]:
    """SIGSTOP each process's whole group (a worker and its pool) for the block."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        thaw(procs)


def thaw(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGCONT)


# ---- whole commands, timed --------------------------------------------------------------


def hyperfine(
    commands: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
    rounds: int,
    runs: int,
    warmup: int = 1,
) -> tuple[dict[str, list[float]], str]:
    """Seconds of each run of each command, and the tool that timed them.

    Each round times every command in turn (``runs`` runs each, after ``warmup``), so the
    commands alternate round by round and drift hits them all alike. hyperfine when it is on
    PATH (``apt-get install hyperfine``), else this process's own timing of whole processes.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    tool = shutil.which("hyperfine")
    for _ in range(rounds):
        for name, argv in commands.items():
            if tool:
                times[name] += _hyperfine_once(tool, argv, env, runs, warmup)
            else:
                for i in range(warmup + runs):
                    m = run_measured(argv, env, timeout=120)
                    if m.returncode != 0:
                        raise RuntimeError(f"{name} exited {m.returncode}: {m.stderr[-300:]}")
                    if i >= warmup:
                        times[name].append(m.seconds)
    return times, ("hyperfine " + _hyperfine_version(tool)) if tool else "own timing"


def _hyperfine_once(
    tool: str, argv: Sequence[str], env: Mapping[str, str], runs: int, warmup: int
) -> list[float]:
    import shlex

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            tool,
            "--style",
            "none",
            "-N",
            "--warmup",
            str(warmup),
            "--runs",
            str(runs),
            "--export-json",
            out.name,
            shlex.join(argv),
        ]
        done = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"hyperfine failed on {argv[-1]!r}: {done.stderr[-400:]}")
        data = json.loads(Path(out.name).read_text())
    return [float(t) for t in data["results"][0]["times"]]


def _hyperfine_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().removeprefix("hyperfine ")


@contextlib.contextmanager
def appendonly(r: Any) -> Iterator[None]:
    """The server's AOF on for the block (its first rewrite done before), off after it."""
    r.config_set("appendfsync", "no")
    r.config_set("appendonly", "yes")
    while any(int(r.info("persistence").get(k, 0)) for k in AOF_BUSY):
        time.sleep(0.05)
    try:
        yield
    finally:
        r.config_set("appendonly", "no")


class Propagated:
    """The writes a server (its AOF on: :func:`appendonly`) propagated from this mark on.

    Redis 7 writes a script's effects, not the script: what is read here is what the server
    and every replica apply, one entry per command that changed something (a ``SET NX`` that
    found its key, or a read, appends nothing). Read from the AOF's current incremental file
    (Redis 7's manifest); :meth:`commands` fails if a rewrite started another one since.
    """

    def __init__(self, r: Any) -> None:
        self.path = self._incr_file(r)
        self.offset = self.path.stat().st_size

    @staticmethod
    def _incr_file(r: Any) -> Path:
        folder = Path(r.config_get("dir")["dir"]) / r.config_get("appenddirname")["appenddirname"]
        name = r.config_get("appendfilename")["appendfilename"]
        manifest = (folder / f"{name}.manifest").read_text().splitlines()
        incr = [line.split()[1] for line in manifest if line.endswith(" type i")]
        if not incr:
            raise RuntimeError(f"no incremental AOF file in {folder} (Redis 7's manifest)")
        return folder / incr[-1]

    def commands(self, r: Any) -> list[list[bytes]]:
        """Every command appended since the mark, as its arguments."""
        if self._incr_file(r) != self.path:
            raise RuntimeError("the AOF was rewritten during the measurement: measure again")
        buf = self.path.read_bytes()[self.offset :]
        out: list[list[bytes]] = []
        i = 0
        while i < len(buf):  # RESP arrays of bulk strings, as the AOF holds them
            if buf[i : i + 1] != b"*":
                at = self.offset + i
                raise RuntimeError(f"unexpected AOF content at {at}: {buf[i : i + 20]!r}")
            end = buf.index(b"\r\n", i)
            n, i = int(buf[i + 1 : end]), end + 2
            args = []
            for _ in range(n):
                end = buf.index(b"\r\n", i)
                size, i = int(buf[i + 1 : end]), end + 2
                args.append(buf[i : i + size])
                i += size + 2
            out.append(args)
        return out

    def write_commands(self, r: Any) -> list[list[bytes]]:
        """The commands appended since the mark less ``MULTI``/``EXEC`` (a script's effects
        wrapped as one transaction: markers, not writes) and ``SELECT``."""
        return [c for c in self.commands(r) if c and c[0].lower() not in _MARKERS]

    def writes(self, r: Any) -> Counter[str]:
        """:meth:`write_commands` by name."""
        return by_name(self.write_commands(r))


_MARKERS = frozenset({b"multi", b"exec", b"select"})


def by_name(commands: list[list[bytes]]) -> Counter[str]:
    """How many of ``commands`` (each as its arguments) each command name has, lower case."""
    return Counter(c[0].decode().lower() for c in commands)


@dataclass(frozen=True)
class IdleWindow:
    """What an idle window cost the server: its commands (and CPU), the bytes appended to
    its AOF, and the writes it propagated (:meth:`Propagated.write_commands`)."""

    delta: Delta
    aof_bytes: int
    written: list[list[bytes]]


def idle_window(counter: ServerCounter, seconds: float) -> IdleWindow:
    """Watch the server ``counter`` counts for ``seconds`` (its AOF on: :func:`appendonly`)."""
    aof = int(counter.r.info("persistence")["aof_current_size"])
    before = counter.snapshot()
    mark = Propagated(counter.r)
    time.sleep(seconds)
    delta = ServerCounter.diff(before, counter.snapshot())
    written = mark.write_commands(counter.r)
    return IdleWindow(delta, int(counter.r.info("persistence")["aof_current_size"]) - aof, written)
