"""The verbs that launch jobs: ``start`` (Start-Job), ``invoke`` (Invoke-Command) and ``ping``.

Options of the verb come before ACTION; everything after ACTION belongs to the action:
positional arguments, and ``--key value`` / ``--key=value`` / ``--flag`` keyword arguments
(``fleetjobs start -l web01 archive_logs /var/log /var/log/archive --days 3 --dry-run``),
bound to the parameters the workers publish for it (:mod:`fleetjobs.signatures`): a ``str``
parameter stays text, an option it does not take is refused before anything is queued, and
``run`` takes every word after its first as the command's own.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .. import placement
from ..fleet import Fleet
from ..job import Job
from ..model import Record, check_addressable
from ..routing import split_locations
from ..signatures import bind_words
from ..states import JobState
from . import format as fmt
from .app import (
    EXIT_CODES,
    EXIT_FAILED,
    Seconds,
    State,
    cli,
    json_option,
    parse_kw,
    parse_value,
    pass_state,
)
from .control import ask_on_terminal
from .interrupts import as_interrupt, reader_gone

F = TypeVar("F", bound=Callable[..., Any])
ACTION_CONTEXT = {"ignore_unknown_options": True, "allow_interspersed_args": False}


def split_action_args(tokens: tuple[str, ...]) -> tuple[list[Any], dict[str, Any]]:
    """The action's positional and keyword arguments from what followed ACTION.

    ``--key=value`` and ``--key value`` are keyword arguments (dashes become underscores),
    ``--flag`` followed by another option or nothing is True, ``--`` ends option parsing.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            args.extend(parse_value(t) for t in tokens[i + 1 :])
            break
        if token.startswith("--") and len(token) > 2:
            key, sep, value = token[2:].partition("=")
            key = key.replace("-", "_")
            if not key.isidentifier():
                raise click.BadParameter(f"{token!r} is not an option name", param_hint="ARGS")
            if sep:
                kwargs[key] = parse_value(value)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                kwargs[key] = parse_value(tokens[i + 1])
                i += 1
            else:
                kwargs[key] = True
        else:
            args.append(parse_value(token))
        i += 1
    return args, kwargs


def job_options(fn: F) -> F:
    """The options that shape a job and choose its hosts, shared by start and invoke."""
    options = [
        click.option("--name", "-n", help="The job's Name (default Job<Id>; need not be unique)."),
        click.option(
            "--location",
            "-l",
            "locations",
            multiple=True,
            metavar="LOC",
            help="Host(s) to run on: repeat or comma-separate; globs (web*) match online "
            "hosts. Default: this machine's hostname.",
        ),
        click.option(
            "--target",
            "-t",
            multiple=True,
            metavar="KEY=VALUE",
            help="Select online hosts by tag (role=web); repeat to require several.",
        ),
        click.option("--all", "all_hosts", is_flag=True, help="Every online host."),
        click.option(
            "--kw",
            multiple=True,
            metavar="KEY=VALUE",
            help="A keyword argument for the action (also: --key value after ACTION).",
        ),
        click.option(
            "--throttle-limit",
            type=click.IntRange(min=1),
            default=32,
            show_default=True,
            help="At most this many of the job's hosts run it at once.",
        ),
        click.option(
            "--start-timeout",
            type=Seconds(),
            metavar="SECONDS",
            help="Fail a host's part if no worker started it within SECONDS.",
        ),
        click.option(
            "--timeout",
            type=Seconds(),
            metavar="SECONDS",
            help="Fail a host's part that runs longer than SECONDS.",
        ),
        click.option(
            "--prompt-timeout",
            type=Seconds(),
            metavar="SECONDS",
            help="A question nobody answers within SECONDS takes --default-answer (else the "
            "question's own default, else the host's part fails).",
        ),
        click.option(
            "--default-answer",
            metavar="ANSWER",
            help="The answer a --prompt-timeout gives.",
        ),
        *rollout_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


rollout_options = [
    click.option(
        "--where",
        multiple=True,
        metavar="FACT=VALUE",
        help="Only hosts whose facts pass: os=debian, 'memory_gb>=8', 'kernel=6.*' (globs; "
        "> >= < <= compare numbers and versions); repeat to require several. Alone: every "
        "online host is a candidate.",
    ),
    click.option(
        "--batch",
        "-b",
        metavar="N|P%",
        help="A rollout: hosts in waves of N (or P% of them), each wave after the last finished.",
    ),
    click.option(
        "--batch-wait",
        type=Seconds(zero=True),
        default=0.0,
        metavar="SECONDS",
        help="Pause between two waves.",
    ),
    click.option(
        "--max-failures",
        type=click.IntRange(min=0),
        metavar="K",
        help="Halt the rollout once more than K hosts failed: the hosts not started never are.",
    ),
    click.option("--fail-fast", is_flag=True, help="Halt at the first failure (--max-failures 0)."),
    click.option(
        "--halt-running", is_flag=True, help="When a rollout halts, stop the hosts still running."
    ),
]


def action_arguments(
    state: State, action: str, tokens: tuple[str, ...], locations: tuple[str, ...]
) -> tuple[list[Any], dict[str, Any]]:
    """The action's arguments from the words after ACTION, bound to the parameters the
    workers publish for it (those at ``locations`` first); a guess from JSON when no worker
    has said what it takes."""
    hosts = {h.location: h for h in state.fleet.hosts()}
    params = placement.params_for(action, hosts, split_locations(list(locations)))
    if params is None:
        return split_action_args(tokens)
    return bind_words(action, params, tokens)


def _launch(state: State, action: str, tokens: tuple[str, ...], opts: dict[str, Any]) -> Job:
    if action.startswith("-"):  # an action's option before ACTION: taken for the ACTION
        raise click.UsageError(
            f"no such option: {action} (an action's own options go after ACTION: "
            f"start ACTION {action} VALUE)"
        )
    if opts["fail_fast"] and opts["max_failures"] not in (None, 0):
        raise click.UsageError("--fail-fast is --max-failures 0: give one of them")
    if opts["name"] is not None:
        check_addressable(opts["name"])  # a person names jobs by it: not one that reads as an Id
    args, kwargs = action_arguments(state, action, tokens, opts["locations"])
    job = state.fleet.start(
        action,
        *args,
        name=opts["name"],
        locations=list(opts["locations"]),
        target=opts["target"],
        all_hosts=opts["all_hosts"],
        kwargs={**parse_kw(opts["kw"]), **kwargs},
        throttle_limit=opts["throttle_limit"],
        start_timeout=opts["start_timeout"],
        timeout=opts["timeout"],
        prompt_timeout=opts["prompt_timeout"],
        default_answer=opts["default_answer"],
        batch=opts["batch"],
        batch_wait=opts["batch_wait"],
        max_failures=0 if opts["fail_fast"] else opts["max_failures"],
        halt_running=opts["halt_running"],
        where=opts["where"],
    )
    for warning in shown_warnings(job.warnings):
        click.echo(f"WARNING: {warning}", err=True)
    return job


SHOWN_WARNINGS = 5  # past it, one line says how many more: 300 offline locations are not 300


def shown_warnings(warnings: Sequence[str]) -> list[str]:
    """A start's warnings as a console prints them: the first few, then how many more."""
    if len(warnings) <= SHOWN_WARNINGS:
        return list(warnings)
    more = len(warnings) - (SHOWN_WARNINGS - 1)
    return [
        *warnings[: SHOWN_WARNINGS - 1],
        f"and {more} more (of {len(warnings)} warnings: fleetjobs hosts lists the hosts "
        "that serve locations)",
    ]


@cli.command(epilog=EXIT_CODES, context_settings=ACTION_CONTEXT)
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@job_options
@json_option
@pass_state
def start(state: State, /, action: str, args: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Start ACTION with ARGS as a background job and return at once (Start-Job).

    One child job per host. Each ARG binds to the action's parameter as its hosts publish it
    (fleetjobs actions): a str one stays text, an int, float or bool one must parse as such,
    an untyped one is JSON when it parses (5, true, [1,2], {"a":1}) and text otherwise.
    Built-in actions: echo, sleep, run (a command line; only on workers started with
    --allow-shell), ping, archive_logs, processes, files.

    \b
    Examples:
      fleetjobs start --name Nap sleep 10 "Backup done"
      fleetjobs start --location web01,web02 run "df -h /"
      fleetjobs start --target role=web archive_logs /var/log /var/log/archive --days 7
    """
    job = _launch(state, action, args, opts)
    if as_json:
        click.echo(json.dumps(job.info.to_dict(), indent=2))
    else:
        fmt.print_jobs([job.info], False)


@cli.command(epilog=EXIT_CODES, context_settings=ACTION_CONTEXT)
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@job_options
@json_option
@pass_state
def invoke(state: State, /, action: str, args: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Run ACTION on the hosts and print what each returns as it comes (Invoke-Command).

    The job is removed afterwards; the exit code is 1 if any host's part failed. Ctrl-C
    stops the job on every host. A question the action asks (ctx.ask) is printed and, on a
    terminal, asked here; otherwise any console may answer it (fleetjobs answer).

    \b
    Examples:
      fleetjobs invoke --all run "uptime"
      fleetjobs invoke -l 'web*' ping db01
    """
    with as_interrupt():  # SIGTERM, SIGHUP (timeout, a closed terminal): as Ctrl-C
        _invoke(state, action, args, as_json, opts)


def _invoke(state: State, action: str, args: tuple[str, ...], as_json: bool, opts: Any) -> None:
    fleet = state.fleet
    job = _launch(state, action, args, opts)
    tag = len(job.info.child_ids) > 1
    records: list[dict[str, Any]] = []  # with --json: every record, printed at the end
    objects: list[tuple[Record, Any]] = []  # objects, printed as one table at the end
    try:
        _watch(fleet, job, as_json, records, objects)
        while not fleet.info(job).finished:  # it waits on a person: ask, or wait for them
            if not ask_on_terminal(fleet, job):
                _wait_while_held(fleet, job)
            _watch(fleet, job, as_json, records, objects)
        fmt.print_values(objects, tag_locations=tag)
    except (KeyboardInterrupt, OSError) as exc:
        if isinstance(exc, OSError) and not reader_gone(exc):
            # a full disk under the output, say: what ran on the hosts is not undone for it
            click.echo(
                f"fleetjobs: job {job.id} left running: fleetjobs receive {job.id}", err=True
            )
            raise
        # Ctrl-C, SIGTERM, SIGHUP, or the reader gone: a terminal that hung up (EIO, as the
        # live display ends over the interrupt), | head (EPIPE): not left running everywhere
        try:
            fleet.stop(job, timeout=5.0)
        finally:  # even if a second Ctrl-C cuts the stop short
            try:
                if isinstance(exc, KeyboardInterrupt):  # what it took, before the job goes
                    with contextlib.suppress(OSError):
                        _print_taken(fleet, job, as_json, records, objects, tag)
            finally:
                fleet.remove(job, force=True)
        raise
    info = fleet.info(job)
    fleet.remove(job, force=True)
    if as_json:
        click.echo(json.dumps({"job": info.to_dict(), "records": records}, indent=2))
    failed = [c for c in info.children if c.state is not JobState.COMPLETED]
    for child in failed:
        line = f"fleetjobs: {child.location}: {child.state.value}: {child.reason}"
        click.echo(fmt.output_text(line), err=True)
    if info.rollout and info.rollout.halted:
        click.echo(f"fleetjobs: {info.rollout.halted}", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


def _print_taken(
    fleet: Fleet,
    job: Job,
    as_json: bool,
    records: list[dict[str, Any]],
    objects: list[tuple[Record, Any]],
    tag: bool,
) -> None:
    """What an interrupted invoke had taken and not printed yet (its objects' table; with
    --json the whole document, the job as its stop left it): the job is removed next."""
    if as_json:
        click.echo(json.dumps({"job": fleet.info(job).to_dict(), "records": records}, indent=2))
    else:
        fmt.print_values(objects, tag_locations=tag)
    sys.stdout.flush()


def _wait_while_held(fleet: Fleet, job: Job) -> None:
    """Until the job no longer waits on someone else (an answer, a resume, its host)."""
    while fleet.info(job).state in (
        JobState.BLOCKED,
        JobState.SUSPENDED,
        JobState.DISCONNECTED,
    ):
        time.sleep(0.25)


def _watch(
    fleet: Fleet,
    job: Job,
    as_json: bool,
    gathered: list[dict[str, Any]],
    objects: list[tuple[Record, Any]],
) -> None:
    """Show the job's records until it finishes or waits on a person, under the live progress
    display on a terminal (which is gone again before anyone is asked anything)."""
    from . import progress  # rich's live display: imported by the verbs that show it

    with progress.watch(fleet, [job], "invoke", as_json) as shown:
        _show(fleet, job, as_json, shown.echo, gathered, objects)


def _show(
    fleet: Fleet,
    job: Job,
    as_json: bool,
    echo: Callable[..., None],
    gathered: list[dict[str, Any]],
    objects: list[tuple[Record, Any]],
) -> None:
    """Print records as they arrive; with --json gather them into ``gathered``, and the
    objects into ``objects``, to print as one table at the end."""
    multi = len(job.info.child_ids) > 1
    waves = _WaveReport(fleet, job, as_json, echo)
    for rec in fleet.stream(job, follow=True):
        waves.check()
        if as_json:
            gathered.append(rec.to_dict())
        elif rec.stream != "output":
            echo(fmt.stream_line(rec, multi), err=True)
        elif isinstance(rec.data, dict):
            objects.append((rec, rec.data))
        else:
            prefix = f"{rec.location}: " if multi else ""
            echo(prefix + fmt.output_text(rec.data))
    waves.check(force=True)


class _WaveReport:
    """A rollout's progress on stderr (``PROGRESS: wave 2 of 3 running ...``), read at most
    once a second while records arrive, and once at the end."""

    def __init__(self, fleet: Fleet, job: Job, quiet: bool, echo: Callable[..., None]) -> None:
        self.fleet, self.job, self.echo = fleet, job, echo
        self.on = job.info.rollout is not None and not quiet
        self.last = ""
        self.read_at = 0.0
        if self.on:
            self.check(force=True)

    def check(self, force: bool = False) -> None:
        if not self.on or (not force and time.monotonic() - self.read_at < 1.0):
            return
        self.read_at = time.monotonic()
        info = self.fleet.info(self.job)
        text = info.rollout.describe(info.finished) if info.rollout else ""
        if text != self.last:
            self.last = text
            self.echo(f"PROGRESS: {text}", err=True)
