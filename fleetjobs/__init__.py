"""fleetjobs: PowerShell's background jobs, fleet-wide, on Celery and Redis.

::

    from fleetjobs import Fleet
    fleet = Fleet("redis://127.0.0.1:6379/0")
    job = fleet.start("sleep", 5, "done", name="Nap")
    fleet.wait(job, timeout=15)
    print(fleet.receive(job))
"""

from __future__ import annotations

from .actions import action
from .config import Config
from .errors import (
    ActionError,
    ArgumentError,
    ConfigError,
    FleetJobsError,
    JobBlockedError,
    JobNotFoundError,
    JobStateError,
    NoHostError,
    NotRemovedError,
    PermissionDeniedError,
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
from .version import __version__

__all__ = [
    "ActionError",
    "ArgumentError",
    "Config",
    "ConfigError",
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
