"""The ``fleetjobs`` command: one subcommand per verb, PowerShell's job cmdlets for a fleet.

Exit codes: 0 success; 1 a job failed or a verb could not be applied (unknown job, remove of
a running job); 2 bad input (usage, unknown action, bad JSON, a host that refuses ``run``);
3 ``wait`` timed out; 4 Redis cannot be reached; 130 interrupted.
"""

from __future__ import annotations

from . import catalog, control, deadletters, flower, launch, schedule, verbs
from .app import cli, main, run

__all__ = [
    "catalog",
    "cli",
    "control",
    "deadletters",
    "flower",
    "launch",
    "main",
    "run",
    "schedule",
    "verbs",
]
