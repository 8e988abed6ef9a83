"""Dead letters: the messages a worker could not take as a job, kept for a person to look at.

A message on a location's queue that is not a fleetjobs job (a body that is not Celery's
``[args, kwargs, embed]``, JSON that does not parse, a content type other than JSON, missing
headers, an argument that is not a job Id, an envelope that is not even JSON) is acknowledged,
logged once and pushed here by the worker that met it, so one bad message never stops a
worker and nothing disappears without a trace. The list is bounded: the newest
:data:`LIMIT` are kept under the fleet's prefix (``deadletters``), newest first.

A confined worker's letters come through the relay, which keeps them in a list of the
location's own, its newest :data:`PER_HOST`, and counts those its newer ones push out
(:func:`dropped`): in the fleet's list, a stolen host credential could push out every other
host's letters with a thousand of its own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from .options import is_time
from .store import Store, guarded

LIMIT = 1000
BODY_LIMIT = 2000  # characters of a dead message's body kept: enough to recognise it
REASON_LIMIT = 500  # and of the reason its worker gave
FIELD_LIMIT = 200  # and of each other field (worker, task, task id, content type, queue...)
PER_HOST = 100  # letters a confined location's own list keeps (the relay's; older are counted)


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
        field text cut to :data:`FIELD_LIMIT` characters, the reason to :data:`REASON_LIMIT`
        and the body as :func:`body_text` cuts it."""
        at = doc.get("at")
        ok = is_time(at)
        text = {k: doc.get(k) for k in cls.__dataclass_fields__ if k != "at"}
        fields = {k: v[:FIELD_LIMIT] if isinstance(v, str) else "" for k, v in text.items()}
        reason = text["reason"]
        fields["reason"] = reason[:REASON_LIMIT] if isinstance(reason, str) else ""
        body = text["body"]
        fields["body"] = body_text(body if isinstance(body, str) else "")
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
    pipe.lpush(key(store), _text(letter))
    pipe.ltrim(key(store), 0, LIMIT - 1)
    pipe.execute()


@guarded
def push_for_host(store: Store, letter: DeadLetter) -> None:
    """Keep a confined worker's ``letter`` (the relay's) in its location's own list, dropping
    that location's oldest beyond :data:`PER_HOST`, so that one host's letters never push out
    another's. Each letter is counted in the same transaction: those pushed out are the count
    less what the list holds (:func:`dropped`)."""
    own = store.keys.host_letters(letter.location)
    pipe = store.r.pipeline(transaction=True)
    pipe.lpush(own, _text(letter))
    pipe.ltrim(own, 0, PER_HOST - 1)
    pipe.sadd(store.keys.letter_hosts, letter.location)
    pipe.hincrby(store.keys.letters_counted, letter.location, 1)
    pipe.execute()


@guarded
def sent_by_the_fleet(store: Store, instance_id: str, body: bytes) -> bool:
    """Whether ``body`` is the body of the message the fleet keeps for the child whose task
    id (InstanceId) this is, until its worker takes it: a refused message that is, is the
    fleet's own, and not a forgery naming that child."""
    kept = store.r.get(store.keys.msg(instance_id))
    if not kept:
        return False
    try:
        doc = json.loads(kept)
        text = doc["body"]
        if doc.get("properties", {}).get("body_encoding") == "base64":
            return bool(base64.b64decode(text, validate=True) == body)
        return bool(text.encode() == body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return False


def _text(letter: DeadLetter) -> str:
    return json.dumps(letter.to_dict(), separators=(",", ":"))


@guarded
def dropped(store: Store) -> dict[str, int]:
    """Location -> how many of its letters its newer ones pushed out of its own list (a
    confined host keeps its newest :data:`PER_HOST`), since the letters were last cleared."""
    # one read-only script (letters.lua), which a read-only console may run: the counts and
    # the lists' lengths at one moment (no WATCH, which it may not)
    flat = store.scripts("letters")
    return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _pushed_out(counted: dict[str, str], held: dict[str, int]) -> dict[str, int]:
    out = {}
    for location, count in counted.items():
        if location not in held:
            continue  # no list of its own was read
        with contextlib.suppress(ValueError):  # a count written by hand: not one
            gone = int(count) - held[location]
            if gone > 0:
                out[location] = gone
    return out


@guarded
def read(store: Store, limit: int = LIMIT) -> list[DeadLetter]:
    """The dead letters, newest first (at most ``limit``): the fleet's list and each confined
    host's own."""
    hosts = sorted(store.r.smembers(store.keys.letter_hosts))
    pipe = store.r.pipeline(transaction=False)
    for k in [key(store), *(store.keys.host_letters(h) for h in hosts)]:
        pipe.lrange(k, 0, max(0, limit - 1))
    return _newest([t for texts in pipe.execute() for t in texts], limit)


def _newest(texts: list[str], limit: int) -> list[DeadLetter]:
    out = []
    for text in texts:
        try:
            out.append(DeadLetter.from_json(text))
        except (ValueError, TypeError):
            out.append(DeadLetter(0.0, "", "", "unreadable dead letter", body=body_text(text)))
    out.sort(key=lambda d: -d.at)  # stable: each list's own order among equal times
    return out[:limit]


@guarded
def take(store: Store) -> tuple[list[DeadLetter], dict[str, int]]:
    """Read and forget every dead letter and count, in one transaction, so that none that
    arrives meanwhile is forgotten unseen. Returns all the letters, newest first, and the
    counts of :func:`dropped`."""
    while True:
        with store.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(store.keys.letter_hosts)  # a host's first letter: read it too
                hosts = sorted(pipe.smembers(store.keys.letter_hosts))
                lists = [key(store), *(store.keys.host_letters(h) for h in hosts)]
                pipe.multi()
                for k in lists:
                    pipe.lrange(k, 0, -1)
                pipe.hgetall(store.keys.letters_counted)
                pipe.delete(*lists, store.keys.letter_hosts, store.keys.letters_counted)
                got = pipe.execute()
            except redis.WatchError:
                continue
        texts = got[: len(lists)]
        held = {h: len(t) for h, t in zip(hosts, texts[1:], strict=True)}
        letters = [t for part in texts for t in part]
        return _newest(letters, len(letters)), _pushed_out(got[len(lists)], held)


@guarded
def clear(store: Store) -> int:
    """Forget every dead letter, and the counts of those pushed out; returns how many
    letters there were."""
    return len(take(store)[0])


def now() -> float:
    return time.time()
