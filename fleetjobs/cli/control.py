"""The verbs of job control: ``answer`` (a Blocked job's question), ``suspend`` and ``resume``
(Suspend-Job / Resume-Job), and how a console shows and asks a question."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from ..control import question_line
from ..errors import ArgumentError, JobStateError
from ..fleet import Fleet
from ..job import Job
from ..model import JobInfo
from . import format as fmt
from .app import EPILOG, State, cli, json_option, pass_state


def _how_to_answer(children: Sequence[JobInfo]) -> str:
    return f"the job waits for another console to answer (fleetjobs answer {children[0].id} ANSWER)"


def print_questions(jobs: Sequence[JobInfo], err: bool = False) -> None:
    """One line per asking child, under a table: what it asks and how to answer."""
    for info in jobs:
        for child in info.asking:
            choices = (child.prompt or {}).get("choices")
            example = "|".join(choices) if choices else "ANSWER"
            line = f"Blocked: {question_line(child)} — fleetjobs answer {child.id} {example}"
            click.echo(fmt.printable(line), err=err)


@cli.command(epilog=EPILOG)
@click.argument("job")
@click.argument("answer")
@json_option
@pass_state
def answer(state: State, job: str, answer: str, as_json: bool) -> None:
    """Answer the question JOB asks (a parent: every child asking the same question).

    JOB is Blocked while its action waits on ctx.ask/ctx.confirm; any console may answer.
    """
    fleet = state.fleet
    done = fleet.answer(fleet.get([job]), answer)
    fmt.print_jobs([j.info for j in done], as_json)


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1, required=True)
@json_option
@pass_state
def suspend(state: State, jobs: tuple[str, ...], as_json: bool) -> None:
    """Suspend JOBs at their next checkpoint (Suspend-Job); resume them with resume.

    Only actions that mark checkpoints can be suspended (sleep, archive_logs, and actions
    declared @action(suspendable=True)); any other is refused and nothing changes.
    """
    fleet = state.fleet
    done = fleet.suspend(fleet.get(list(jobs)))
    fmt.print_jobs([j.info for j in done], as_json)


@cli.command(epilog=EPILOG)
@click.argument("jobs", nargs=-1, required=True)
@json_option
@pass_state
def resume(state: State, jobs: tuple[str, ...], as_json: bool) -> None:
    """Resume suspended JOBs (Resume-Job): they go on from their checkpoint."""
    fleet = state.fleet
    done = fleet.resume(fleet.get(list(jobs)))
    fmt.print_jobs([j.info for j in done], as_json)


def ask_on_terminal(fleet: Fleet, job: Job) -> bool:
    """For invoke: show what the job's children ask; on a terminal, ask the person and answer.

    Returns:
        True when an answer was given here (the caller follows the job again); False when
        it asks nothing, or stdin is not a terminal (the question was printed: another
        console may answer, or Ctrl-C stops the job).
    """
    info = fleet.info(job)
    asking = info.asking
    if not asking:
        return False
    print_questions([info], err=True)
    if not sys.stdin.isatty():
        return False
    by_question: dict[str, list[JobInfo]] = {}
    for child in asking:  # one question asked once, its answer given to each child asking it
        by_question.setdefault(str((child.prompt or {}).get("question", "")), []).append(child)
    for question, children in by_question.items():
        prompt = children[0].prompt or {}
        choices = prompt.get("choices")
        label = fmt.printable(question + (f" [{'/'.join(choices)}]" if choices else ""))
        while True:
            try:
                text = click.prompt(label, default=prompt.get("default"), err=True)
            except click.exceptions.Abort as exc:
                # click makes a Ctrl-C (or SIGTERM, SIGHUP: interrupts.Terminated) at its
                # prompt an Abort: the caller cleans up after an interrupt, not an Abort
                if isinstance(exc.__context__, KeyboardInterrupt):
                    raise exc.__context__ from None
                if isinstance(exc.__context__, EOFError):  # Ctrl-D: no answer from here
                    click.echo(
                        f"fleetjobs: no answer given here: {_how_to_answer(children)}", err=True
                    )
                    return False
                raise
            try:
                for child in children:  # as shown: an answer to a later question is refused
                    try:
                        fleet.control.answer([child], str(text))
                    except JobStateError as exc:  # answered meanwhile elsewhere
                        click.echo(f"fleetjobs: {fmt.output_text(str(exc))}", err=True)
                break
            except ArgumentError as exc:  # not one of its answers: ask again
                click.echo(f"fleetjobs: {exc}", err=True)
    return True
