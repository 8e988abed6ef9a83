"""The relay's turns, driven by hand on a real Redis: what a location's costly requests do to
the batch the relay takes, and how it comes back once they are served.

What a request costs is the one thing set here (each waits as long as the test says, in
place of a script): the rest is the relay's own loop on the lists a fleet's Redis holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from fleetjobs import Config
from fleetjobs.relay import TURN_SECONDS, Relay
from fleetjobs.store import Store

from .conftest import uniq


class Paced(Relay):
    """A relay whose requests take the time named in them, and which notes, as it serves
    each, how many of its location's requests are still on the list."""

    def __init__(self, store: Store, slow: float) -> None:
        super().__init__(store)
        self.slow = slow
        self.seen: list[tuple[str, int]] = []

    def serve(self, location: str, raw: str) -> None:
        self.seen.append((raw, int(self.r.llen(self.keys.relay(location)))))
        if raw.startswith("slow"):
            time.sleep(self.slow)


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    store = Store.connect(Config(redis_url=redis_url, prefix=f"{uniq('rt')}:"))
    yield store
    store.close()


def test_costly_requests_wait_on_their_list_and_cheap_ones_get_whole_batches_again(
    store: Store,
) -> None:
    relay = Paced(store, slow=TURN_SECONDS + 0.05)
    loc = "web01"
    # given a location's list: three requests that each outlast a turn, then 40 cheap ones
    requests = [f"slow{i}" for i in range(3)] + [f"fast{i}" for i in range(40)]
    store.r.rpush(store.keys.relay(loc), *requests)
    store.r.lpush(store.keys.bell, loc)
    turns = []
    while len(relay.seen) < len(requests) and len(turns) < 20:
        turns.append(relay.step(timeout=0.1))
    # then every request was served once, in the order it came
    assert [raw for raw, _ in relay.seen] == requests
    # the first turn took a whole batch and served one; each later slow request was the only
    # one in the relay's hands: the rest waited on the list, where an operator (or a second
    # relay) sees them
    waiting = {raw: on_list for raw, on_list in relay.seen}
    assert turns[:3] == [1, 1, 1]
    assert waiting["slow1"] == len(requests) - 2 and waiting["slow2"] == len(requests) - 3
    # and once the slow ones were served, a cheap turn set the batch back at once: the 40
    # cheap requests took two turns (one, then the other 39 in one batch; a third if this
    # machine stalled a whole turn), not one each nor a climb back by doubling
    assert turns[3] == 1 and len(turns[3:]) <= 3 and sum(turns[3:]) == 40, turns


def test_a_request_nested_too_deep_to_read_is_dropped_and_its_turn_goes_on(store: Store) -> None:
    # given a location's list (its worker's credential may write anything there): JSON nested
    # deeper than Python reads, then requests after it in the same batch
    relay = Relay(store)
    loc = "web01"
    junk = ["[" * 100_000, "not json", '{"id": "../x", "op": "script", "args": []}']
    store.r.rpush(store.keys.relay(loc), *junk)
    store.r.lpush(store.keys.bell, loc)
    # then one turn drops each (the relay's step does not raise), none is left on the list or
    # in the relay's hands, and no answer is written for any of them
    assert relay.step(timeout=0.1) == len(junk)
    assert store.r.llen(store.keys.relay(loc)) == 0
    assert not list(store.r.scan_iter(store.keys.relay_answer(loc, "*")))


def test_rings_and_requests_that_are_not_utf8_cost_no_location_its_turn(store: Store) -> None:
    # given a stolen credential's junk: a ring that is not UTF-8 on the bell, and requests
    # that are not on its own list; and another location's requests waiting behind them
    relay = Relay(store)
    raw = redis.Redis.from_url(store.config.redis_url)  # bytes, as the credential writes
    try:
        raw.rpush(store.keys.relay("web01"), *[b"\xff\xfe"] * 150)
        raw.rpush(store.keys.relay("web02"), b"not json", b"[]")
        raw.lpush(store.keys.bell, b"\xff", b"web01", b"web02", b"\xc3")
        # then the relay's steps raise nothing and serve every location: the junk is
        # dropped as malformed, web02's turn comes in the first round
        served = [relay.step(timeout=0.1) for _ in range(3)]
        assert sum(served) == 152, served
        assert raw.llen(store.keys.relay("web01")) == 0
        assert raw.llen(store.keys.relay("web02")) == 0
    finally:
        raw.close()
