"""Local throttled parallel loops: the counterpart of PowerShell's ``ForEach-Object -Parallel``.

``parallel`` runs a function over items in threads of this process, at most ``throttle_limit``
at a time, and answers one ``ItemResult`` per item in input order: its value, the exception it
raised, or that it ran past its per-item timeout. It is meant for short, data-heavy loops on the
machine you are on (fanning out to hosts is the job machinery's business, not this module's). A
thread cannot be killed, so an item that times out is abandoned: its daemon thread keeps running
until the function returns, its late result is thrown away, and its slot is handed to the next
item. Daemon threads keep an abandoned item from holding the interpreter open at exit. The module
uses only the standard library and nothing else from the project.
"""

from __future__ import annotations

import math
import reprlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from .errors import ArgumentError, FleetJobsError

__all__ = ["ItemResult", "ParallelError", "parallel", "parallel_values"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ItemResult(Generic[R]):
    """What became of one item of a ``parallel`` run.

    Attributes:
        item: The input item, as given (typed ``Any`` so the result keeps one type parameter).
        value: What the function returned; None if it raised or timed out.
        error: The exception the function raised, or None.
        timed_out: True if the item ran longer than the per-item timeout and was abandoned.
    """

    item: Any
    value: R | None = None
    error: BaseException | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True if the function returned normally within its time."""
        return self.error is None and not self.timed_out


class ParallelError(FleetJobsError):
    """Some items of a ``parallel_values`` run failed or timed out.

    The message is the only constructor argument that is required, so the error survives being
    pickled or rebuilt from its message by a task queue (``failures`` is then empty).

    Attributes:
        failures: The failed ``ItemResult`` objects, in input order.
    """

    def __init__(self, message: str, failures: Sequence[ItemResult[Any]] = ()) -> None:
        """Build the error.

        Args:
            message: The summary, naming how many items failed and timed out.
            failures: The failed results, in input order.
        """
        super().__init__(message)
        self.failures = list(failures)


def _failure_summary(failures: Sequence[ItemResult[Any]], total: int) -> str:
    """Say how many of ``total`` items failed, how, and what the first failure was."""
    raised = sum(1 for failure in failures if failure.error is not None)
    first = failures[0]
    cause = "timed out" if first.timed_out else f"raised {first.error!r}"
    return (
        f"{len(failures)} of {total} item(s) failed ({raised} raised, "
        f"{len(failures) - raised} timed out); first: item {reprlib.repr(first.item)} {cause}"
    )


class _Worker:
    """One pool thread and the item it is running (guarded by the run's condition)."""

    def __init__(self) -> None:
        self.index: int | None = None
        self.started = 0.0
        self.abandoned = False


class _Run(Generic[T, R]):
    """The shared state of one ``parallel`` call: a queue index, results, and live workers."""

    def __init__(self, fn: Callable[[T], R], items: list[T], timeout: float | None) -> None:
        self.fn = fn
        self.items = items
        self.timeout = timeout
        self.results: list[ItemResult[R] | None] = [None] * len(items)
        self.cond = threading.Condition()
        self.next_index = 0
        self.done = 0
        self.cancelled = False
        self.workers: list[_Worker] = []

    def start_worker(self) -> None:
        """Start one more daemon pool thread (caller holds ``cond``)."""
        worker = _Worker()
        self.workers.append(worker)
        thread = threading.Thread(
            target=self._work, args=(worker,), name="fleetjobs-parallel", daemon=True
        )
        thread.start()

    def _work(self, worker: _Worker) -> None:
        """Take items off the shared index until none are left or this worker is abandoned."""
        while True:
            with self.cond:
                if worker.abandoned or self.cancelled or self.next_index >= len(self.items):
                    return
                index = worker.index = self.next_index
                self.next_index += 1
                # The per-item clock starts here, when the item runs, not when it was queued.
                worker.started = time.monotonic()
                self.cond.notify_all()
            item = self.items[index]
            result: ItemResult[R]
            try:
                result = ItemResult(item=item, value=self.fn(item))
            except BaseException as exc:  # the caller gets every failure back, per item
                result = ItemResult(item=item, error=exc)
            with self.cond:
                if worker.abandoned:
                    return  # already reported as timed out; the late answer is dropped
                self.results[index] = result
                worker.index = None
                self.done += 1
                self.cond.notify_all()

    def wait(self) -> list[ItemResult[R]]:
        """Block until every item has a result, abandoning the ones past their timeout."""
        with self.cond:
            try:
                while True:
                    # Expiring may settle the last item, so test for completion after it.
                    delay = self._expire_overdue()
                    if self.done >= len(self.items):
                        break
                    self.cond.wait(delay)
            finally:
                # On an interrupt, the pool stops taking new items (running ones cannot stop).
                self.cancelled = True
        return [cast(ItemResult[R], result) for result in self.results]

    def _expire_overdue(self) -> float | None:
        """Report overdue items as timed out and hand their slots on (caller holds ``cond``).

        Returns:
            Seconds until the next running item is due, or None if nothing can time out.
        """
        if self.timeout is None:
            return None
        now = time.monotonic()
        next_due: float | None = None
        for worker in list(self.workers):
            if worker.index is None:
                continue
            due = worker.started + self.timeout
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            worker.abandoned = True
            self.workers.remove(worker)
            self.results[worker.index] = ItemResult(item=self.items[worker.index], timed_out=True)
            self.done += 1
            if self.next_index < len(self.items):
                self.start_worker()
        return None if next_due is None else max(0.0, next_due - now)


def parallel(
    fn: Callable[[T], R],
    items: Iterable[T],
    throttle_limit: int = 5,
    timeout: float | None = None,
) -> list[ItemResult[R]]:
    """Run ``fn`` over ``items`` in at most ``throttle_limit`` threads; one result per item.

    ``items`` is read in full before anything starts. An exception from ``fn`` is captured in
    that item's result and the other items still run. An item running longer than ``timeout``
    seconds (counted from when it starts, not when it was queued) is reported with
    ``timed_out=True`` and abandoned: its daemon thread runs on until ``fn`` returns, its result
    is discarded, and its slot goes to the next item, so an abandoned call may still be running
    next to ``throttle_limit`` new ones.

    Args:
        fn: The function to call with each item.
        items: The items; any iterable.
        throttle_limit: How many items may run at once (at least 1).
        timeout: Per-item limit in seconds, or None to wait as long as it takes.

    Returns:
        One ``ItemResult`` per item, in input order.

    Raises:
        ArgumentError: If ``throttle_limit`` is below 1 or ``timeout`` is not a positive
            number (a ValueError, and a FleetJobsError like every error fleetjobs raises).
    """
    if isinstance(throttle_limit, bool) or not isinstance(throttle_limit, int):
        raise ArgumentError(f"throttle_limit must be an integer >= 1, got {throttle_limit!r}")
    if throttle_limit < 1:
        raise ArgumentError(f"throttle_limit must be >= 1, got {throttle_limit}")
    # NaN fails the > test, so it is refused along with zero and negative limits.
    if timeout is not None and not timeout > 0:
        raise ArgumentError(
            f"timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    # Condition.wait cannot take an infinite delay; an infinite limit is simply no limit.
    run = _Run(fn, list(items), None if timeout == math.inf else timeout)
    if not run.items:
        return []
    with run.cond:
        for _ in range(min(throttle_limit, len(run.items))):
            run.start_worker()
    return run.wait()


def parallel_values(
    fn: Callable[[T], R],
    items: Iterable[T],
    throttle_limit: int = 5,
    timeout: float | None = None,
) -> list[R]:
    """Like ``parallel``, but answer the plain values and raise if any item failed.

    All items run to completion (or timeout) before anything is raised.

    Args:
        fn: The function to call with each item.
        items: The items; any iterable.
        throttle_limit: How many items may run at once (at least 1).
        timeout: Per-item limit in seconds, or None to wait as long as it takes.

    Returns:
        The values ``fn`` returned, in input order.

    Raises:
        ParallelError: If any item raised or timed out; it carries every failed result and is
            chained from the first exception raised, if any.
        ValueError: As ``parallel``.
    """
    results = parallel(fn, items, throttle_limit=throttle_limit, timeout=timeout)
    failures: list[ItemResult[Any]] = [result for result in results if not result.ok]
    if failures:
        first_error = next((f.error for f in failures if f.error is not None), None)
        raise ParallelError(_failure_summary(failures, len(results)), failures) from first_error
    return [cast(R, result.value) for result in results]
