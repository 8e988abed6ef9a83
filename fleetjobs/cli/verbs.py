"""The verbs that read and manage jobs: get, wait, stop, remove, hosts (receive has its own
module, receive.py); and the commands that start a worker or the demo."""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..control import HELD
from ..errors import JobNotFoundError, NotRemovedError
from ..events import ride_out
from ..model import JobInfo
from ..states import JobState
from . import format as fmt
from .app import (
    EPILOG,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    Seconds,
    State,
    cli,
    fleet_env,
    json_option,
    loglevel_option,
    pass_state,
    state_type,
)
from .control import print_questions

if TYPE_CHECKING:
    pass

NEWEST = 50  # jobs get lists by default (Get-Job -Newest)

# ---- get / wait -------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--name", "-n", help="Only jobs with this Name (globs allowed).")
@click.option("--state", "-s", "state_", help="Only jobs in this state (Completed, Running, ...).")
@click.option("--children", "-c", is_flag=True, help="Show each job's child jobs under it.")
@click.option("--action", "-a", help="Only jobs of this action (globs allowed).")
@click.option("--location", "-l", help="Only jobs that ran on this host (globs allowed).")
@click.option(
    "--since", metavar="AGE|TIME", help="Only jobs started since: 2h, 1d, 2026-11-28T22:00."
)
@click.option("--until", metavar="AGE|TIME", help="Only jobs started until: 30m, an ISO date.")
@click.option("--failed", is_flag=True, help="Only jobs that failed (--state Failed).")
@click.option(
    "--newest",
    "-N",
    type=click.IntRange(min=1),
    default=NEWEST,
    show_default=True,
    metavar="N",
    help="Only the newest N jobs selected (Get-Job -Newest); a note on stderr when older "
    "ones exist.",
)
@click.option("--all", "all_", is_flag=True, help="Every job selected, however many.")
@json_option
@pass_state
def get(
    state: State,
    /,
    jobs: tuple[str, ...],
    name: str | None,
    state_: str | None,
    children: bool,
    as_json: bool,
    newest: int,
    all_: bool,
    **found_by: Any,
) -> None:
    """List jobs: the newest 50, or the JOBs named (Get-Job).

    --action, --location, --since, --until and --failed combine, and are read from indexes:
    they stay fast however many jobs the fleet keeps. Without JOBs, the newest --newest N (50)
    of the jobs selected are listed, oldest first, so a fleet that keeps 100,000 jobs answers
    as fast as one that keeps 50; --all lists every one (with --json, printed as read, 500 at
    a time: the console's memory stays flat however many jobs are kept).
    """
    limit = None if all_ or jobs else newest
    found = state.fleet.each(
        list(jobs) or None,
        name=name,
        state=state_type(state_),
        newest=None if limit is None else limit + 1,  # one more: are older ones left out?
        **found_by,
    )
    if limit is not None:
        listed = list(found)
        if len(listed) > limit:
            listed = listed[1:]
            click.echo(
                f"fleetjobs: the newest {limit} jobs; older ones exist (--all, or --newest N)",
                err=True,
            )
        found = iter(listed)
    asking: list[JobInfo] = []  # every job is read once, 500 at a time, and not kept

    def infos() -> Iterator[JobInfo]:
        for job in found:
            if job.info.asking:
                asking.append(job.info)
            yield job.info

    fmt.print_jobs(infos(), as_json, children=children)
    if not as_json:
        print_questions(asking)


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--any", "any_", is_flag=True, help="Return as soon as one job finishes.")
@click.option(
    "--timeout",
    type=Seconds(zero=True),
    metavar="SECONDS",
    help="Give up after SECONDS: print nothing and exit 3 (0 checks once).",
)
@click.option(
    "--force",
    "-f",
    is_flag=True,
    help="Keep waiting through Suspended and Disconnected (else they end the wait).",
)
@json_option
@pass_state
def wait(
    state: State,
    jobs: tuple[str, ...],
    any_: bool,
    timeout: float | None,
    force: bool,
    as_json: bool,
) -> None:
    """Wait for JOBs (default: every job) to finish, then print them (Wait-Job).

    Exits 0 when every job returned Completed; 1 when one did not (Failed, Stopped, or held:
    a Suspended or Disconnected job ends the wait with a warning unless --force), so that
    `fleetjobs wait J && ...` goes on only after a success; 3 on timeout. A Blocked job (it
    can only go on with an answer) is an error at once.
    """
    # a waiting verb from the start: a Redis away is ridden out, within the timeout
    until = None if timeout is None else time.monotonic() + timeout
    fleet = state.connect(patient=True, until=until)
    handles = ride_out(lambda: fleet.get(list(jobs) or None), until)
    from . import progress  # rich's live display: imported by the verbs that show it

    with progress.watch(fleet, handles, "wait", as_json):
        done = fleet.wait(handles, timeout=timeout, any=any_, force=force)
    if handles and not done:
        sys.exit(EXIT_TIMEOUT)
    fmt.print_jobs([j.info for j in done], as_json)
    for job in done:
        if job.info.state in HELD:
            click.echo(
                f"WARNING: job {job.id} ({job.name}) is {job.info.state.value}: it has not "
                "finished (wait --force waits on)",
                err=True,
            )
    if any(j.info.state is not JobState.COMPLETED for j in done):
        sys.exit(EXIT_FAILED)


# ---- stop / remove ----------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1, required=True)
@json_option
@pass_state
def stop(state: State, jobs: tuple[str, ...], as_json: bool) -> None:
    """Stop JOBs (Stop-Job): queued ones never run, running ones end, their output kept."""
    fleet = state.fleet
    stopped = fleet.stop(fleet.get(list(jobs)))
    fmt.print_jobs([j.info for j in stopped], as_json)


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--state", "-s", "state_", help="Remove the jobs in this state (Completed, ...).")
@click.option("--all", "all_", is_flag=True, help="Remove every job.")
@click.option("--force", "-f", is_flag=True, help="Stop unfinished jobs first instead of refusing.")
@json_option
@pass_state
def remove(
    state: State, jobs: tuple[str, ...], state_: str | None, all_: bool, force: bool, as_json: bool
) -> None:
    """Remove JOBs and all they own (Remove-Job); unfinished ones only with --force."""
    if not jobs and not all_ and state_ is None:
        raise click.UsageError("name the jobs to remove, or use --state STATE or --all")
    if jobs and all_:
        raise click.UsageError("--all removes every job: do not name jobs with it")
    fleet = state.fleet
    try:
        removed = fleet.remove(
            list(jobs) if jobs else None, force=force, state=state_type(state_), all_jobs=all_
        )
    except NotRemovedError as exc:  # the finished ones went; one line per job that did not
        if as_json:
            fmt.print_jobs(exc.removed, True)
        elif exc.removed:  # finished ones named beside them went: say which, not only the rest
            shown = [f"{i.id} ({i.name})" for i in exc.removed[:5]]
            more = len(exc.removed) - len(shown)
            gone = ", ".join(shown) + (f" and {more} more" if more else "")
            what = "job" if len(exc.removed) == 1 else "jobs"
            click.echo(f"fleetjobs: removed {len(exc.removed)} {what}: {gone}", err=True)
        for info in exc.kept:
            click.echo(
                f"fleetjobs: error: job {info.id} ({info.name}) is {info.state.value}: not "
                "removed (stop it first, or remove with --force)",
                err=True,
            )
        sys.exit(EXIT_FAILED)
    if as_json:
        fmt.print_jobs([j.info for j in removed], True)


@cli.command(epilog=EXIT_CODES)
@click.argument("locations", nargs=-1)
@click.option(
    "--facts", "-f", "facts", is_flag=True, help="Show what each host reported of itself."
)
@json_option
@pass_state
def hosts(state: State, locations: tuple[str, ...], facts: bool, as_json: bool) -> None:
    """List the hosts whose workers have heartbeated: online or not, tags, running jobs.

    LOCATIONs (globs allowed) narrow the list; --json gives each host's facts too (hostname,
    FQDN, addresses, OS, kernel, arch, CPUs, memory, versions, boot time, custom facts).
    """
    found = state.fleet.hosts()
    if locations:
        found = [h for h in found if any(fnmatch.fnmatchcase(h.location, p) for p in locations)]
        if not found:
            raise JobNotFoundError(f"no host matches {' '.join(locations)!r}")
    if facts and not as_json:
        fmt.print_facts(found)
    else:
        fmt.print_hosts(found, as_json)


# ---- worker / demo ----------------------------------------------------------------------


@cli.command(
    epilog="The worker runs in the foreground; stop it with Ctrl-C or SIGTERM "
    "(it finishes running jobs first), or SIGQUIT (it stops them now, each Stopped saying so)."
)
@click.option(
    "--location",
    "-l",
    "locations",
    multiple=True,
    metavar="LOC",
    help="Location(s) to serve, each its own queue [default: this hostname].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    help="Jobs run at once [default: CPU count, at least 2].",
)
@click.option(
    "--allow-shell",
    is_flag=True,
    help="Offer the run action (command lines on this host). Off unless given.",
)
@click.option(
    "--include",
    "-I",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE for its @action functions (repeatable).",
)
@click.option("--tag", multiple=True, metavar="KEY=VALUE", help="A tag for targeting (role=web).")
@click.option(
    "--archive-root",
    multiple=True,
    metavar="DIR",
    help="archive_logs reads and writes only under DIR (repeatable) [default: anywhere this "
    "worker's user may].",
)
@click.option(
    "--fresh-process",
    is_flag=True,
    help="Run each job in a new pool process, as Start-Job does (costs start latency).",
)
@click.option(
    "--confined",
    is_flag=True,
    help="Its Redis user writes only its one location's keys; `fleetjobs relay` writes the "
    "rest (README: Confined workers) [env FLEETJOBS_CONFINED_TO=LOC].",
)
@loglevel_option("WARNING")
@pass_state
def worker(
    state: State,
    locations: tuple[str, ...],
    concurrency: int | None,
    allow_shell: bool,
    include: tuple[str, ...],
    tag: tuple[str, ...],
    archive_root: tuple[str, ...],
    fresh_process: bool,
    confined: bool,
    loglevel: str,
) -> None:
    """Run a worker serving LOCATIONs' queues on this host."""
    # the URL (and its password) travels in the environment, never in argv: `ps` shows argv
    argv = [sys.executable, "-m", "fleetjobs.workers", "--loglevel", loglevel.upper()]
    for loc in locations:
        argv += ["--location", loc]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if allow_shell:
        argv.append("--allow-shell")
    for module in include:
        argv += ["--include", module]
    for item in tag:
        argv += ["--tag", item]
    for root in archive_root:
        argv += ["--archive-root", root]
    if fresh_process:
        argv.append("--fresh-process")
    env = fleet_env(state.config)
    if confined:
        if len(locations) != 1 or "," in locations[0]:
            raise click.UsageError("--confined serves exactly one --location")
        env["FLEETJOBS_CONFINED_TO"] = locations[0]
    os.execve(sys.executable, argv, env)


@cli.command()
@click.option("--fast", is_flag=True, help="Shorter sleeps (for a quick look).")
def demo(fast: bool) -> None:
    """Walk through the PowerShell jobs examples on a private Redis and local workers.

    Needs nothing running: with no FLEETJOBS_REDIS_URL it starts its own redis-server on a
    Unix socket in a temporary folder, and removes every process and file it made.
    """
    from .demo import run_demo

    sys.exit(run_demo(fast=fast))
