"""The ``fleetjobs`` command: one subcommand per verb, PowerShell's job cmdlets for a fleet.

Exit codes: 0 success; 1 a job failed or a verb could not be applied (unknown job, remove of
a running job); 2 bad input (usage, unknown action, bad JSON, a host that refuses ``run``);
3 ``wait`` timed out; 4 Redis cannot be reached; 130 interrupted.
"""

from __future__ import annotations

from .app import cli, main, run

# the verbs' modules (verbs, launch, ping, control, catalog, schedule, flower, deadletters,
# upgrade) are imported when their verb is used (.lazy): a read verb or --help pays for no other
__all__ = ["cli", "main", "run"]
