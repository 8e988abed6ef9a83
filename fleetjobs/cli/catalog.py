"""``fleetjobs actions`` (Get-Command): the actions the workers offer and their parameters."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import click

from .. import signatures
from ..errors import JobNotFoundError
from ..routing import split_locations
from . import format as fmt
from .app import EXIT_CODES, State, cli, json_option, pass_state


@cli.command(epilog=EXIT_CODES)
@click.option(
    "--location",
    "-l",
    "locations",
    multiple=True,
    metavar="LOC",
    help="Only these hosts (globs and comma-separated lists allowed).",
)
@json_option
@pass_state
def actions(state: State, locations: tuple[str, ...], as_json: bool) -> None:
    """List the actions the online workers offer, with their parameters (Get-Command).

    A start binds the words after ACTION to these parameters, and refuses what they do not
    take before anything is queued.
    """
    patterns = split_locations(locations)
    hosts = [
        h
        for h in state.fleet.hosts()
        if h.online and (not patterns or any(fnmatch.fnmatchcase(h.location, p) for p in patterns))
    ]
    if patterns and not hosts:  # as hosts does: a host named that serves nothing is no answer
        raise JobNotFoundError(f"no online host matches {' '.join(locations)!r}")
    found: dict[str, dict[str, Any]] = {}
    for host in hosts:
        for name in host.actions:
            entry = found.setdefault(
                name,
                {
                    "action": name,
                    "parameters": host.signatures.get(name),
                    "suspendable": name in host.suspendable,
                    "locations": [],
                },
            )
            entry["locations"].append(host.location)
    rows = [found[n] for n in sorted(found)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    fmt.table(
        [
            [
                r["action"],
                signatures.text(r["parameters"]) if r["parameters"] is not None else "?",
                r["suspendable"],
                ",".join(r["locations"]),
            ]
            for r in rows
        ],
        ("Action", "Parameters", "Suspendable", "Locations"),
    )
