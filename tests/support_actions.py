"""Actions the tests load into their workers with ``--include tests.support_actions``."""

from __future__ import annotations

import os
import time
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
def steps(ctx: Any, count: int, delay: float = 0.5) -> str:
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
