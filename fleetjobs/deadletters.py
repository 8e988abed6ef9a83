"""Dead letters: the messages a worker could not take as a job, kept for a person to look at.

A message on a location's queue that is not a fleetjobs job (a body that is not Celery's
``[args, kwargs, embed]``, JSON that does not parse, a content type other than JSON, missing
headers, an argument that is not a job Id, an envelope that is not even JSON) is acknowledged,
logged once and pushed here by the worker that met it, so one bad message never stops a
worker and nothing disappears without a trace. The list is bounded: the newest
:data:`LIMIT` are kept under the fleet's prefix (``deadletters``), newest first.

A confined worker's letters come through the relay, which keeps at most :data:`PER_HOST` of
one location's in an hour and counts the rest (:func:`dropped`): a stolen host credential
could otherwise push out every other host's letters with a thousand of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from .options import is_time
from .store import Store, guarded

LIMIT = 1000
BODY_LIMIT = 2000  # characters of a dead message's body kept: enough to recognise it
REASON_LIMIT = 500  # and of the reason its worker gave
PER_HOST = 100  # letters of one confined location kept per WINDOW (the relay's; more are counted)
WINDOW = 3600  # seconds


@dataclass(frozen=True)
class DeadLetter:
    """One message a worker refused.

    Attributes:
        at: when it was refused (Unix seconds).
        queue: the queue it came from; ``location`` the host that queue belongs to.
        reason: why it is not a job, in one line.
        worker: the worker that refused it.
        task, task_id: the Celery task name and id its headers claimed, if any.
        content_type: the content type it declared.
        body: its body as text, cut to :data:`BODY_LIMIT` characters.
    """

    at: float
    queue: str
    location: str
    reason: str
    worker: str = ""
    task: str = ""
    task_id: str = ""
    content_type: str = ""
    body: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> DeadLetter:
        """A stored letter; one damaged (written by hand) still reads, as far as it can."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):  # the last: nested too deep to read
            doc = {"reason": "this dead letter's record cannot be read", "body": text}
        return cls.checked(doc if isinstance(doc, dict) else {"body": text})

    @classmethod
    def checked(cls, doc: dict[str, Any]) -> DeadLetter:
        """A letter from a document whatever it holds: ``at`` a number (else 0), every other
        field text, the reason a line and the body cut as :func:`body_text` cuts it."""
        at = doc.get("at")
        ok = is_time(at)
        text = {k: doc.get(k) for k in cls.__dataclass_fields__ if k != "at"}
        fields = {k: v if isinstance(v, str) else "" for k, v in text.items()}
        fields["reason"] = fields["reason"][:REASON_LIMIT]
        fields["body"] = body_text(fields["body"])
        return cls(at=float(at) if ok else 0.0, **fields)  # type: ignore[arg-type]


def body_text(body: Any) -> str:
    """A message body as text for a person: bytes decoded leniently, cut to the limit."""
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = json.dumps(body, default=repr)
        except (TypeError, ValueError):
            text = repr(body)
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "..."


def key(store: Store) -> str:
    return store.keys.deadletters


@guarded
def push(store: Store, letter: DeadLetter) -> None:
    """Keep ``letter``, dropping the oldest beyond :data:`LIMIT`."""
    if store.relay is not None:  # a confined worker's (fleetjobs.relaycall)
        store.relay.call("deadletter", letter.to_dict())
        return
    pipe = store.r.pipeline(transaction=True)
    pipe.lpush(key(store), json.dumps(letter.to_dict(), separators=(",", ":")))
    pipe.ltrim(key(store), 0, LIMIT - 1)
    pipe.execute()


@guarded
def push_within_quota(store: Store, letter: DeadLetter) -> int:
    """Keep ``letter`` as :func:`push` does, unless its location has had :data:`PER_HOST`
    kept in this :data:`WINDOW`: then it is only counted (:func:`dropped`). What the relay
    does with a confined worker's letter. Returns its location's letters in this window,
    this one included (kept when at most :data:`PER_HOST`)."""
    window = store.keys.letters_window(letter.location)
    pipe = store.r.pipeline(transaction=True)
    pipe.set(window, 0, ex=WINDOW, nx=True)
    pipe.incr(window)
    _, count = pipe.execute()
    if int(count) > PER_HOST:
        store.r.hincrby(store.keys.letters_dropped, letter.location, 1)
    else:
        push(store, letter)
    return int(count)


@guarded
def dropped(store: Store) -> dict[str, int]:
    """Location -> how many of its dead letters were not kept (over :data:`PER_HOST` in an
    hour), since the list was last cleared."""
    out = {}
    for location, count in store.r.hgetall(store.keys.letters_dropped).items():
        with contextlib.suppress(ValueError):  # a count written by hand: not one
            if int(count) > 0:
                out[location] = int(count)
    return out


@guarded
def read(store: Store, limit: int = LIMIT) -> list[DeadLetter]:
    """The dead letters, newest first (at most ``limit``)."""
    out = []
    for text in store.r.lrange(key(store), 0, max(0, limit - 1)):
        try:
            out.append(DeadLetter.from_json(text))
        except (ValueError, TypeError):
            out.append(DeadLetter(0.0, "", "", "unreadable dead letter", body=body_text(text)))
    return out


@guarded
def clear(store: Store) -> int:
    """Forget every dead letter, and the counts of those not kept; returns how many there
    were (kept)."""
    pipe = store.r.pipeline(transaction=True)
    pipe.llen(key(store))
    pipe.delete(key(store), store.keys.letters_dropped)
    count, _ = pipe.execute()
    return int(count)


def now() -> float:
    return time.time()
