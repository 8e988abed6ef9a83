"""The ``fleetjobs`` command: one subcommand per verb, PowerShell's job cmdlets for a fleet.

Exit codes: 0 success; 1 a job failed or a verb could not be applied (unknown job, remove of
a running job); 2 bad input (usage, unknown action, bad JSON, a host that refuses ``run``);
3 ``wait`` timed out; 4 Redis cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..config import Config
from ..errors import (
    ConfigError,
    FleetJobsError,
    JobNotFoundError,
    JobStateError,
    RedisUnavailableError,
    StartError,
)
from ..fleet import Fleet
from ..model import Record
from ..states import JobState
from . import format as fmt

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 1, 2, 3, 4
F = TypeVar("F", bound=Callable[..., Any])
EPILOG = (
    "A JOB is an Id, a Name (globs allowed) or an InstanceId. Exit codes: 0 success, 1 a job "
    "failed or a verb could not be applied, 2 bad input, 3 wait timed out, 4 Redis unreachable."
)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"fleetjobs: error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns every fleetjobs error into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisUnavailableError as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except (StartError, ConfigError) as exc:
            fail(str(exc), EXIT_USAGE)
        except (JobNotFoundError, JobStateError, FleetJobsError) as exc:
            fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt:
            click.echo("fleetjobs: interrupted", err=True)
            sys.exit(130)


class State:
    """What the group's options give every verb: the settings, and a Fleet made on demand."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet(config=self.config)
            self._fleet.registry.ping()
        return self._fleet


pass_state = click.make_pass_decorator(State)


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON only (objects with stable keys)."
    )(fn)


def parse_value(text: str) -> Any:
    """A command-line argument as JSON when it parses (``5``, ``true``, ``[1,2]``), else text."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if text.lstrip()[:1] in ("{", "["):
            raise click.BadParameter(f"{text!r} looks like JSON but is not: {exc}") from None
        return text


def parse_kw(items: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--kw")
        out[key] = parse_value(value)
    return out


def state_type(text: str | None) -> JobState | None:
    if text is None:
        return None
    try:
        return JobState.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--state") from None


@click.group(cls=_Group, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar="FLEETJOBS_REDIS_URL",
    metavar="URL",
    help="Where the fleet lives [env FLEETJOBS_REDIS_URL; default "
    "redis://127.0.0.1:6379/0]. Credentials and TLS go in the URL "
    "(rediss://user:pass@host:6380/0).",
)
@click.option(
    "--prefix",
    envvar="FLEETJOBS_PREFIX",
    metavar="PREFIX",
    help="Key prefix, so fleets can share one Redis [env FLEETJOBS_PREFIX; default fj:].",
)
@click.version_option(package_name="fleetjobs")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, prefix: str | None) -> None:
    """Background jobs for a fleet: start a job on many hosts, get the console back, then
    list, wait for, receive from, stop and remove it from any console."""
    try:
        config = Config.from_env(redis_url=redis_url, prefix=prefix)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    ctx.obj = State(config)
    ctx.call_on_close(lambda: ctx.obj._fleet and ctx.obj._fleet.close())


# ---- get / wait -------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--name", "-n", help="Only jobs with this Name (globs allowed).")
@click.option("--state", "-s", "state_", help="Only jobs in this state (Completed, Running, ...).")
@click.option("--children", "-c", is_flag=True, help="Show each job's child jobs under it.")
@json_option
@pass_state
def get(
    state: State,
    jobs: tuple[str, ...],
    name: str | None,
    state_: str | None,
    children: bool,
    as_json: bool,
) -> None:
    """List jobs: every job, or the JOBs named (Get-Job)."""
    found = state.fleet.get(*jobs, name=name, state=state_type(state_))
    fmt.print_jobs([j.info for j in found], as_json, children=children)


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--any", "any_", is_flag=True, help="Return as soon as one job finishes.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Give up after SECONDS: print nothing and exit 3 (0 checks once).",
)
@json_option
@pass_state
def wait(
    state: State, jobs: tuple[str, ...], any_: bool, timeout: float | None, as_json: bool
) -> None:
    """Wait for JOBs (default: every job) to finish, then print them (Wait-Job)."""
    fleet = state.fleet
    handles = fleet.get(*jobs)
    done = fleet.wait(handles, timeout=timeout, any=any_)
    if handles and not done:
        sys.exit(EXIT_TIMEOUT)
    fmt.print_jobs([j.info for j in done], as_json)


# ---- receive ----------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1)
@click.option("--keep", "-k", is_flag=True, help="Leave the records for the next receive.")
@click.option(
    "--wait",
    "-w",
    "wait_",
    is_flag=True,
    help="Keep receiving as records arrive until the jobs finish.",
)
@click.option("--auto-remove", is_flag=True, help="With --wait: remove the jobs afterwards.")
@click.option("--location", "-l", help="Only the part of the job that ran on this host.")
@json_option
@pass_state
def receive(
    state: State,
    jobs: tuple[str, ...],
    keep: bool,
    wait_: bool,
    auto_remove: bool,
    location: str | None,
    as_json: bool,
) -> None:
    """Print JOBs' results (Receive-Job): output on stdout, other streams on stderr.

    Records are taken once: a second receive prints only what came after, unless --keep.
    Objects print as a table; ERROR:, WARNING:, VERBOSE:, DEBUG:, INFO: lines go to stderr.
    """
    if auto_remove and not wait_:
        raise click.UsageError("--auto-remove needs --wait")
    fleet = state.fleet
    handles = fleet.get(*jobs)
    records = fleet.stream(
        handles, keep=keep, wait=wait_, auto_remove=auto_remove, location=location
    )
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    multi = len({loc for h in handles for loc in h.location.split(",")}) > 1
    pending: list[tuple[Record, Any]] = []
    for rec in records:
        if rec.stream == "output":
            if isinstance(rec.data, dict) or pending:
                pending.append((rec, rec.data))  # objects wait, to print as one table
            else:
                click.echo(fmt.value_text(rec.data))
                sys.stdout.flush()
        else:
            click.echo(fmt.stream_line(rec, multi), err=True)
    fmt.print_values(pending)


# ---- stop / remove ----------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1, required=True)
@json_option
@pass_state
def stop(state: State, jobs: tuple[str, ...], as_json: bool) -> None:
    """Stop JOBs (Stop-Job): queued ones never run, running ones end, their output kept."""
    fleet = state.fleet
    stopped = fleet.stop(fleet.get(*jobs))
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
    removed = fleet.remove(list(jobs) if jobs else None, force=force, state=state_type(state_))
    if as_json:
        fmt.print_jobs([j.info for j in removed], True)


@cli.command(epilog=EPILOG)
@json_option
@pass_state
def hosts(state: State, as_json: bool) -> None:
    """List the hosts whose workers have heartbeated: online or not, tags, running jobs."""
    fmt.print_hosts(state.fleet.hosts(), as_json)


# ---- worker / demo ----------------------------------------------------------------------


@cli.command(
    epilog="The worker runs in the foreground; stop it with Ctrl-C or SIGTERM "
    "(it finishes running jobs first)."
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
    "--loglevel",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@pass_state
def worker(
    state: State,
    locations: tuple[str, ...],
    concurrency: int | None,
    allow_shell: bool,
    include: tuple[str, ...],
    tag: tuple[str, ...],
    loglevel: str,
) -> None:
    """Run a worker serving LOCATIONs' queues on this host."""
    # the URL (and its password) travels in the environment, never in argv: `ps` shows argv
    argv = [sys.executable, "-m", "workers", "--loglevel", loglevel.upper()]
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
    env = {
        **os.environ,
        "FLEETJOBS_REDIS_URL": state.config.redis_url,
        "FLEETJOBS_PREFIX": state.config.prefix,
    }
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


def run(argv: list[str] | None = None) -> int:
    """Run the command; every error is one line on stderr. Returns the exit code."""
    try:
        cli.main(args=argv, prog_name="fleetjobs", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("fleetjobs: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see: {exc.ctx.command_path} --help)"
        click.echo(f"fleetjobs: error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


from . import launch  # noqa: E402, F401  (registers start, invoke and ping on the group)
from .deadletters import deadletters  # noqa: E402

cli.add_command(deadletters)

__all__ = ["cli", "main", "run"]

_ = functools  # kept for decorators that wrap verbs in later issues
