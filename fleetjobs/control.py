"""Job control from a console: stop, answer a Blocked job, suspend and resume at checkpoints.

The verbs behind ``Fleet.stop/answer/suspend/resume`` and the rule ``wait`` applies to jobs that
can only end by an answer. Each works on snapshots the facade read and changes the registry
through :mod:`fleetjobs.lifecycle` (one script per change), so any console may do it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import options
from .errors import ArgumentError, JobBlockedError, JobStateError, NotRemovedError
from .hosts import Hosts
from .lifecycle import ANSWERED, Lifecycle
from .model import JobInfo, canonical_choice
from .monitor import announce_ended
from .refs import parse_state
from .states import JobState

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .events import JobEvents
    from .job import Job, JobRefs
    from .registry import Registry

# states a job holds in until a person acts: wait and receive --wait stop at them
HELD = frozenset({JobState.SUSPENDED, JobState.DISCONNECTED})


def question_line(child: JobInfo) -> str:
    """``job 6 on alpha asks: 'Delete...?' [yes/no]`` for a Blocked child."""
    prompt = child.prompt or {}
    choices = prompt.get("choices")
    tail = f" [{'/'.join(choices)}]" if choices else ""
    default = prompt.get("default")
    if default is not None:
        tail += f" (default {default})"
    return f"job {child.id} on {child.location} asks: {prompt.get('question', '?')!r}{tail}"


def blocked_error(info: JobInfo) -> JobBlockedError:
    """Why a wait on ``info`` cannot end by itself, and how to go on."""
    asking = info.asking
    lines = "; ".join(question_line(c) for c in asking[:3])
    more = f" and {len(asking) - 3} more" if len(asking) > 3 else ""
    example = _example_answer(asking[0]) if asking else "ANSWER"
    return JobBlockedError(
        f"job {info.id} ({info.name}) is Blocked and can only go on with an answer: {lines}{more}"
        f" — answer with: fleetjobs answer {info.id} {example}"
    )


def deadlocked(blocked: Sequence[JobInfo], needed: int) -> None:
    """Raise :class:`JobBlockedError` if at least ``needed`` of these Blocked jobs can only go
    on with an answer (no prompt timeout will answer for them)."""
    stuck = [
        i
        for i in blocked
        if i.state is JobState.BLOCKED
        and i.asking  # read apart from its parent: a child answered meanwhile asks nothing
        and all(c.prompt_timeout is None for c in i.asking)
    ]
    if stuck and len(stuck) >= needed:
        raise blocked_error(stuck[0])


def _example_answer(child: JobInfo) -> str:
    choices = (child.prompt or {}).get("choices")
    return "|".join(choices) if choices else "ANSWER"


def canonical_answer(child: JobInfo, text: str) -> str:
    """``text`` as the choice it means (``Y`` -> ``yes``); any text when there are no choices.

    Raises:
        ArgumentError: the question has choices and ``text`` is none of them.
    """
    choices = (child.prompt or {}).get("choices")
    found = canonical_choice(choices, text)
    if found is not None:
        return found
    raise ArgumentError(
        f"{question_line(child)}: {text!r} is not one of its answers ({', '.join(choices or ())})"
    )


class Control:
    """Answer, suspend and resume, on one fleet's registry."""

    def __init__(self, lifecycle: Lifecycle, hosts: Hosts) -> None:
        self.lifecycle = lifecycle
        self.hosts = hosts

    def answer(self, infos: Sequence[JobInfo], text: str) -> list[int]:
        """Answer every asking child of these jobs; all must ask the same question.

        Returns:
            The ids of the children that took the answer.

        Raises:
            JobStateError: a job asks nothing, or its children ask different questions
                (the message says which child asks what); nothing was answered.
            ArgumentError: the answer is not one of the question's choices.
        """
        plan: list[tuple[JobInfo, str]] = []
        for info in infos:
            asking = info.asking
            if not asking:
                raise JobStateError(
                    f"job {info.id} ({info.name}) is {info.state.value}: it asks no question"
                )
            questions = {(c.prompt or {}).get("question") for c in asking}
            if len(questions) > 1:
                which = "; ".join(question_line(c) for c in asking)
                raise JobStateError(
                    f"the children of job {info.id} ask different questions: {which} — "
                    "answer each child by its Id"
                )
            plan.extend((c, canonical_answer(c, text)) for c in asking)
        answered, missed = [], []
        for child, value in plan:
            seq = (child.prompt or {}).get("seq")  # the question seen: not a later one
            got = self.lifecycle.answer(child.id, value, seq)
            if got == ANSWERED:
                answered.append(child.id)
            else:
                missed.append(f"job {child.id} ({child.name}) {_not_taken(got)}")
        if missed and not answered:  # two consoles answering: one answer is taken, once
            raise JobStateError("; ".join(missed))
        return answered

    def suspend(self, infos: Sequence[JobInfo]) -> None:
        """Ask every unfinished child of these jobs to hold at its next checkpoint.

        Raises:
            JobStateError: a job has finished, or its action has no checkpoints on a host
                that runs it (nothing was changed, for any job). A child waiting for a host
                no worker has served yet keeps the request: what it will offer is not known.
        """
        locations = sorted({c.location for i in infos for c in _unfinished(i)})
        offers = {h.location: set(h.suspendable) for h in self.hosts.list(locations)}
        for info in infos:
            kids = _unfinished(info)
            if not kids:
                raise JobStateError(
                    f"job {info.id} ({info.name}) is {info.state.value}: nothing to suspend"
                )
            for child in kids:
                if child.location not in offers and child.state is JobState.NOT_STARTED:
                    # a host no worker has served yet: what its worker will offer is not
                    # known; the request waits with the child, as on any host
                    continue
                if info.action not in offers.get(child.location, set()):
                    raise JobStateError(
                        f"job {info.id} ({info.name}) cannot be suspended: its action "
                        f"{info.action!r} has no checkpoints on {child.location} (an action "
                        "that calls ctx.checkpoint() declares @action(suspendable=True)); "
                        "nothing was changed"
                    )
        for info in infos:
            self.lifecycle.suspend(info.id)

    def resume(self, infos: Sequence[JobInfo]) -> None:
        """Let these suspended jobs go on.

        Raises:
            JobStateError: a job is neither suspended nor asked to be (nothing was changed).
        """
        holding = (JobState.SUSPENDED, JobState.SUSPENDING)
        for info in infos:
            members = info.children or (info,)
            if info.state not in holding and not any(c.state in holding for c in members):
                raise JobStateError(
                    f"job {info.id} ({info.name}) is {info.state.value}: it is not suspended"
                )
        for info in infos:
            self.lifecycle.resume(info.id)


def _unfinished(info: JobInfo) -> list[JobInfo]:
    return [c for c in (info.children or (info,)) if not c.finished]


class ControlVerbs:
    """The facade's stop, answer, suspend and resume (:class:`fleetjobs.Fleet` has them)."""

    control: Control
    registry: Registry
    lifecycle: Lifecycle
    dispatcher: Dispatcher

    def get(self, jobs: JobRefs | None = None, *, state: JobState | str | None = None) -> list[Job]:
        raise NotImplementedError

    def _snapshots(self, jobs: JobRefs, fresh: bool = False) -> list[JobInfo]:
        raise NotImplementedError

    def _states(self, ids: Sequence[int], gone_ok: bool = False) -> list[JobState | None]:
        raise NotImplementedError

    def _events(self, infos: Sequence[JobInfo], only: str | None = None) -> JobEvents:
        raise NotImplementedError

    def _handles(self, infos: Sequence[JobInfo]) -> list[Job]:
        raise NotImplementedError

    # the facade's wait (Fleet._wait): infos, timeout, any, gone_ok, force
    _wait: Callable[..., list[Job]]

    # ---- stop ---------------------------------------------------------------------------

    def stop(self, jobs: JobRefs, *, timeout: float | None = 5.0) -> list[Job]:
        """Stop the jobs (``Stop-Job``): queued ones never run, running ones end (within 2 s).

        The stop is a durable flag in the registry, so it holds even for a job whose worker is
        down now and picks it up later.

        Args:
            jobs: one reference or several.
            timeout: seconds to wait for the jobs to reach Stopped (None: as long as it
                takes, 0: do not wait).

        Returns:
            The jobs, as they are now.
        """
        timeout = options.seconds("timeout", timeout, zero=True)  # before anything changes
        infos = self._snapshots(jobs)
        due: list[int] = []
        for info in infos:
            due.extend(self.lifecycle.stop(info.id)[1])
        now = self.registry.load([i.id for i in infos])
        never = [
            c
            for info in now
            for c in info.children or (info,)
            if c.state is JobState.STOPPED and c.begin_time is None
        ]
        # lets a live worker drop the messages unseen; the registry's flag holds regardless
        self.dispatcher.revoke([c.instance_id for c in never])
        tasks = [c for c in never if c.parent_id is not None]  # children: Celery tasks
        if tasks:  # and Flower hears now of those whose host is down (they showed PENDING;
            # a live worker reports its own as it drops the message)
            where = sorted({c.location for c in tasks})
            live = {h.location for h in self.control.hosts.list(where) if h.online}
            down = [c for c in tasks if c.location not in live]
            if down:
                announce_ended(down, self.dispatcher.celery)
        if due:
            self.dispatcher.release(due)
        if timeout == 0:
            return self._handles(now)
        self._wait(now, timeout, any=False, gone_ok=True, force=True)
        return self._handles(self.registry.load([i.id for i in now]))

    # ---- answer, suspend, resume --------------------------------------------------------

    def answer(self, jobs: JobRefs, answer: str) -> list[Job]:
        """Answer the question a Blocked job asks (a parent: each child asking the same).

        Raises:
            JobStateError: a job asks nothing, or its children ask different questions.
            ArgumentError: the answer is not one of the question's choices.
        """
        infos = self._snapshots(jobs, fresh=True)
        self.control.answer(infos, answer)
        return self._handles(self.registry.load([i.id for i in infos]))

    def suspend(self, jobs: JobRefs, *, timeout: float | None = 5.0) -> list[Job]:
        """Suspend jobs at their next checkpoint (``Suspend-Job``); waits up to ``timeout``
        for them to hold (Suspending until then).

        Raises:
            JobStateError: a job has finished or its action has no checkpoints; nothing changed.
        """
        timeout = options.seconds("timeout", timeout, zero=True)  # before anything changes
        self.control.suspend(self._snapshots(jobs, fresh=True))
        return self._settling(jobs, JobState.SUSPENDING, timeout)

    def resume(self, jobs: JobRefs) -> list[Job]:
        """Resume suspended jobs (``Resume-Job``)."""
        self.control.resume(self._snapshots(jobs, fresh=True))
        return self._handles(self._snapshots(jobs, fresh=True))

    def _settling(self, jobs: JobRefs, passing: JobState, timeout: float | None) -> list[Job]:
        deadline = None if timeout is None else time.monotonic() + timeout
        infos = self._snapshots(jobs, fresh=True)
        with self._events(infos) as events:
            while any(s is passing for s in self._states([i.id for i in infos])):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                events.next(min(1.0, left or 1.0))
        return self._handles(self._snapshots(jobs, fresh=True))

    # ---- remove -------------------------------------------------------------------------

    def remove(
        self,
        jobs: JobRefs | None = None,
        *,
        force: bool = False,
        state: JobState | str | None = None,
        all_jobs: bool = False,
    ) -> list[Job]:
        """Remove jobs and everything they own (``Remove-Job``).

        Args:
            jobs: one reference or several; None with ``state`` removes every job in that
                state, None with ``all_jobs`` every job.
            force: stop unfinished jobs first instead of refusing them.
            state: only jobs in this state.
            all_jobs: every job (``remove --all``): asked for by name, so that a None where
                a job was expected (a skipped schedule run) removes nothing.

        Returns:
            The jobs removed.

        Raises:
            NotRemovedError: some jobs have not finished and ``force`` is off: the finished
                ones were removed (``.removed``), those not (``.kept``), as ``Get-Job |
                Remove-Job`` does.
            JobStateError: a child job named on its own while its parent exists (nothing
                was removed): a child goes with its parent.
        """
        want = parse_state(state)
        if jobs is None:
            if want is None and all_jobs is not True:
                raise ArgumentError("name the jobs to remove, a state=, or all_jobs=True")
            infos = [j.info for j in self.get(state=want)]
        else:
            infos = self._snapshots(jobs, fresh=True)
            if want is not None:
                infos = [i for i in infos if i.state is want]
            children = [i for i in infos if i.parent_id is not None]
            parents = self.registry.states([c.parent_id or 0 for c in children])
            for child, parent in zip(children, parents, strict=True):
                if parent is not None:
                    raise JobStateError(
                        f"job {child.id} is the part of job {child.parent_id} on "
                        f"{child.location}: a child job goes with its parent (remove job "
                        f"{child.parent_id})"
                    )
        running = [i for i in infos if not i.finished]
        if running and not force:
            done = [i for i in infos if i.finished]
            self.lifecycle.remove(done)
            first = running[0]
            more = f" and {len(running) - 1} more" if len(running) > 1 else ""
            raise NotRemovedError(
                f"job {first.id} ({first.name}) is {first.state.value}{more}: stop it first, "
                "or remove with force",
                done,
                running,
            )
        if running:
            self.stop(running, timeout=5.0)
            infos = self.registry.load([i.id for i in infos])
        self.lifecycle.remove(infos)
        return self._handles(infos)


def _not_taken(got: str) -> str:
    """Why an answer was not taken, from what the answer script found."""
    if got == "Stale":
        return "asks another question now: this answer was not taken"
    if got in (JobState.RUNNING.value, JobState.SUSPENDING.value, JobState.SUSPENDED.value):
        return f"was answered by someone else first (it is {got}): this answer was not taken"
    return f"is {got}: this answer was not taken"
