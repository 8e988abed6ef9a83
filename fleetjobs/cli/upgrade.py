"""``fleetjobs upgrade``: move what 0.2 kept in Redis into this version's layout, now.

Defined apart from the group (which adds it), so this module imports nothing back from
:mod:`fleetjobs.cli`.
"""

from __future__ import annotations

import click

from .app import EXIT_CODES, State, cli, pass_state


@cli.command(epilog=EXIT_CODES)
@pass_state
def upgrade(state: State) -> None:
    """Move the history indexes 0.2 kept into this version's buckets, all of them now.

    A newer console's starts move them anyway, 0.1 s of it each, newest jobs first; until a
    job is moved, get does not list it and retention does not purge it. This moves the rest
    at once, in Redis calls of at most 50 jobs (Redis serves others between them), and says
    how many jobs it moved. Run it again, or beside starts and other consoles, at no harm.
    Upgrade every console first: a 0.2 console lists only what is left in 0.2's indexes.
    """
    moved, ends, _ = state.fleet.registry.indexes.migrate()  # all: none is left
    if moved or ends:
        # ends: what 0.2 workers still finishing their jobs wrote for jobs moved before
        also = f", and {ends} end(s) or failure(s) 0.2 workers wrote since" if ends else ""
        click.echo(f"moved {moved} job(s) from 0.2's history indexes into buckets{also}")
    else:
        click.echo("nothing to move: no history index of 0.2 left")
