"""fleetjobs: PowerShell's background jobs, fleet-wide, on Celery and Redis.

::

    from fleetjobs import Fleet
    fleet = Fleet("redis://127.0.0.1:6379/0")
    job = fleet.start("sleep", 5, "done", name="Nap")
    fleet.wait(job, timeout=15)
    print(fleet.receive(job))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .actions import action
    from .config import Config
    from .context import ActionContext
    from .errors import (
        ActionError,
        ArgumentError,
        ConfigError,
        CredentialsRefusedError,
        FleetJobsError,
        JobBlockedError,
        JobNotFoundError,
        JobStateError,
        NoHostError,
        NotRemovedError,
        PermissionDeniedError,
        RedisFullError,
        RedisUnavailableError,
        ShellNotAllowedError,
        StartError,
        UnknownActionError,
    )
    from .facts import fact
    from .fleet import Fleet
    from .job import Job, JobRef, JobRefs, Received
    from .model import HostInfo, JobInfo, Record
    from .parallel import ItemResult, ParallelError, parallel, parallel_values
    from .states import JobState

# Imported on first use (PEP 562): ``import fleetjobs.cli`` or a worker's import of one
# module does not pay for the whole facade (Redis client, Celery) before it needs it.
_LAZY = {
    "action": "actions",
    "Config": "config",
    "ActionContext": "context",
    "ActionError": "errors",
    "ArgumentError": "errors",
    "ConfigError": "errors",
    "CredentialsRefusedError": "errors",
    "FleetJobsError": "errors",
    "JobBlockedError": "errors",
    "JobNotFoundError": "errors",
    "JobStateError": "errors",
    "NoHostError": "errors",
    "NotRemovedError": "errors",
    "PermissionDeniedError": "errors",
    "RedisFullError": "errors",
    "RedisUnavailableError": "errors",
    "ShellNotAllowedError": "errors",
    "StartError": "errors",
    "UnknownActionError": "errors",
    "fact": "facts",
    "Fleet": "fleet",
    "Job": "job",
    "JobRef": "job",
    "JobRefs": "job",
    "Received": "job",
    "HostInfo": "model",
    "JobInfo": "model",
    "Record": "model",
    "ItemResult": "parallel",
    "ParallelError": "parallel",
    "parallel": "parallel",
    "parallel_values": "parallel",
    "JobState": "states",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ActionContext",
    "ActionError",
    "ArgumentError",
    "Config",
    "ConfigError",
    "CredentialsRefusedError",
    "Fleet",
    "FleetJobsError",
    "HostInfo",
    "ItemResult",
    "Job",
    "JobBlockedError",
    "JobInfo",
    "JobNotFoundError",
    "JobRef",
    "JobRefs",
    "JobState",
    "JobStateError",
    "NoHostError",
    "NotRemovedError",
    "ParallelError",
    "PermissionDeniedError",
    "Received",
    "Record",
    "RedisFullError",
    "RedisUnavailableError",
    "ShellNotAllowedError",
    "StartError",
    "UnknownActionError",
    "__version__",
    "action",
    "fact",
    "parallel",
    "parallel_values",
]
