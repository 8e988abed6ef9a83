"""``fleetjobs ping`` (Test-Connection): from this machine, from a host's worker, or each
host's own worker asked whether it lives."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from ..errors import NoHostError
from ..fleet import Fleet
from ..netcheck import reach
from ..routing import is_glob
from . import format as fmt
from .app import EXIT_CODES, Seconds, State, cli, json_option, pass_state


@cli.command(epilog=EXIT_CODES)
@click.argument("servers", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True, help="Every host that has heartbeated.")
@click.option(
    "--from",
    "from_",
    metavar="HOST",
    help="Check from HOST (its worker runs the ping action) instead of from this machine.",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Instead: is each SERVER's own fleetjobs worker alive (a job on it answers)?",
)
@click.option(
    "--timeout",
    type=Seconds(),
    default=5.0,
    show_default=True,
    help="Seconds to wait for each answer; no answer prints False.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Echo requests (or connects) per server; Online if any is answered.",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Check a TCP port instead of ICMP.")
@json_option
@pass_state
def ping(
    state: State,
    servers: tuple[str, ...],
    all_hosts: bool,
    from_: str | None,
    worker: bool,
    timeout: float,
    count: int,
    port: int | None,
    as_json: bool,
) -> None:
    """Is each SERVER reachable (Test-Connection)? From this machine unless --from HOST.

    ICMP where this machine permits it, else (or with --port) a TCP connect (port 22); a
    refused connection still proves the server is up. --worker asks each SERVER's own
    worker instead (a location no worker ever served is False at once). Prints the Server /
    Online table and exits 0 either way: the table is the answer.
    """
    if worker and from_:
        raise click.UsageError("--worker asks each server's own worker: not with --from")
    if bool(servers) == all_hosts:
        raise click.UsageError("name the SERVERS to ping, or use --all")
    if any(not s.strip() for s in servers):  # '' would "reach" this machine
        raise click.UsageError("a SERVER to ping is an empty name")
    if all_hosts:
        servers = tuple(sorted(h.location for h in state.fleet.hosts()))
        if not servers:
            click.echo("fleetjobs: no host has heartbeated yet", err=True)
            return
    if worker:
        rows = _ping_workers(state.fleet, servers, timeout)
    elif from_:
        rows = _ping_from(state.fleet, from_, servers, timeout, count, port)
    else:
        with ThreadPoolExecutor(max_workers=min(32, len(servers))) as pool:
            rows = list(pool.map(lambda s: reach(s, count, timeout, port), servers))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    fmt.table([[r["Server"], r["Online"]] for r in rows], ("Server", "Online"))


def _ping_workers(fleet: Fleet, servers: tuple[str, ...], timeout: float) -> list[dict[str, Any]]:
    """Today's liveness check: a ping job on each server's own worker."""
    known = {h.location for h in fleet.hosts()}
    served = [s for s in servers if s in known]
    answers: dict[str, dict[str, Any]] = {}
    if served:
        job = fleet.start(
            "ping", locations=served, start_timeout=timeout, throttle_limit=len(served)
        )
        fleet.wait(job, timeout=timeout + 5, force=True)
        for rec in fleet.receive(job).records:
            if rec.stream == "output" and isinstance(rec.data, dict):
                answers[rec.location] = rec.data
        # its part never began (no slot free in time: failed by its start timeout, or waiting)
        waited = {c.location for c in fleet.info(job).children if c.begin_time is None}
        fleet.remove(job, force=True)
        # a worker whose every slot runs a job answers no ping: its heartbeat says it lives
        # and is full, its jobs on all its locations counted (a dead one's heartbeat is fresh
        # a while too, but its slots are not all taken)
        hosts = fleet.hosts()
        used = Counter[tuple[str, int]]()
        for h in hosts:
            used[(h.hostname, h.pid)] += h.running
        full = {
            h.location for h in hosts if h.online and 0 < h.concurrency <= used[(h.hostname, h.pid)]
        }
        for server in sorted(waited & full - set(answers)):
            click.echo(f"VERBOSE: {server}: its worker is alive (heartbeat) but busy", err=True)
            answers[server] = {"Online": True, "RttMs": None}
    for server in servers:
        if server not in known:
            click.echo(f"VERBOSE: {server}: no worker has ever served this location", err=True)
    return [_row(s, answers.get(s)) for s in servers]


def _ping_from(
    fleet: Fleet,
    host: str,
    servers: tuple[str, ...],
    timeout: float,
    count: int,
    port: int | None,
) -> list[dict[str, Any]]:
    """Each SERVER checked from ``host`` by its worker's ping action (one job per server).

    Raises:
        NoHostError: no worker serves ``host`` now: its answer would be no answer, and
            every SERVER would read as down.
    """
    online = {h.location: h.online for h in fleet.hosts()}
    if is_glob(host) or "," in host:  # its hosts are chosen as a start chooses them
        pass
    elif host not in online:
        raise NoHostError(f"--from {host}: no worker has ever served this location")
    elif not online[host]:
        raise NoHostError(f"--from {host}: its worker is offline; no check was made")
    options: dict[str, Any] = {"count": count, "timeout": timeout}
    if port is not None:
        options["port"] = port
    jobs = [
        fleet.start("ping", server, locations=host, start_timeout=timeout, kwargs=options)
        for server in servers
    ]
    for warning in jobs[0].warnings if jobs else ():
        click.echo(f"WARNING: {warning}", err=True)
    fleet.wait(jobs, timeout=(timeout + 1) * count + 5, force=True)
    rows = []
    for server, job in zip(servers, jobs, strict=True):
        got = [v for v in fleet.receive(job) if isinstance(v, dict)]
        rows.append(_row(server, got[0] if got else None))
    fleet.remove(jobs, force=True)
    return rows


def _row(server: str, got: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "Server": server,
        "Online": bool(got and got.get("Online")),
        "RttMs": got.get("RttMs") if got else None,
    }
