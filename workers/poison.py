"""Poison messages: whatever arrives on a location's queue, the worker keeps serving.

Celery trusts what comes off its queues. A message naming our task whose body is not
``[args, kwargs, embed]`` (``{"hello": "world"}``, ``[[1]]``) raises inside Celery's
``Request`` and ends the worker as "Unrecoverable error"; a message with no ``id`` header loops
as a lost connection until the worker gives up; an envelope that is not JSON at all (a stray
``LPUSH``) ends it inside kombu's Redis transport (celery#4308, celery#7975, still open).
The message is put back on the way down, so the restarted worker dies on it again.

Two guards, each at the first place the thing can be seen:

- **The envelope** (kombu): the Redis transport's read of a popped message is wrapped so that
  an envelope kombu cannot make a message of is dead-lettered instead of raised.
- **The message** (Celery): the worker's consumer (``worker_consumer``, a documented Celery
  setting) checks each message against the one shape a fleetjobs job has before Celery sees
  it, and catches whatever Celery's handler still raises. Checking first, in the consumer,
  rather than in a custom ``Request`` or strategy: those run only for messages that already
  name a registered task and carry good headers, so they cannot see half of the cases above.

A refused message is acknowledged, logged once (queue and why) and kept in the fleet's
dead-letter list (:mod:`fleetjobs.deadletters`, ``fleetjobs deadletters``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
from datetime import datetime
from queue import Empty
from typing import Any

import redis.exceptions
from celery.worker.consumer import Consumer
from celery.worker.pidbox import Pidbox as CeleryPidbox
from kombu import exceptions as kombu_exceptions
from kombu.transport import redis as kombu_redis
from kombu.utils import encoding as kombu_encoding
from kombu.utils import json as kombu_json

import fleetjobs.deadletters as deadletters
from fleetjobs.config import Config
from fleetjobs.errors import FleetJobsError
from fleetjobs.lifecycle import Lifecycle
from fleetjobs.model import nested_too_deep
from fleetjobs.options import is_number
from fleetjobs.routing import TASK_NAME, location_of
from fleetjobs.store import Store

log = logging.getLogger("fleetjobs.worker")
bytes_to_str: Any = kombu_encoding.bytes_to_str  # untyped in kombu
loads: Any = kombu_json.loads


JSON, SIGNED = "application/json", "application/data"  # plain, and Celery's auth serializer


def why_not_a_job(message: Any, content_type: str = JSON) -> str | None:
    """Why ``message`` is not a fleetjobs job, in one line; None when it is one.

    ``content_type`` is what this fleet sends: signed messages are verified as they are
    decoded (a bad or unknown signature cannot be decoded)."""
    headers = message.headers
    if not isinstance(headers, dict):
        return "it has no headers (not a Celery task message)"
    task = headers.get("task")
    if task != TASK_NAME:
        return f"it names task {_short(task)}, not {TASK_NAME}"
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        return "it has no task id header"
    if message.content_type != content_type:
        what = "a signed message" if content_type == SIGNED else content_type
        return f"its content type is {_short(message.content_type)}, not {what}"
    problem = _header_problem(headers)
    if problem is not None:
        return problem
    try:
        body = message.decode()
    except Exception as exc:  # kombu's DecodeError, ContentDisallowed, a bad encoding...
        return f"its body cannot be decoded: {type(exc).__name__}: {_line(exc)}"
    if not isinstance(body, list) or len(body) != 3:
        return "its body is not Celery's [args, kwargs, embed]"
    if nested_too_deep(body, MAX_DEPTH):  # Celery pickles it for the pool: a depth it can do
        return f"its body is nested more than {MAX_DEPTH} levels deep"
    args, kwargs, embed = body
    if not isinstance(args, list) or len(args) != 1 or type(args[0]) is not int or args[0] < 1:
        return f"its arguments are {_short(args)}, not [job id]"
    if kwargs != {} and not (list(kwargs) == ["spec"] and isinstance(kwargs["spec"], dict)):
        return f"its keyword arguments are {_short(kwargs)}, not {{}} or {{'spec': ...}}"
    if not isinstance(embed, dict):
        return f"its options are {_short(embed)}, not an object"
    return None


def _header_problem(headers: dict[str, Any]) -> str | None:
    """Why the headers Celery reads past the guard cannot be a job's: a time limit Celery's
    timer would fail on inside the event loop (ending the worker) or kill the pool process
    with, stamps it would walk, a date it would log a traceback for and drop, a name Flower
    would show."""
    limits = headers.get("timelimit")
    if limits is not None:
        if not isinstance(limits, list | tuple) or len(limits) != 2:
            return f"its time limit header is {_short(limits)}, not [soft, hard]"
        for limit in limits:
            if limit is not None and not _positive(limit):
                return f"its time limit header is {_short(limits)}, not positive seconds"
        if any(limit is not None for limit in limits):
            # Celery's timer would end the action (a tiny one killed the pool process, its
            # slot gone until Celery made another): a job's timeout is its own (--timeout)
            return (
                f"its time limit header is {_short(limits)}: fleetjobs sends none (a job's "
                "timeout is start --timeout)"
            )
    # Celery walks these when it looks whether the message was revoked: a number there
    # raised in its event loop (the worker ended) or after it reserved a slot (kept for good)
    for name, empty in (("stamped_headers", []), ("stamps", {})):
        value = headers.get(name)
        if value is not None and value != empty:
            return f"its {name} header is {_short(value)}: fleetjobs stamps nothing"
    if headers.get("eta") is not None:
        # Celery would hold it in the worker's memory until then, reserved and never run
        # nor refused (and a lost Redis connection, restoring it, ended the worker)
        return f"its eta header asks to run it later ({_short(headers['eta'])}): none is sent"
    when = headers.get("expires")
    if when is not None:
        try:
            datetime.fromisoformat(when)
        except (TypeError, ValueError):
            return f"its expires header is {_short(when)}, not an ISO 8601 time"
    shadow = headers.get("shadow")
    if shadow is not None and not isinstance(shadow, str):
        return f"its shadow header is {_short(shadow)}, not a name"
    return None


# how deep a message's JSON may nest: a job's is a few levels, a signed one's arguments 5 in
# (a console refuses arguments past model.ARGUMENT_DEPTH); Celery pickles a message for its
# pool, and kombu writes it back as JSON, each failing some 450 to 950 levels down (with a
# pool slot kept, or the worker ended)
MAX_DEPTH = 100


def _positive(value: Any) -> bool:
    return is_number(value) and math.isfinite(value) and value > 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class DeadLetterBox:
    """Writes dead letters for one worker process (its own Redis connection, made on use)."""

    def __init__(self, config: Config, worker_id: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self._registry: Store | None = None

    def drop(
        self,
        queue: str,
        reason: str,
        once: str | None = None,
        sent: bytes | None = None,
        **fields: Any,
    ) -> None:
        """Log once and keep the message; a Redis that cannot take it is logged, not raised.
        With ``once`` (a broadcast: every worker refuses the same message), only the first
        worker to refuse what ``once`` names within a minute keeps it. ``sent``: the message's
        body; when it is the one the fleet sent for its job, that job Fails saying why (it
        waited NotStarted for ever)."""
        letter = deadletters.DeadLetter(
            at=deadletters.now(),
            queue=queue,
            location=location_of(queue) or "",
            reason=reason,
            worker=self.worker_id,
            **fields,
        )
        claimed = None
        try:
            if self._registry is None:
                self._registry = Store.connect(self.config)
            if once is not None:
                claimed = self._registry.keys.letter_once(once)
                if not self._registry.r.set(claimed, self.worker_id, nx=True, ex=60):
                    log.error(
                        "refused a message on queue %s: %s (another worker keeps it)", queue, reason
                    )
                    return
            log.error("refused a message on queue %s: %s (kept as a dead letter)", queue, reason)
            deadletters.push(self._registry, letter)
            task_id, location = fields.get("task_id"), location_of(queue)
            if task_id and location and self._registry.relay is None:  # (else the relay)
                # its job's message came and was refused: not one to re-send as lost
                self._registry.r.zrem(self._registry.keys.inq(location), task_id)
                if sent is not None and deadletters.sent_by_the_fleet(
                    self._registry, task_id, sent
                ):
                    why = f"the worker on {location} refused its message: {reason}"
                    Lifecycle(self._registry).fail_queued(task_id, location, why)
        except (FleetJobsError, redis.exceptions.RedisError) as exc:
            # a Redis that cannot take it (full, read-only, away) is said, never raised: the
            # worker goes on; another worker may keep the broadcast this one could not
            log.error(
                "refused a message on queue %s: %s (could not keep it: %s)", queue, reason, exc
            )
            if claimed is not None and self._registry is not None:
                with contextlib.suppress(redis.exceptions.RedisError):
                    self._registry.r.delete(claimed)


def consumer_class(box: DeadLetterBox) -> type[Consumer]:
    """Celery's consumer, checking every task message before Celery handles it."""

    class GuardedConsumer(Consumer):  # type: ignore[misc]
        def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
            handle = super().create_task_handler(*args, **kwargs)
            transient = _transient_errors(self)

            def on_task_received(message: Any) -> Any:
                try:
                    reason = why_not_a_job(message, SIGNED if box.config.signed else JSON)
                except Exception as exc:  # a message odd enough to break the check itself
                    reason = f"it cannot be read: {type(exc).__name__}: {_line(exc)}"
                if reason is not None:
                    return _refuse(message, reason)
                try:
                    return handle(message)
                except transient:
                    raise  # Redis went away: Celery reconnects, the message is restored
                except Exception as exc:
                    return _refuse(
                        message, f"Celery could not take it: {type(exc).__name__}: {exc}"
                    )

            def _refuse(message: Any, reason: str) -> None:
                info = message.delivery_info or {}
                queue = str(info.get("routing_key") or info.get("queue") or "?")
                headers = message.headers if isinstance(message.headers, dict) else {}
                body = message.body
                box.drop(
                    queue,
                    reason,
                    sent=body if isinstance(body, bytes) else None,
                    task=str(headers.get("task") or ""),
                    task_id=str(headers.get("id") or ""),
                    content_type=str(message.content_type or ""),
                    body=deadletters.body_text(message.body),
                )
                if not message.acknowledged:
                    message.ack_log_error(log, self.connection_errors)

            return on_task_received

    return GuardedConsumer


def _transient_errors(consumer: Any) -> tuple[type[BaseException], ...]:
    # kombu counts KeyError among the Redis transport's channel errors: a message without
    # an id header then looks like a lost connection. Only real I/O errors pass through.
    errors = tuple(consumer.connection_errors) + tuple(consumer.channel_errors)
    return tuple(
        e
        for e in errors
        if isinstance(e, type)
        and issubclass(e, BaseException)
        and not issubclass(e, (KeyError, ValueError, TypeError))
    )


# ---- the envelope -------------------------------------------------------------------------


def read_envelope(item: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A raw item popped from a queue as kombu's message (read once, by kombu's own JSON
    reader), or None and why it cannot become one."""
    try:
        doc = loads(item if isinstance(item, str) else bytes(item).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"its envelope is not JSON: {_line(exc)}"
    except RecursionError:
        return None, "its envelope is not JSON: nested too deep to read"
    except Exception as exc:  # a value JSON allows and the reader does not
        # kombu reads {"__type__": ..., "__value__": ...} as a value of that type: a type it
        # has no decoder for, or a value its decoder cannot read, raises whatever that decoder
        # raises (so does an integer of more digits than Python reads); anything a queue can
        # hand the worker gets an answer, not a crash
        return None, f"its envelope cannot be read: {type(exc).__name__}: {_line(exc)}"
    problem = envelope_problem(doc)
    return (doc, None) if problem is None else (None, problem)


def envelope_problem(doc: Any) -> str | None:
    """Why a parsed envelope cannot become a kombu message; None if it can."""
    if not isinstance(doc, dict):
        return "its envelope is not a JSON object"
    props = doc.get("properties")
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return "its envelope has no properties with a delivery tag"
    tag = props["delivery_tag"]
    if not isinstance(tag, str) or not tag:  # kombu's are uuid4 text; it keys its books by it
        return f"its delivery tag is {_short(tag)}, not a text tag"
    if not isinstance(props.get("delivery_info", {}), dict):
        return "its envelope's delivery info is not an object"
    headers = doc.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "its envelope's headers are not an object"
    if headers and headers.get("compression") is not None:
        # kombu would decompress it before any guard sees it, and an unknown method is
        # acknowledged and dropped there with a traceback; fleetjobs compresses nothing
        return f"it is compressed ({_short(headers['compression'])}): fleetjobs sends no such"
    if nested_too_deep(doc, MAX_DEPTH):
        # kombu writes it back as JSON (its reserved messages) and Celery pickles it for the
        # pool: deeper than they can, it ended the worker, or held a pool slot for good
        return f"its envelope is nested more than {MAX_DEPTH} levels deep"
    body = doc.get("body")
    if body is not None and not isinstance(body, str):
        return "its envelope's body is not a string"
    encoding = props.get("body_encoding")
    if encoding is not None and encoding != "base64":
        return f"its body encoding is {_short(encoding)}, not base64"
    if body and encoding == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            return f"its body is not valid base64: {_line(exc)}"
    return None


_BOX: list[DeadLetterBox] = []


def guard_envelopes(box: DeadLetterBox) -> None:
    """Make kombu's Redis transport dead-letter envelopes it cannot read, and say truly which
    queue a message came from (once per process).

    kombu pops the message (BRPOP) and parses its envelope in one private method with no
    hook; an envelope that is not JSON raises out of the event loop and ends the worker. The
    wrapper pops the same way, checks the envelope first, and hands good ones to kombu's own
    delivery. If kombu changes that method's shape, the wrapper is not installed and the
    consumer's guard still covers every message kombu can parse.
    """
    _BOX[:] = [box]
    channel: Any = kombu_redis.Channel
    if getattr(channel, "_fleetjobs_guarded", False):
        return
    original = getattr(channel, "_brpop_read", None)
    if original is None:
        return

    def _brpop_read(self: Any, **options: Any) -> Any:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message, problem = read_envelope(item)
            if message is None:
                # popped and never put in the unacked set: dropping it here is its ack
                for keeper in _BOX:
                    keeper.drop(dest, problem or "?", body=deadletters.body_text(item))
                return True
            # where it came from is the queue it was popped from, not what its envelope says
            # (unsigned, anyone's to write): the claim checks the location against this
            info = message["properties"].setdefault("delivery_info", {})
            info["exchange"], info["routing_key"] = "", dest  # a restore goes back to dest
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7
            if flush is not None:
                flush()

    channel._brpop_read = _brpop_read
    channel._fleetjobs_guarded = True
    _guard_broadcasts(channel)


def _guard_broadcasts(channel: Any) -> None:
    """Make kombu's Redis transport dead-letter a broadcast (remote control: Celery's pidbox
    channel, which every trusted worker listens on) that it cannot read or handle.

    kombu reads a published message and delivers it to Celery's mailbox with no guard: one
    ``PUBLISH`` of ``[]``, of JSON nested too deep, or of an envelope with an unknown body
    encoding, raised out of the event loop and ended every worker of the fleet at once.
    """
    receive_one = getattr(channel, "_receive_one", None)
    deliver = getattr(channel, "_deliver_fanout_message", None)
    if receive_one is None or deliver is None:
        return

    def refuse(exchange: str, reason: str, message: Any = None) -> None:
        text = ""
        if message is not None:
            with contextlib.suppress(Exception):  # kombu's typed values: shown as they can be
                text = deadletters.body_text(json.dumps(message, default=repr))
        # every trusted worker hears it: one letter, not one a worker (a thousand workers'
        # would push every other letter out of the fleet's list)
        once = hashlib.sha1(f"{exchange}\n{reason}\n{text}".encode()).hexdigest()
        for keeper in _BOX:
            keeper.drop(f"{exchange} (broadcast)", reason, once=once, body=text)

    def _receive_one(self: Any, c: Any) -> Any:
        # nothing delivered is False, not kombu's Empty: raised from its loop over what the
        # connection holds already, Empty left the messages after it unread until another came
        try:
            return receive_one(self, c)
        except Empty:  # kombu's own: an event it could not read, logged
            return False
        except self.connection_errors:
            raise
        except Exception as exc:  # JSON nested too deep to read, say: read past the guard
            refuse("?", f"a broadcast could not be read: {type(exc).__name__}: {_line(exc)}")
            return False

    def _deliver_fanout_message(self: Any, message: Any, exchange: str) -> Any:
        problem = envelope_problem(message)
        if problem is None:
            try:
                return deliver(self, message, exchange)
            except self.connection_errors:
                raise
            except Exception as exc:
                problem = f"it could not be handled: {type(exc).__name__}: {_line(exc)}"
        refuse(exchange, problem, message)
        return True

    channel._receive_one = _receive_one
    channel._deliver_fanout_message = _deliver_fanout_message
    _guard_control_commands(refuse)


def _guard_control_commands(refuse: Any) -> None:
    """Make Celery's mailbox dead-letter a control command it cannot carry out, and go on
    listening: it logged a traceback and started its listener again, and the broadcasts sent
    meanwhile reached no one (``ping`` with a list for its arguments, a ``revoke`` naming an
    object for its task id). A lost connection still starts it again, as Celery does."""
    on_message = getattr(CeleryPidbox, "on_message", None)
    if on_message is None or getattr(on_message, "_fleetjobs", False):
        return

    def guarded(self: Any, body: Any, message: Any) -> None:
        getattr(self, "_forward_clock", lambda: None)()  # as Celery's own: the clock forward
        method = body.get("method") if isinstance(body, dict) else None
        try:
            self.node.handle_message(body, message)
        except _transient_errors(self.c) as exc:  # a real I/O error: kombu counts KeyError
            log.error("control command %r: %s; listening again", method, exc)
            self.reset()
        except Exception as exc:
            handlers = getattr(self.node, "handlers", None) or {}
            if isinstance(method, str) and method not in handlers:  # Celery's KeyError
                reason = f"no such control command: {_short(method)}"
            else:
                reason = f"control command {_short(method)} failed: {type(exc).__name__}: "
                reason += _line(exc)
            refuse("celery.pidbox", reason, body)

    guarded._fleetjobs = True  # type: ignore[attr-defined]
    CeleryPidbox.on_message = guarded
    start = CeleryPidbox.start

    def start_guarded(self: Any, c: Any) -> None:
        start(self, c)
        if self.consumer is not None:  # Celery's logged a traceback for each, as CRITICAL
            self.consumer.on_decode_error = lambda m, e: _undecodable(refuse, m, e)

    CeleryPidbox.start = start_guarded


_REFUSED: set[str] = set()  # the undecodable broadcasts this process refused (by why)


def _undecodable(refuse: Any, message: Any, exc: Exception) -> None:
    """A broadcast kombu cannot decode: refused once per process and reason, then ignored.
    A worker of a fleet that signs decodes only signed messages, and Flower broadcasts its
    ``enable_events`` unsigned every 5 s: each logged a CRITICAL traceback for as long as
    Flower ran (a fleet that signs takes no remote control: README, Signed messages)."""
    body: Any = None
    with contextlib.suppress(Exception):
        body = json.loads(message.body)
    method = body.get("method") if isinstance(body, dict) else None
    if isinstance(exc, kombu_exceptions.ContentDisallowed):
        reason = (
            f"remote control {_short(method)} is not signed ({message.content_type}): a worker "
            "of a fleet that signs takes no remote control (its later ones are ignored unsaid)"
        )
    else:
        reason = f"a broadcast could not be decoded: {type(exc).__name__}: {_line(exc)}"
    if reason in _REFUSED:
        log.debug("ignored a broadcast: %s", reason)
        return
    if len(_REFUSED) > 1000:  # a flood of distinct ones: say them again rather than grow
        _REFUSED.clear()
    _REFUSED.add(reason)
    refuse("celery.pidbox", reason, body if body is not None else repr(message.body)[:500])
