"""``fleetjobs deadletters``: the messages workers refused because they were not jobs.

Defined apart from the group (which adds it), so this module imports nothing back from
:mod:`fleetjobs.cli`.
"""

from __future__ import annotations

import json

import click

from .. import deadletters as store
from ..model import iso, local_time
from . import format as fmt
from .app import State, cli, json_option, pass_state


@cli.command()
@json_option
@click.option(
    "--clear",
    is_flag=True,
    help="Forget them all, and the counts, after printing every one (--limit does not apply).",
)
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
    and goes on serving. The list is the same from every console. A confined host's are kept
    apart, its newest 100, so that one host cannot push out every other host's; how many of
    its older ones it pushed out is said after the list (on stderr).
    """
    registry = state.fleet.store
    if clear:  # read and forgotten in one transaction: none that comes meanwhile goes unseen,
        letters, pushed_out = store.take(registry)  # and every one forgotten is shown
        removed = len(letters)
    else:
        letters, pushed_out = store.read(registry, limit), store.dropped(registry)
    if as_json:
        # times as every --json prints them: ISO 8601, UTC
        click.echo(json.dumps([{**d.to_dict(), "at": iso(d.at)} for d in letters], indent=2))
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
    for location, count in sorted(pushed_out.items()):
        click.echo(
            f"fleetjobs: {count} older dead letter(s) from {location} were pushed out by its "
            f"newer ones (a confined host keeps its newest {store.PER_HOST})",
            err=True,
        )
    if clear:
        click.echo(f"removed {removed} dead letter(s)", err=True)
