"""What an action does to talk with a person: ask a question (Blocked) and mark safe points
where its job may be suspended (Suspended).

:class:`Interaction` is a part of :class:`~fleetjobs.workers.context.JobContext`:

- ``ctx.ask(question, choices=..., default=...)`` / ``ctx.confirm(question)``: the child turns
  Blocked with its question in the registry and waits until someone answers from any console
  (``fleetjobs answer JOB ANSWER``), its job is stopped, or the job's prompt timeout passes
  (then the start's ``--default-answer``, else the question's own default, else the job fails
  with a Reason that names the question).
- ``ctx.checkpoint()``: a safe point. If a suspend was asked the child turns Suspended and
  holds here, in its pool process (the slot stays taken: the action's own state lives in that
  process's stack), until it is resumed or stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from fleetjobs.errors import ActionError
from fleetjobs.lifecycle import ANSWERED, Lifecycle
from fleetjobs.model import JobInfo, canonical_choice
from fleetjobs.registry import Registry
from fleetjobs.states import JobState

T = TypeVar("T")
HOLD_POLL = 0.25  # seconds between looks at the registry while Blocked or Suspended
# a checkpoint reads the registry when the job's watcher heard its state change (a suspend
# asked), else at most this often (a message missed): not twice a second for every sleep
CHECK_EVERY = 5.0
YES, NO = "yes", "no"


class Interaction:
    """Questions and checkpoints of one running child (mixed into the job context)."""

    job_id: int
    stop_event: threading.Event
    stop_reason: str
    _info: JobInfo
    _lifecycle: Lifecycle
    _registry: Registry | None = None
    _poked: threading.Event  # the job's state changed since the last checkpoint read it
    _looked: float = 0.0  # when a checkpoint last read the registry (monotonic)
    # set by the runtime: publishes children a state change released (a throttle's next)
    release_due: Callable[[list[int]], None] = staticmethod(lambda due: None)

    # the context's own: write a record, raise JobStopped if stopped, set the stop flag,
    # and retry a Redis call through a short outage
    def _write(self, stream: str, data: Any) -> None:
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def request_stop(self, reason: str) -> None:
        raise NotImplementedError

    def _persist(self, call: Callable[[], T]) -> T:
        raise NotImplementedError

    # ---- Blocked ------------------------------------------------------------------------

    def ask(
        self, question: str, choices: Sequence[str] | None = None, default: str | None = None
    ) -> str:
        """Ask a person and wait for the answer (the job is Blocked meanwhile).

        Args:
            question: what to ask, one line.
            choices: the answers allowed (a console refuses others); None allows any text.
            default: the answer when the job's prompt timeout passes and its start gave no
                ``--default-answer``.

        Returns:
            The answer (one of ``choices`` if given).

        Raises:
            JobStopped: the job was stopped while it asked.
            ActionError: nobody answered within the prompt timeout and there is no default.
        """
        default = None if default is None else str(default)  # ask(default=True) as text
        prompt = {
            "question": str(question),
            "choices": [str(c) for c in choices] if choices else None,
            "default": default,
        }
        self.check()
        self._write("question", prompt)
        state, seq = self._persist(lambda: self._lifecycle.ask(self.job_id, prompt))
        if state != JobState.BLOCKED.value:
            self._end_if_stopped(state)
            self._stopped(f"the job is {state}")
        timeout = self._info.prompt_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stop_event.wait(HOLD_POLL):
                self._stopped("stopped")
            now = self._control()
            self._end_if_stopped(now["state"])
            if now["pseq"] == str(seq) and now["state"] != JobState.BLOCKED.value:
                return now["answer"] or ""
            if deadline is not None and time.monotonic() >= deadline:
                given = self._info.default_answer
                answer = default if given is None else given
                if answer is None:
                    raise ActionError(
                        f"nobody answered {prompt['question']!r} within {_secs(timeout)} s "
                        "and it has no default answer"
                    )
                # as `fleetjobs answer` takes it: y is yes, and an answer outside the
                # choices is none (taken raw, 'y' was no to confirm(), 'sdz' a disk)
                allowed = [str(c) for c in choices] if choices else None
                chosen = canonical_choice(allowed, answer)
                if chosen is None:
                    raise ActionError(
                        f"nobody answered {prompt['question']!r} within {_secs(timeout)} s, "
                        f"and the default answer {answer!r} is not one of its answers "
                        f"({', '.join(allowed or ())})"
                    )
                answer = chosen
                fallback = answer
                got = self._persist(
                    lambda: self._lifecycle.answer(self.job_id, fallback, seq)  # noqa: B023
                )
                if got == ANSWERED:
                    self._write(
                        "warning",
                        f"nobody answered {prompt['question']!r} within {_secs(timeout)} s: "
                        f"took the default answer {answer!r}",
                    )
                    return answer
                deadline = None  # a person answered meanwhile: the next look reads it

    def confirm(self, question: str, default: bool | None = None) -> bool:
        """Ask a yes/no question (``ShouldContinue``); True when the answer is yes."""
        fallback = None if default is None else (YES if default else NO)
        return self.ask(question, choices=(YES, NO), default=fallback) == YES

    # ---- Suspended ----------------------------------------------------------------------

    def poke(self) -> None:
        """The job's state changed (its watcher heard it): the next checkpoint looks."""
        self._poked.set()

    def checkpoint(self) -> float:
        """A safe point: end here if stopped; hold here while the job is suspended.

        Returns:
            The seconds it held (0.0 when no suspend was asked).
        """
        self.check()
        if not self._poked.is_set() and time.monotonic() - self._looked < CHECK_EVERY:
            return 0.0
        self._poked.clear()  # before the read: a change during it is looked at next time
        self._looked = time.monotonic()
        now = self._control()
        self._end_if_stopped(now["state"])
        if now["suspend"] not in ("1", "2"):
            return 0.0
        started = time.monotonic()
        state, due = self._persist(lambda: self._lifecycle.park(self.job_id))
        self.release_due(due)
        if state != JobState.SUSPENDED.value:
            self._end_if_stopped(state)
            return 0.0
        while True:
            if self.stop_event.wait(HOLD_POLL):
                self._stopped("stopped")
            now = self._control()
            self._end_if_stopped(now["state"])
            if now["suspend"] is None:
                return time.monotonic() - started

    # ---- helpers ------------------------------------------------------------------------

    def _control(self) -> dict[str, str | None]:
        if self._registry is None:
            self._registry = Registry(self._lifecycle.store)
        registry = self._registry
        return dict(self._persist(lambda: registry.control(self.job_id)))

    def _end_if_stopped(self, state: str | None) -> None:
        """End the action (JobStopped) if the job was stopped, settled without it, or removed."""
        if state is None or state == "Missing":
            self._stopped("the job was removed while it ran")
        elif state == JobState.STOPPING.value or JobState(state).finished:
            self._stopped("stopped by user")

    def _stopped(self, reason: str) -> NoReturn:
        self.request_stop(reason)  # sets the flag (the first reason given stays)
        self.check()
        raise AssertionError("check() raises once the stop flag is set")


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)
