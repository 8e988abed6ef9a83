"""What an action's ``ctx`` offers, as a type an action module can annotate with
(``def disk_free(ctx: ActionContext, path: str = "/") -> dict[str, object]``), on the console
side: the worker's own context (``fleetjobs.workers.context.JobContext``) has it all, and an
action module imports nothing of the host side to be checked by ``mypy --strict``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any, Protocol


class ActionContext(Protocol):
    """The job an action runs for, on the host it runs on."""

    job_id: int
    name: str
    location: str
    instance_id: str

    def output(self, value: Any) -> None:
        """Write one value to the job's output (returned and yielded values go there too)."""

    def error(self, message: Any) -> None:
        """Write to the error stream (a non-terminating error: the job goes on)."""

    def warning(self, message: Any) -> None:
        """Write to the warning stream."""

    def verbose(self, message: Any) -> None:
        """Write to the verbose stream."""

    def debug(self, message: Any) -> None:
        """Write to the debug stream."""

    def information(self, message: Any) -> None:
        """Write to the information stream."""

    def write_many(self, stream: str, values: Sequence[Any]) -> None:
        """Write these values to one stream, in order, in as few writes as they allow."""

    def progress(self, percent: float, status: str = "") -> None:
        """Say how far the job is (0 to 100), with a status line."""

    @property
    def should_stop(self) -> bool:
        """True once the job is asked to stop: end soon (a stop that is ignored is forced)."""

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the job is stopped; suspendable while it sleeps."""

    def checkpoint(self) -> float:
        """A safe point: holds here while the job is suspended; returns the seconds held."""

    def ask(
        self, question: str, choices: Sequence[str] | None = None, default: str | None = None
    ) -> str:
        """Ask a person (the job is Blocked until someone answers from any console)."""

    def confirm(self, question: str, default: bool | None = None) -> bool:
        """Ask a yes/no question."""

    def register_process(self, proc: subprocess.Popen[Any]) -> None:
        """Kill this process's group when the job stops (start it with start_new_session)."""
