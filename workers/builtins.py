"""The built-in actions every worker offers: echo, sleep, run, processes, files.

``run`` executes a command line on the host and is offered only where the worker's operator
allowed it (``--allow-shell``). The others run no external program.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import stat
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from fleetjobs.actions import action
from fleetjobs.errors import ActionError
from fleetjobs.netcheck import reach

from .context import STREAMS, JobContext
from .reaper import orphan_proof

_STREAMS = tuple(s for s in STREAMS if s != "output")  # the messages echo may write
_DRAIN = 1.0  # at most this many seconds a run job reads its pipes after its command exited


@action
def echo(
    ctx: JobContext,
    *values: Any,
    error: str | None = None,
    warning: str | None = None,
    verbose: str | None = None,
    debug: str | None = None,
    information: str | None = None,
) -> None:
    """Write each value to output, and each given message to its stream, in stream order."""
    ctx.defer()  # nothing to run, only to write: the records go with the job's finish
    for value in values:
        ctx.output(value)
    messages = {
        "error": error,
        "warning": warning,
        "verbose": verbose,
        "debug": debug,
        "information": information,
    }
    for stream in _STREAMS:
        if messages[stream] is not None:
            getattr(ctx, stream)(messages[stream])


@action(suspendable=True)
def sleep(ctx: JobContext, seconds: float, message: Any = None) -> Any:
    """Sleep (``Start-Sleep``), then output ``message`` if one is given ("Backup done")."""
    seconds = float(seconds)
    if seconds < 0:
        raise ActionError(f"seconds must not be negative, got {seconds}")
    ctx.verbose(f"sleeping {seconds:g} s")
    ctx.sleep(seconds)
    return message


@action(shell=True)
def run(ctx: JobContext, command: str, *argv: str, keep_children: bool = False) -> None:
    """Run a command on the host: stdout lines to output, stderr lines to error, as they come.

    One argument is a shell command line (``sh -c``: pipes, globs, ``$(date)``); more than one
    is a program and its arguments, run without a shell. A non-zero exit fails the job. The
    command runs in its own process group, which a stop kills whole. The job ends when the
    command exits: what is left of its group (a background child) is killed then, unless
    ``keep_children``.
    """
    program = command
    if argv:
        found = shutil.which(command)
        if found is None:
            raise ActionError(f"no such program on {ctx.location}: {command}")
        if command.startswith("-"):
            program = found  # a shell's exec would take a leading '-' for an option
    # '--': a command line that starts with '-' is the command, not an option of sh
    args = [program, *argv] if argv else ["/bin/sh", "-c", "--", command]
    # it dies with the process running the job (the rest of its group: workers.reaper)
    spawn, preexec = orphan_proof(args)
    proc = subprocess.Popen(
        spawn,
        env=command_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    )
    ctx.register_process(proc)
    try:
        _pump(ctx, proc)
        code = proc.wait()
        if not keep_children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # what the command left behind
    finally:
        ctx.unregister_process(proc)
    ctx.check()
    if code != 0:
        what = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        raise ActionError(f"command failed with {what}: {command if not argv else ' '.join(args)}")


def command_environment() -> dict[str, str]:
    """The worker's environment less its own settings (``FLEETJOBS_*``): its Redis URL holds
    its credential, which a command, its output (a job's records, which anyone who may read
    the fleet receives) and ``/proc/PID/environ`` must not show."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLEETJOBS_")}


def _pump(ctx: JobContext, proc: subprocess.Popen[bytes]) -> None:
    """Relay both pipes line by line in the order the lines come, until both close or the
    command has exited (a background child may hold a pipe open: what it wrote within a
    moment of the exit is relayed, then the job no longer waits for it)."""
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "output")
    sel.register(proc.stderr, selectors.EVENT_READ, "error")
    partial = {"output": b"", "error": b""}
    exited_at: float | None = None
    while sel.get_map():
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        ready = sel.select(timeout=0.0 if exited_at is not None else 0.5)
        if exited_at is not None and (not ready or time.monotonic() - exited_at > _DRAIN):
            # the command's own output is all in the pipes by now; what still flows after
            # is a background child's
            for stream, rest in partial.items():
                if rest:
                    _emit(ctx, stream, rest)
            break
        for key, _ in ready:
            stream = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                if partial[stream]:
                    _emit(ctx, stream, partial[stream])
                    partial[stream] = b""
                continue
            lines = (partial[stream] + chunk).split(b"\n")
            partial[stream] = lines.pop()
            _emit(ctx, stream, *lines)  # the lines of one read: one write
    sel.close()


def _emit(ctx: JobContext, stream: str, *lines: bytes) -> None:
    texts = [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]
    if texts:
        ctx.write_many(stream, texts)


@action
def processes(ctx: JobContext, top: int = 10, sort: str = "cpu") -> list[dict[str, Any]]:
    """The host's processes (``Get-Process``): Name, Id, CPU seconds and memory (MB), from /proc.

    Args:
        top: how many to return (``Select-Object -First``).
        sort: ``cpu`` (descending), ``memory`` (descending) or ``name``.
    """
    if sort not in {"cpu", "memory", "name"}:
        raise ActionError(f"sort must be cpu, memory or name, got {sort!r}")
    if type(top) is not int or top < 1:  # -5 listed nothing, and said nothing
        raise ActionError(f"top must be a whole number of processes, 1 or more, got {top!r}")
    ticks = os.sysconf("SC_CLK_TCK")
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                raw = fh.read()
            with open(f"/proc/{entry}/statm", encoding="ascii") as fh:
                resident = int(fh.read().split()[1])
        except OSError:
            continue  # it ended while we looked
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        rows.append(
            {
                "Name": name,
                "Id": int(entry),
                "CPU": round(cpu, 2),
                "MemoryMB": round(resident * page_mb, 1),
            }
        )
    key = {
        "cpu": lambda r: -r["CPU"],
        "memory": lambda r: -r["MemoryMB"],
        "name": lambda r: r["Name"],
    }[sort]
    rows.sort(key=key)
    return rows[: max(0, int(top))]


@action
def files(
    ctx: JobContext, path: str, first: int | None = None, pattern: str = "*"
) -> list[dict[str, Any]]:
    """The entries of a folder on the host (``Get-ChildItem``), sorted by name.

    Args:
        path: the folder, an absolute path.
        first: only the first N (``Select-Object -First``); 0 lists nothing.
        pattern: a glob the names must match.
    """
    import fnmatch

    if isinstance(first, str) and first.strip().lstrip("-").isdigit():
        first = int(first)  # as a word of the command line reads (a call from Python may send it)
    if first is not None and (type(first) is not int or first < 0):
        raise ActionError(f"first must be a whole number of entries, 0 or more, got {first!r}")
    if not isinstance(path, str) or not os.path.isabs(path):
        # a relative one would be read from the worker's own folder, wherever it was started
        raise ActionError(f"path must be an absolute path, got {path!r}")
    if first == 0:  # Select-Object -First 0: nothing
        return []
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        raise ActionError(f"cannot find path {path!r}: it does not exist") from None
    except NotADirectoryError:
        raise ActionError(f"{path!r} is not a folder") from None
    except PermissionError:
        raise ActionError(f"access to {path!r} is denied") from None
    out = []
    for name in names:
        if not fnmatch.fnmatch(name, pattern):
            continue
        try:
            st = os.lstat(os.path.join(path, name))
        except OSError as exc:
            ctx.error(f"{name}: {exc.strerror}")
            continue
        out.append(
            {
                "Mode": stat.filemode(st.st_mode),
                "LastWriteTime": datetime.fromtimestamp(st.st_mtime, UTC).strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "Length": st.st_size,
                "Name": name,
            }
        )
        if first is not None and len(out) >= first:
            break
    return out


@action
def ping(
    ctx: JobContext,
    target: str | None = None,
    count: int = 1,
    timeout: float = 2.0,
    port: int | None = None,
) -> dict[str, Any]:
    """Is a server reachable from this host (``Test-Connection``)?

    With no target it answers for the host itself (it is online: its worker ran this). With a
    target it sends ICMP echoes where the host permits them, else (or with ``port``) it
    connects to a TCP port (default 22); a refused connection still proves the host is up.

    Returns:
        ``{"Server", "Online", "RttMs", "Method"}``; RttMs is the best of ``count`` tries.
    """
    if target is None:
        began = time.monotonic()
        ctx.verbose(f"{ctx.location} answers for itself")
        return {
            "Server": ctx.location,
            "Online": True,
            "RttMs": round((time.monotonic() - began) * 1000, 3),
            "Method": "worker",
        }
    if int(count) < 1 or float(timeout) <= 0:
        raise ActionError("count must be at least 1 and timeout positive")
    return reach(
        target,
        int(count),
        float(timeout),
        port,
        before_try=ctx.check,
        unresolved=lambda t: ctx.warning(f"{t}: name not resolved on {ctx.location}"),
    )


@action(name="archive_logs", suspendable=True)
def archive_logs_action(
    ctx: JobContext,
    path: str,
    archive_path: str,
    days: float = 7,
    pattern: str = "*.log",
    dry_run: bool = False,
) -> dict[str, object]:
    """Move log files older than ``days`` from ``path`` into ``archive_path``, never losing one.

    Returns ``{"Server", "Archived", "Bytes", "Skipped"}``; a missing log folder is a warning
    and zero counts, as in the seed. See :mod:`fleetjobs.workers.archive` for how files move.
    """
    from .archive import archive_logs

    try:
        return archive_logs(ctx, path, archive_path, float(days), pattern, bool(dry_run))
    except ValueError as exc:
        raise ActionError(str(exc)) from None
