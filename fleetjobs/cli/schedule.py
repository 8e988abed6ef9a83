"""The ``schedule`` verbs (Register-ScheduledJob and friends) and ``beat``, which fires them.

``fleetjobs schedule add NAME (--cron EXPR | --every 10m | --at TIME) [options] ACTION [ARG ...]``:
the options come before ACTION, and what follows ACTION is the action's, parsed as ``start``
parses it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime
from typing import Any

import click

from ..errors import BadTriggerError, ScheduleError, ScheduleExistsError
from ..model import local_time
from ..schedule_model import ScheduleInfo
from ..schedules import Schedules
from ..states import JobState
from ..triggers import OVERLAP
from . import format as fmt
from .app import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_USAGE,
    Seconds,
    State,
    cli,
    fail,
    json_option,
    loglevel_option,
    parse_kw,
    pass_state,
    url_off_the_command_line,
)
from .launch import ACTION_CONTEXT, action_arguments, shown_warnings

SCHEDULE_COLUMNS = ("Name", "Trigger", "Target", "Enabled", "Last run", "Next run")


class _ScheduleGroup(click.Group):
    """Turns a refused schedule verb into one line and its exit code (2: bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (BadTriggerError, ScheduleExistsError) as exc:
            fail(str(exc), EXIT_USAGE)
        except ScheduleError as exc:
            fail(str(exc), EXIT_FAILED)


class _AddCommand(click.Command):
    """``add NAME [OPTIONS] ACTION [ARG ...]``: NAME first, then the options, then ACTION."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-"):
            ctx.meta["schedule_name"] = args[0]
            args = args[1:]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["NAME", *super().collect_usage_pieces(ctx)]


def _schedules(state: State) -> Schedules:
    return state.fleet.schedules


@cli.group(cls=_ScheduleGroup, epilog=EXIT_CODES)
def schedule() -> None:
    """Run jobs on a schedule, fleet-wide (Register-ScheduledJob): cron, every N, or once at a
    time. The schedules live in Redis; `fleetjobs beat` fires them."""


@schedule.command(cls=_AddCommand, epilog=EXIT_CODES, context_settings=ACTION_CONTEXT)
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--cron", metavar="EXPR", help='Five cron fields ("0 3 * * *") or @daily, ...')
@click.option("--every", metavar="N[s|m|h|d]", help="Fire every N seconds/minutes/hours/days.")
@click.option("--at", "at", metavar="TIME", help="Fire once at an ISO time (2026-12-01T03:00).")
@click.option(
    "--timezone",
    metavar="ZONE",
    help="IANA zone the cron (and an --at without offset) is read in [default: UTC].",
)
@click.option(
    "--location",
    "-l",
    "locations",
    multiple=True,
    metavar="LOC",
    help="Host(s) to run on: repeat or comma-separate; globs match the hosts online at "
    "each firing. Default: the hostname of the machine adding the schedule.",
)
@click.option(
    "--target",
    "-t",
    multiple=True,
    metavar="KEY=VALUE",
    help="Hosts by tag, chosen at each firing (hosts that joined since are included).",
)
@click.option("--all", "all_hosts", is_flag=True, help="Every host online at each firing.")
@click.option("--kw", multiple=True, metavar="KEY=VALUE", help="A keyword argument for the action.")
@click.option(
    "--throttle-limit",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="At most this many of each firing's hosts run it at once.",
)
@click.option(
    "--start-timeout",
    type=Seconds(),
    metavar="SECONDS",
    help="Fail a host's part if no worker started it within SECONDS [default with "
    "--overlap skip: until the next firing, at least 60].",
)
@click.option(
    "--timeout",
    type=Seconds(),
    metavar="SECONDS",
    help="Fail a host's part that runs longer than SECONDS.",
)
@click.option(
    "--max-results",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Keep the newest N runs; older ones are removed with their output.",
)
@click.option(
    "--overlap",
    type=click.Choice(OVERLAP),
    default="skip",
    show_default=True,
    help="When the previous run is unfinished: skip the firing (recorded), run in parallel, "
    "or stop-existing runs first.",
)
@json_option
@click.pass_context
def add(
    ctx: click.Context, /, action: str, args: tuple[str, ...], as_json: bool, **opts: Any
) -> None:
    """Add the schedule NAME: at each trigger, start ACTION with ARGS on the hosts as `start`
    would, as a job named NAME.

    \b
    Examples:
      fleetjobs schedule add nightly --cron "0 3 * * *" --timezone Europe/Berlin \\
          --target role=web archive_logs /var/log /var/log/archive --days 7
      fleetjobs schedule add heartbeat --every 10m --all ping db01
      fleetjobs schedule add once --at 2026-12-01T03:00 -l web01 run "apt-get -y upgrade"
    """
    name = ctx.meta.get("schedule_name")
    if not name:
        raise click.UsageError("name the schedule first: schedule add NAME [OPTIONS] ACTION")
    state = ctx.find_object(State)
    assert state is not None
    # bound to the action's parameters as start binds them (a str parameter stays text)
    pos, kwargs = action_arguments(state, action, args, opts["locations"])
    info = _schedules(state).add(
        name,
        action,
        *pos,
        cron=opts["cron"],
        every=opts["every"],
        at=opts["at"],
        timezone=opts["timezone"],
        locations=list(opts["locations"]),
        target=opts["target"],
        all_hosts=opts["all_hosts"],
        kwargs={**parse_kw(opts["kw"]), **kwargs},
        throttle_limit=opts["throttle_limit"],
        start_timeout=opts["start_timeout"],
        timeout=opts["timeout"],
        max_results=opts["max_results"],
        overlap=opts["overlap"],
    )
    _print([info], as_json, one=True)
    for warning in shown_warnings(info.warnings):  # a location no worker serves now
        click.echo(f"WARNING: {warning}", err=True)


@schedule.command(name="list", epilog=EXIT_CODES)
@json_option
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List the schedules: trigger, target, enabled, last run and next run."""
    unreadable: list[str] = []
    _print(_schedules(state).list(unreadable), as_json)
    for why in unreadable:
        click.echo(f"WARNING: {fmt.output_text(why)}", err=True)


@schedule.command(epilog=EXIT_CODES)
@click.argument("name")
@json_option
@pass_state
def show(state: State, name: str, as_json: bool) -> None:
    """Show one schedule in full: its definition, its runs and its skipped firings."""
    info = _schedules(state).show(name)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    rows = [
        ("Name", info.name),
        ("Trigger", info.trigger.text),
        ("Command", info.command),
        ("Target", info.target_text),
        ("Enabled", info.enabled),
        ("ThrottleLimit", info.throttle_limit),
        ("StartTimeout", info.start_timeout),
        ("Timeout", info.timeout),
        ("MaxResults", info.max_results),
        ("Overlap", info.overlap),
        ("NextRun", _when(info.next_run)),
        ("LastRun", info.last_run.text if info.last_run else None),
        ("Runs", len(info.runs)),
        ("Skipped", info.skipped),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)} : {'' if value is None else _text(value)}")
    if info.runs:
        click.echo("")
        fmt.table(
            [[r.id, r.state, local_time(r.time)] for r in info.runs], ("Id", "State", "Fired")
        )
    if info.skips:
        click.echo("")
        fmt.table(
            [[local_time(s["time"]), s["reason"], s.get("manual", False)] for s in info.skips],
            ("Skipped", "Because", "RunNow"),
        )


@schedule.command(epilog=EXIT_CODES)
@click.argument("name")
@json_option
@pass_state
def remove(state: State, name: str, as_json: bool) -> None:
    """Remove the schedule NAME (its runs stay, as jobs: `fleetjobs remove NAME`)."""
    info = _schedules(state).remove(name)
    if as_json:  # one whose definition could not be read: its name is all there is
        click.echo(json.dumps(info.to_dict() if info else {"name": name}, indent=2))


@schedule.command(epilog=EXIT_CODES)
@click.argument("name")
@json_option
@pass_state
def enable(state: State, name: str, as_json: bool) -> None:
    """Let the schedule NAME fire again, from its next time on."""
    _print([_schedules(state).enable(name)], as_json, one=True)


@schedule.command(epilog=EXIT_CODES)
@click.argument("name")
@json_option
@pass_state
def disable(state: State, name: str, as_json: bool) -> None:
    """Keep the schedule NAME but stop it firing until it is enabled."""
    _print([_schedules(state).disable(name)], as_json, one=True)


@schedule.command(epilog=EXIT_CODES)
@click.argument("name")
@json_option
@pass_state
def run(state: State, name: str, as_json: bool) -> None:
    """Fire the schedule NAME now, as beat would (its timing does not move).

    Prints the run it started; exits 1 when the overlap policy skipped it, or when the run
    failed as it started (its hosts could not be chosen now: the Reason says why).
    """
    job = _schedules(state).run(name)
    if job is None:
        info = _schedules(state).show(name)
        reason = info.skips[0]["reason"] if info.skips else "a run is unfinished"
        if as_json:
            click.echo(json.dumps({"skipped": True, "reason": reason}, indent=2))
        else:
            click.echo(f"fleetjobs: skipped (--overlap skip): {reason}", err=True)
        sys.exit(EXIT_FAILED)
    fmt.print_jobs([job.info], as_json)
    if job.info.state is JobState.FAILED:  # a run that could not start: why, and exit 1
        click.echo(f"fleetjobs: run {job.id} Failed: {fmt.output_text(job.reason or '')}", err=True)
        sys.exit(EXIT_FAILED)


@cli.command(
    epilog="Runs in the foreground; stop it with Ctrl-C or SIGTERM. Run one or two (a standby "
    "takes over when the first stops): RedBeat's lock keeps a schedule from firing twice."
)
@loglevel_option("INFO")
@click.option(
    "--interval",
    type=Seconds(),
    metavar="SECONDS",
    help="Look at the schedules at least this often [env FLEETJOBS_BEAT_INTERVAL; default 5].",
)
@click.option(
    "--lock-timeout",
    type=Seconds(),
    metavar="SECONDS",
    help="How long the lock outlives a killed beat [env FLEETJOBS_BEAT_LOCK_TIMEOUT; default 25].",
)
@pass_state
def beat(state: State, loglevel: str, interval: float | None, lock_timeout: float | None) -> None:
    """Fire the fleet's schedules: each firing starts a job named after its schedule."""
    url_off_the_command_line(state)
    from ..beat import run_beat, setup_logging

    setup_logging(loglevel)
    config = state.config.with_(
        **{
            k: v
            for k, v in (("beat_interval", interval), ("beat_lock_timeout", lock_timeout))
            if v is not None
        }
    )
    sys.exit(run_beat(config))


def _print(infos: list[ScheduleInfo], as_json: bool, one: bool = False) -> None:
    if as_json:
        data: Any = infos[0].to_dict() if one else [i.to_dict() for i in infos]
        click.echo(json.dumps(data, indent=2))
        return
    rows = [
        [
            i.name,
            i.trigger.text,
            i.target_text,
            i.enabled,
            i.last_run.text if i.last_run else "",
            _when(i.next_run) if i.enabled else "(disabled)",
        ]
        for i in infos
    ]
    fmt.table(rows, SCHEDULE_COLUMNS)


OVERDUE = 30.0  # seconds past its time a firing shows as overdue: no beat has fired it


def _when(ts: float | None) -> str | None:
    """This console's local time, its zone named: a trigger may run in another zone; a
    next run well past, overdue (no beat runs: one that comes back fires it, once)."""
    if ts is None:
        return None
    shown = local_time(ts)
    with contextlib.suppress(OverflowError, OSError, ValueError):
        shown += datetime.fromtimestamp(ts).astimezone().strftime(" %Z")
    if ts < time.time() - OVERDUE:
        shown += " (overdue: is a beat running?)"
    return shown


def _text(value: Any) -> str:
    return str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))
