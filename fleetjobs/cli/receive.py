"""The receive verb (Receive-Job): a job's records printed as they are taken, each once."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import NotRemovedError
from ..events import ride_out
from ..model import Record, reason_text
from ..records import Shown
from ..refs import children_of
from ..states import JobState
from . import format as fmt
from .app import EPILOG, EXIT_FAILED, State, cli, json_option, pass_state
from .control import print_questions
from .interrupts import as_interrupt

if TYPE_CHECKING:
    from ..fleet import Fleet
    from ..job import Job


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
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Every job's records (Get-Job | Receive-Job): JOBs must be named otherwise.",
)
@json_option
@pass_state
def receive(
    state: State,
    jobs: tuple[str, ...],
    keep: bool,
    wait_: bool,
    auto_remove: bool,
    location: str | None,
    all_: bool,
    as_json: bool,
) -> None:
    """Print JOBs' results (Receive-Job): output on stdout, other streams on stderr.

    Records are taken once: a second receive prints only what came after, unless --keep.
    Objects print as a table; ERROR:, WARNING:, VERBOSE:, DEBUG:, INFO: lines go to stderr.
    A Failed job's Reason prints as an ERROR: line and the exit code is 1; what a Blocked
    job asks prints as a Blocked: line. --wait stops at a job that waits on a person
    (Blocked, Suspended) or a host (Disconnected), says it has not finished and exits 1,
    as wait does. Records print as they are taken (with
    --json, as a JSON array streamed record by record), and leave Redis only once printed:
    an interrupted receive loses nothing.
    """
    # taking records is not a look: it empties them for every console (and --auto-remove
    # removes the jobs), so every job only when asked for, as remove --all
    if not jobs and not all_:
        raise click.UsageError("name the jobs to receive, or use --all for every job")
    if jobs and all_:
        raise click.UsageError("--all receives every job: do not name jobs with it")
    if auto_remove and not wait_:
        raise click.UsageError("--auto-remove needs --wait")
    if auto_remove and keep:
        raise click.UsageError("--auto-remove removes the job with its output: not with --keep")
    fleet = state.connect(patient=wait_)
    refs = list(jobs) or None
    handles = ride_out(lambda: fleet.get(refs)) if wait_ else fleet.get(refs)
    with as_interrupt():  # SIGTERM, SIGHUP: what was not printed goes back at once too
        try:
            _receive(fleet, handles, keep, wait_, auto_remove, location, as_json)
        except NotRemovedError as exc:  # --auto-remove: a follow ends at a job that is held
            _not_auto_removed(exc, as_json)


# what a job the follow stopped at waits for (remove's own advice is to stop it or force)
_HELD_ADVICE = {
    JobState.BLOCKED: "it asks a question: answer it (fleetjobs answer), then receive again",
    JobState.SUSPENDED: "it is suspended: resume it, then receive again",
    JobState.DISCONNECTED: "its host is away: receive again once it is back, or stop it",
}


def _not_auto_removed(exc: NotRemovedError, as_json: bool) -> NoReturn:
    """What --auto-remove left: the jobs it could not remove, each with what it waits for;
    the questions of the Blocked ones (as a receive prints them)."""
    if not as_json:
        print_questions(exc.kept, err=True)
    for info in exc.kept:
        why = _HELD_ADVICE.get(info.state, "stop it first, or remove it with --force")
        click.echo(
            f"fleetjobs: error: job {info.id} ({info.name}) is {info.state.value}: not "
            f"removed ({why})",
            err=True,
        )
    sys.exit(EXIT_FAILED)


def _receive(
    fleet: Fleet,
    handles: list[Job],
    keep: bool,
    wait_: bool,
    auto_remove: bool,
    location: str | None,
    as_json: bool,
) -> None:
    stream = functools.partial(
        fleet.stream, handles, keep=keep, follow=wait_, auto_remove=auto_remove, location=location
    )
    if as_json:
        # a record leaves Redis once the next is asked for, after it was printed: one that
        # Ctrl-C cut short is printed again by the next receive, never lost
        records = stream(handed_on_next=True)
        try:
            fmt.print_json_stream(r.to_dict() for r in records)
        except (KeyboardInterrupt, OSError):
            _close(records)  # what was not printed goes back first
            raise
        _after_receive(fleet, handles, set(), False, wait_, quiet=True, location=location)
        return
    # several hosts' records: each says its host (one named with --location: it alone)
    multi = location is None and len({x for h in handles for x in h.location.split(",")}) > 1
    errors: set[str] = set()
    from . import progress

    with progress.Bars(live=wait_ and progress.mode(as_json) == "live") as bars:
        # a run of objects waits to print as one table, and everything after it in the same
        # batch with it (each stream's order kept); the batch is printed before it is acknowledged,
        # and a record leaves Redis only once printed, the held ones counted with the rest
        # once the batch is (a batch's records leave Redis from its start): whatever stops
        # the receive (Ctrl-C, a closed pipe, a kill), what it had not printed comes back
        pending: list[Record] = []

        def show(rec: Record) -> None:
            if bars.take(rec):  # ctx.progress as a bar, on a terminal
                return
            if rec.stream == "output":  # text: its host before it, from several
                bars.echo((f"{rec.location}: " if multi else "") + fmt.output_text(rec.data))
                sys.stdout.flush()
            else:
                bars.echo(fmt.stream_line(rec, multi), err=True)

        def flush() -> None:
            # the output values, print_values's (a run of objects one table), then the
            # other streams' lines (stderr) as show() prints them: a VERBOSE line between
            # two hosts' objects does not cut their table in two, and a table that cannot
            # be written leaves every line of its batch unprinted (it all goes back)
            values = [(r, r.data) for r in pending if r.stream == "output"]
            if values:
                table = io.StringIO()
                fmt.print_values(values, out=table, tag_locations=multi)
                bars.echo(table.getvalue().removesuffix("\n"))
                sys.stdout.flush()
            for rec in pending:
                if rec.stream != "output":
                    show(rec)
            for rec in pending:
                shown.add(rec)
            pending.clear()

        shown = Shown(flush)
        records = stream(shown=shown)
        try:
            for rec in records:
                if rec.stream == "error":
                    errors.add(str(rec.data))
                if pending or (rec.stream == "output" and isinstance(rec.data, dict)):
                    pending.append(rec)
                    continue
                show(rec)
                shown.add(rec)
        except (KeyboardInterrupt, OSError):  # (OSError: a hung-up terminal's EIO over it)
            _close(records)  # what was not printed goes back, the objects held with it
            raise
        flush()  # (each batch's end printed it already)
    for handle in handles:  # a halted rollout: which hosts failed
        if handle.info.rollout and handle.info.rollout.halted:
            click.echo(f"WARNING: job {handle.id}: {handle.info.rollout.halted}", err=True)
    _after_receive(fleet, handles, errors, multi, wait_, location=location)


def _close(records: Iterator[Any]) -> None:
    """End a stream now (a generator's close: what it holds goes back to Redis), not when
    the interrupted process's last references go."""
    close = getattr(records, "close", None)
    if close is not None:
        close()


def _after_receive(
    fleet: Fleet,
    handles: list[Job],
    errors: set[str],
    multi: bool,
    waited: bool,
    quiet: bool = False,
    location: str | None = None,
) -> None:
    """Show a Failed child's Reason (unless its own ERROR: record said it) and what a Blocked
    one asks, of the children received (each once, those on ``location`` alone when given);
    after ``--wait``, warn of each child it stopped at unfinished (Suspended, Disconnected:
    as ``wait`` does). Exit 1 if any of them Failed, or a wait ended at one not finished."""
    infos = fleet.registry.load([h.id for h in handles])
    received = children_of(infos, location)
    failed = [c for c in received if c.state is JobState.FAILED]
    unfinished = [c for c in received if waited and not c.state.finished]
    if not quiet:
        said = {reason_text(e) for e in errors}  # a long Reason is its error record cut
        for child in failed:
            if child.reason and child.reason not in said:
                where = f"[{child.location}] " if multi else ""
                click.echo(fmt.output_text(f"ERROR: {where}{child.reason}"), err=True)
        print_questions(received, err=True)  # (each child its own: its question, if any)
        for child in unfinished:
            if child.state is not JobState.BLOCKED:  # (its question said it)
                why = _HELD_ADVICE.get(child.state, "receive --wait again")
                click.echo(
                    f"WARNING: job {child.id} on {child.location} is {child.state.value}: it "
                    f"has not finished ({why})",
                    err=True,
                )
    if failed or unfinished:
        sys.exit(EXIT_FAILED)
