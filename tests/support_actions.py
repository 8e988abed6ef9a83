"""Actions the tests load into their workers with ``--include tests.support_actions``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from fleetjobs import ActionError, action, fact


@action
def interleave(ctx: Any) -> str:
    """Writes to each stream in a known order, then returns a value."""
    ctx.output("first")
    ctx.error("an error")
    ctx.warning("a warning")
    ctx.verbose("a verbose line")
    ctx.output({"Name": "second", "Size": 2})
    ctx.debug("a debug line")
    ctx.information("an information line")
    ctx.progress(50, "half way")
    return "last"


@action
def produce(ctx: Any, count: int, delay: float = 0.0) -> None:
    """Outputs 1..count, pausing ``delay`` seconds between them."""
    for i in range(1, int(count) + 1):
        ctx.output(i)
        if delay:
            ctx.sleep(delay)


@action
def object_then_lines(ctx: Any, count: int, delay: float = 0.0) -> None:
    """Outputs an object (a row of a table), then line1..line<count>, ``delay`` s apart."""
    ctx.output({"Disk": "sda", "FreeGB": 10})
    for i in range(1, int(count) + 1):
        if delay:
            ctx.sleep(delay)
        ctx.output(f"line{i}")


@action
def rows_then_warning(ctx: Any, count: int) -> None:
    """Outputs ``count`` objects (rows of a table), then a warning, then a line of text."""
    for i in range(int(count)):
        ctx.output({"Row": i, "Pad": "x" * 40})
    ctx.warning("after the rows")
    ctx.output("tail")


@action
def object_then_ask(ctx: Any) -> str:
    """Outputs an object and a line, then asks yes/no."""
    ctx.output({"Disk": "sda", "FreeGB": 10})
    ctx.output("asked next")
    return "done" if ctx.confirm("Go on?") else "declined"


@action
def produce_in_batches(ctx: Any, count: int, per: int = 100) -> None:
    """Outputs 1..count, ``per`` values to a write (``ctx.write_many``)."""
    for start in range(1, int(count) + 1, int(per)):
        ctx.write_many("output", list(range(start, min(start + int(per), int(count) + 1))))


@action
def fail_with(ctx: Any, message: str, plain: bool = False) -> None:
    ctx.output("before the failure")
    if plain:
        raise ValueError(message)
    raise ActionError(message)


@action
def stubborn(ctx: Any, seconds: float) -> str:
    """Ignores the stop flag: only the runtime's interrupt can end it early."""
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        time.sleep(0.05)
    return "finished anyway"


@action
def generate(ctx: Any, count: int) -> Any:
    for i in range(int(count)):
        yield {"Index": i}


@action
def big_values(ctx: Any, count: int, size: int) -> list[str]:
    """``count`` values of ``size`` characters each, numbered: returned, so written at the
    finish."""
    return [f"{i:06d}" + "x" * (int(size) - 6) for i in range(int(count))]


@action
def odd_values(ctx: Any) -> Any:
    return {"when": time.gmtime(0), "set": {1}}


@action
def die(ctx: Any) -> None:
    """Kills the process running the job, as the OOM killer would."""
    ctx.output("about to die")
    os._exit(9)


@action
def where(ctx: Any) -> dict[str, Any]:
    return {"Location": ctx.location, "Pid": os.getpid()}


@action
def fail_on(ctx: Any, location: str, seconds: float = 0.0) -> str:
    """Fails on one location only, after ``seconds``; answers its location elsewhere."""
    ctx.sleep(float(seconds))
    if ctx.location == location:
        raise ActionError(f"refused on {location}")
    return str(ctx.location)


@action
def mark(ctx: Any, folder: str) -> str:
    """Leaves a file named after its location in ``folder``: proof that it ran there."""
    path = os.path.join(folder, str(ctx.location))
    with open(path, "w") as fh:
        fh.write("ran")
    return path


@action
def progress_steps(ctx: Any, count: int, delay: float = 0.5) -> str:
    """Reports progress (Write-Progress) through ``count`` steps of ``delay`` seconds each."""
    for i in range(1, int(count) + 1):
        ctx.sleep(float(delay))
        ctx.progress(100.0 * i / int(count), f"step {i} of {count}")
    return f"{count} steps done"


@action
def fail_at(ctx: Any, hosts: str, seconds: float = 0.3) -> str:
    """Fails on the hosts named (comma-separated) after ``seconds``; succeeds elsewhere."""
    ctx.sleep(float(seconds))
    if ctx.location in hosts.split(","):
        raise ActionError(f"failing on purpose on {ctx.location}")
    return f"done on {ctx.location}"


@fact
def rack() -> str:
    """A custom fact (Salt's custom grain): one value under the function's name."""
    return "r12"


@fact
def disks() -> dict[str, Any]:
    """A custom fact function giving several facts at once."""
    return {"disk_count": 2, "disk_kind": "nvme"}


@action
def confirm_delete(ctx: Any, count: int = 40) -> str:
    """Asks before it acts: the job is Blocked until someone answers."""
    ctx.output("found the files")
    if ctx.confirm(f"Delete {count} archived files on {ctx.location}?"):
        return f"deleted {count}"
    return "kept them"


@action
def ask_on(ctx: Any, location: str, question: str = "Go on?") -> str:
    """Asks (yes/no) on one location only; the others finish at once."""
    if ctx.location == location and not ctx.confirm(question):
        return f"{ctx.location}: declined"
    return f"{ctx.location}: done"


@action
def ask_default(ctx: Any, default: Any = None) -> str:
    """Asks with a default of any type (an action's own, as Python wrote it)."""
    return "took " + ctx.ask("Go on?", default=default)


@action
def pick(ctx: Any, default: str | None = None) -> str:
    """Asks with choices; ``default`` is the question's own default."""
    return "picked " + ctx.ask("Which disk?", choices=["sda", "sdb"], default=default)


@action
def ask_where(ctx: Any) -> str:
    """Each host asks its own question (they differ)."""
    return ctx.ask(f"Reboot {ctx.location}?", choices=["yes", "no"])


@action(suspendable=True)
def steps(ctx: Any, count: int, delay: float = 0.2) -> None:
    """Outputs 1..count with a checkpoint (a safe point) before each."""
    for i in range(1, int(count) + 1):
        ctx.checkpoint()
        ctx.output(i)
        time.sleep(float(delay))


@action
def hog(ctx: Any, seconds: int) -> str:
    """Stuck in C code that holds the GIL (libc's sleep through ctypes.PyDLL): nothing in its
    process, not even its own watcher thread, runs until it returns."""
    import ctypes

    ctx.output(os.getpid())
    ctypes.PyDLL(None).sleep(int(seconds))
    ctx.output("woke up")
    return "finished anyway"


_CALLS = [0]


@action
def count_calls(ctx: Any) -> int:
    """A module global that leaks from job to job in a long-lived pool process."""
    _CALLS[0] += 1
    return _CALLS[0]


@action
def tally(ctx: Any, folder: str) -> int:
    """Adds a line to the file named after its location in ``folder`` for every run: how many
    times it ran there is how many lines there are."""
    path = os.path.join(folder, str(ctx.location))
    with open(path, "a") as fh:
        fh.write(f"{ctx.job_id}\n")
    with open(path) as fh:
        return sum(1 for _ in fh)


@action
def tally_slowly(ctx: Any, folder: str, seconds: float) -> str:
    """:func:`tally`, then a sleep: each line of the file is one run."""
    path = os.path.join(folder, str(ctx.location))
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return path


@dataclass
class Greeter:
    """An action that is a callable object, not a function (a dataclass: it has no hash)."""

    greeting: str

    def __call__(self, ctx: Any, name: str) -> str:
        return f"{self.greeting}, {name}"


action(name="greet")(Greeter("hello"))


@action
def dumpable(ctx: Any) -> int:
    """PR_GET_DUMPABLE of the pool process running the job (0: its /proc/PID/environ is
    root's to read, not its user's)."""
    import ctypes

    return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))
