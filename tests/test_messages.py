"""The task messages a console makes without Celery are Celery's own, field for field.

An unsigned fleet's console makes its children's messages and task-sent events by hand
(:mod:`fleetjobs.messages`), so that a start does not import Celery. These tests hold them to
what Celery's ``send_task`` makes for the same children in the same process (the path a
signed fleet still takes), so a Celery upgrade that changes its protocol fails here; and they
check that a start really leaves Celery unimported and that its job runs.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest

from fleetjobs import Config, Fleet
from fleetjobs.lifecycle import JobSpec, NewChild

# what differs from one making to the next by nature: random tags, clocks, times
RANDOM_PROPERTIES = ("delivery_tag", "reply_to")


def _decode(envelope: str) -> dict[str, Any]:
    message = json.loads(envelope)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for name in RANDOM_PROPERTIES:
        assert message["properties"].pop(name)  # present, not empty
    return message


def _expiry(message: dict[str, Any]) -> tuple[float | None, float | None]:
    """The headers' ``expires`` (as a timestamp) and the ``expiration`` property (ms),
    taken out of the message: each is "now + the start timeout", made a moment apart."""
    expires = message["headers"].pop("expires")
    ms = message["properties"].pop("expiration", None)
    stamp = datetime.fromisoformat(expires).timestamp() if expires else None
    return stamp, (float(ms) if ms is not None else None)


def _close(a: float | None, b: float | None, within: float) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < within)


def _made(config: Config) -> tuple[Any, Any]:
    spec = JobSpec("echo", ["x", 1], {}, "echo x 1", ["alpha", "beta", "gamma"], start_timeout=30.0)
    children = [
        NewChild(101, "11111111-2222-3333-4444-555555555555", "alpha", True),
        NewChild(102, "66666666-7777-8888-9999-000000000000", "beta", True),
        NewChild(103, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "gamma", False),  # throttled
    ]
    with Fleet(config=config) as fleet:
        ours = fleet.dispatcher.compose(spec, children, "Nightly")
        celerys = fleet.dispatcher.compose_with_celery(spec, children, "Nightly")
    return ours, celerys


def test_a_childs_message_is_the_one_celery_makes(config: Config) -> None:
    ours, celerys = _made(config)
    assert len(ours.messages) == len(celerys.messages) == 3
    for mine, theirs in zip(ours.messages, celerys.messages, strict=True):
        a, b = _decode(mine), _decode(theirs)
        (a_at, a_ms), (b_at, b_ms) = _expiry(a), _expiry(b)
        assert _close(a_at, b_at, 2.0) and _close(a_ms, b_ms, 2000.0)
        # the rest is equal, in Celery's order (headers, properties, body)
        assert list(a) == list(b)
        assert list(a["headers"].items()) == list(b["headers"].items())
        assert list(a["properties"].items()) == list(b["properties"].items())
        assert a == b
    first = _decode(ours.messages[0])
    assert first["body"] == [
        [101],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    assert first["headers"]["shadow"] == "Nightly@alpha"
    assert first["properties"]["delivery_info"]["routing_key"] == "fleetjobs.loc.alpha"
    # a throttled child's message is kept for its release: its start timeout counts from then
    assert _decode(ours.messages[2])["headers"]["expires"] is None


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_a_task_sent_event_is_the_one_celery_publishes(
    config: Config, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a console's time zone is in each event (Flower corrects its timestamps with it)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        ours, celerys = _made(config)
    finally:
        monkeypatch.undo()
        time.tzset()
    # one event per queued child (the throttled one gets its own when it is released)
    assert len(ours.events) == len(celerys.events) == 2
    for (my_topic, mine), (their_topic, theirs) in zip(ours.events, celerys.events, strict=True):
        assert my_topic == their_topic == "/0.celeryev/task.sent"
        a, b = json.loads(mine), json.loads(theirs)
        body_a = json.loads(base64.b64decode(a.pop("body")))
        body_b = json.loads(base64.b64decode(b.pop("body")))
        for envelope in (a, b):
            assert envelope["properties"].pop("delivery_tag")
        # the one difference: the console's node name is the machine's (Flower counts its
        # metrics and lists its workers by it), where Celery's is the process's, gen<pid>@host
        console = f"fleetjobs-console@{socket.gethostname()}"
        assert a["headers"].pop("hostname") == console
        assert b["headers"].pop("hostname") == f"gen{os.getpid()}@{socket.gethostname()}"
        assert body_a.pop("hostname") == console and body_b.pop("hostname").startswith("gen")
        assert a == b and list(a["properties"]) == list(b["properties"])
        assert isinstance(body_a.pop("clock"), int) and isinstance(body_b.pop("clock"), int)
        assert abs(body_a.pop("timestamp") - body_b.pop("timestamp")) < 2.0
        at_a, at_b = body_a.pop("expires"), body_b.pop("expires")
        assert (
            abs(datetime.fromisoformat(at_a).timestamp() - datetime.fromisoformat(at_b).timestamp())
            < 2.0
        )
        assert list(body_a.items()) == list(body_b.items())
        assert body_a["type"] == "task-sent" and body_a["name"].startswith("Nightly@")


def test_the_database_number_is_in_the_event_channel(redis_url: str) -> None:
    other = Config(redis_url=redis_url.rsplit("/", 1)[0] + "/3", prefix="t-db3:")
    ours, celerys = _made(other)
    assert [t for t, _ in ours.events] == [t for t, _ in celerys.events]
    assert ours.events[0][0] == "/3.celeryev/task.sent"


def test_a_start_does_not_import_celery_and_its_job_runs(config: Config, workers: Any) -> None:
    code = (
        "import sys\n"
        "from fleetjobs import Config, Fleet\n"
        f"cfg = Config(redis_url={config.redis_url!r}, prefix={config.prefix!r})\n"
        "with Fleet(config=cfg) as fleet:\n"
        "    job = fleet.start('echo', 'made by hand', locations='alpha,beta')\n"
        "    print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')))\n"
        "    print(job.id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules, job_id = done.stdout.splitlines()
    assert modules == "[]"
    with Fleet(config=config) as fleet:
        (job,) = fleet.wait([int(job_id)], timeout=30)
        assert job.state.value == "Completed"
        assert sorted(fleet.receive(job)) == ["made by hand", "made by hand"]
