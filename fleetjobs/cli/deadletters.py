"""``fleetjobs deadletters``: the messages workers refused because they were not jobs.

Defined apart from the group (which adds it), so this module imports nothing back from
:mod:`fleetjobs.cli`.
"""

from __future__ import annotations

import json

import click

from .. import deadletters as store
from ..model import local_time
from . import format as fmt
from .app import State, cli, json_option, pass_state


@cli.command()
@json_option
@click.option("--clear", is_flag=True, help="Forget them (after printing them).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=store.LIMIT,
    show_default=True,
    help="Show at most this many, newest first.",
)
@pass_state
def deadletters(state: State, as_json: bool, clear: bool, limit: int) -> None:
    """List the messages workers refused (not a job: bad body, bad JSON, no headers...).

    A worker acknowledges such a message, logs it once and keeps it here (the newest 1,000),
    and goes on serving. The list is the same from every console. Of a confined host's, the
    relay keeps 100 an hour and counts the rest, said after the list (on stderr), so that one
    host cannot push out every other host's.
    """
    registry = state.fleet.store
    letters = store.read(registry, limit)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in letters], indent=2))
    else:
        rows = [
            [
                local_time(d.at),
                d.location or d.queue,
                d.worker,
                d.reason,
                d.body,
            ]
            for d in letters
        ]
        fmt.table(rows, ("When", "Location", "Worker", "Reason", "Body"))
    for location, count in sorted(store.dropped(registry).items()):
        click.echo(
            f"fleetjobs: {count} more dead letter(s) from {location} were counted, not kept "
            f"(the relay keeps {store.PER_HOST} an hour of a confined host's)",
            err=True,
        )
    if clear:
        removed = store.clear(registry)
        click.echo(f"removed {removed} dead letter(s)", err=True)
