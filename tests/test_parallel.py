"""Stories for ``parallel``: the local ``ForEach-Object -Parallel`` of fleetjobs."""

from __future__ import annotations

import threading
import time

import pytest

from fleetjobs import ArgumentError
from fleetjobs.parallel import ItemResult, ParallelError, parallel, parallel_values

# Waits that only end early when something is broken; generous for loaded 2-core machines.
PATIENCE = 30.0


def test_results_come_back_in_input_order_even_when_items_finish_out_of_order() -> None:
    # given three items where the first may only finish after the last one has
    last_done = threading.Event()

    def work(n: int) -> int:
        if n == 0:
            assert last_done.wait(PATIENCE)
        if n == 2:
            last_done.set()
        return n * 10

    # when they run side by side
    results = parallel(work, [0, 1, 2], throttle_limit=3)

    # then the answers line up with the inputs, not with the finishing order
    assert [r.item for r in results] == [0, 1, 2]
    assert [r.value for r in results] == [0, 10, 20]
    assert all(r.ok for r in results)


def test_the_throttle_limit_is_reached_but_never_exceeded() -> None:
    # given 21 items that can only get past a barrier in groups of exactly three
    lock = threading.Lock()
    running = peak = 0
    barrier = threading.Barrier(3, timeout=PATIENCE)

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            barrier.wait()
            return n
        finally:
            with lock:
                running -= 1

    # when they run with a throttle of three
    results = parallel(work, range(21), throttle_limit=3)

    # then three ran at once at some point, never more, and every item got done
    assert peak == 3
    assert [r.value for r in results] == list(range(21))


def test_an_item_that_raises_is_reported_and_the_others_still_run() -> None:
    # given a function that fails on one item
    def work(n: int) -> int:
        if n == 2:
            raise ValueError("bad item 2")
        return n + 100

    # when it runs over five items
    results = parallel(work, range(5), throttle_limit=2)

    # then that item carries its error and every other item has its value
    failed = results[2]
    assert not failed.ok
    assert isinstance(failed.error, ValueError)
    assert str(failed.error) == "bad item 2"
    assert failed.value is None and not failed.timed_out
    assert [r.value for i, r in enumerate(results) if i != 2] == [100, 101, 103, 104]
    assert all(r.ok for i, r in enumerate(results) if i != 2)


def test_a_hung_item_times_out_without_holding_up_the_others_or_the_caller() -> None:
    # given one item that hangs until released, and quick items sharing the other slot
    release = threading.Event()
    quick_ones_done = threading.Event()
    seen: dict[str, bool] = {}
    lock = threading.Lock()
    finished_quick = 0

    def work(item: str) -> str:
        nonlocal finished_quick
        if item == "hang":
            seen["quick_done_while_hung"] = quick_ones_done.wait(PATIENCE)
            seen["daemon"] = threading.current_thread().daemon
            release.wait(PATIENCE)
            return "too late"
        with lock:
            finished_quick += 1
            if finished_quick == 5:
                quick_ones_done.set()
        return item.upper()

    # when they run with a per-item timeout
    started = time.monotonic()
    try:
        results = parallel(work, ["hang", "a", "b", "c", "d", "e"], throttle_limit=2, timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        release.set()

    # then the hung item is reported as timed out and the quick ones all succeeded
    hung = results[0]
    assert hung.timed_out and not hung.ok
    assert hung.error is None and hung.value is None
    assert [r.value for r in results[1:]] == ["A", "B", "C", "D", "E"]
    # and the quick items finished while the hung one was still running, in a daemon thread
    assert seen == {"quick_done_while_hung": True, "daemon": True}
    # and the caller did not wait for the hung thread (it was only released afterwards)
    assert elapsed < PATIENCE / 2


def test_a_timed_out_item_hands_its_slot_to_the_next_one() -> None:
    # given a throttle of one and a first item that hangs
    release = threading.Event()

    def work(item: str) -> str:
        if item == "hang":
            release.wait(PATIENCE)
        return item * 2

    # when the hung item times out
    try:
        results = parallel(work, ["hang", "a", "b"], throttle_limit=1, timeout=0.5)
    finally:
        release.set()

    # then the queue behind it still ran to the end
    assert [r.timed_out for r in results] == [True, False, False]
    assert [r.value for r in results[1:]] == ["aa", "bb"]


def test_the_timeout_clock_starts_when_an_item_starts_not_when_it_was_queued() -> None:
    # given six items of 0.25 s run one at a time, 1.5 s in all
    def work(n: int) -> int:
        time.sleep(0.25)
        return n

    # when each is allowed 1 s (the later ones would be late if queueing time counted)
    results = parallel(work, range(6), throttle_limit=1, timeout=1.0)

    # then none of them timed out
    assert [r.timed_out for r in results] == [False] * 6
    assert [r.value for r in results] == list(range(6))


def test_a_throttle_limit_below_one_is_refused() -> None:
    # given / when / then: a throttle that could never run anything is an error up front
    with pytest.raises(ArgumentError, match="throttle_limit"):
        parallel(str, [1, 2], throttle_limit=0)


def test_a_timeout_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ArgumentError, match="timeout"):
        parallel(str, [1], timeout=0)


def test_no_items_give_no_results() -> None:
    assert parallel(str, []) == []


def test_any_iterable_is_accepted_including_a_generator() -> None:
    # given items coming from a generator
    items = (n for n in range(4))

    # when they are processed
    values = parallel_values(lambda n: n * n, items, throttle_limit=2)

    # then every item was seen once, in order
    assert values == [0, 1, 4, 9]


def test_parallel_values_gives_the_plain_values_when_everything_worked() -> None:
    assert parallel_values(str.upper, ["a", "b", "c"]) == ["A", "B", "C"]


def test_parallel_values_raises_one_error_carrying_every_failure() -> None:
    # given a function that fails on the odd items
    def work(n: int) -> int:
        if n % 2:
            raise RuntimeError(f"odd {n}")
        return n

    # when the values are asked for
    with pytest.raises(ParallelError) as caught:
        parallel_values(work, range(5), throttle_limit=2)

    # then the error says how many failed, carries them all, and chains the first one
    error = caught.value
    assert "2 of 5 item(s) failed (2 raised, 0 timed out)" in str(error)
    assert [f.item for f in error.failures] == [1, 3]
    assert all(isinstance(f, ItemResult) and not f.ok for f in error.failures)
    assert isinstance(error.__cause__, RuntimeError)
    assert str(error.__cause__) == "odd 1"


def test_parallel_values_counts_a_timeout_as_a_failure() -> None:
    release = threading.Event()

    def work(n: int) -> int:
        if n == 1:
            release.wait(PATIENCE)
        return n

    try:
        with pytest.raises(
            ParallelError, match=r"1 of 3 item\(s\) failed \(0 raised, 1 timed out\)"
        ):
            parallel_values(work, range(3), throttle_limit=3, timeout=0.5)
    finally:
        release.set()
