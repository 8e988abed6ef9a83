"""A job's stream records: written by the worker as they are made, taken once by a receive.

Each child's records are a Redis list (``out:<iid>``), oldest first. A worker appends with
``append.lua`` (numbered, so a retried write is not doubled, and refused once the job is
removed). A console takes them in bounded batches with ``take.lua`` (one script for many
children, so concurrent receivers get each record exactly once); a batch is held in Redis
until the receiver acknowledges it (``ack.lua``) once it has handed the records on, so a
receiver that dies or loses Redis mid-receive loses nothing: what it had not handed on goes
back in front, at once or when its lease runs out.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FleetJobsError
from .model import JobInfo, Record
from .options import is_time
from .store import Store, guarded

BATCH = 1000  # records per take: bounded console memory, no long Redis call
WRITE_BATCH = 1000  # records per write (an append, or the tail a finish carries): no long
# Redis script, and the most the relay takes from a confined worker in one request
WRITE_CHARS = 4 * 2**20  # and characters of their values (one bigger goes alone, and may be
# more than the relay takes): JSON's escapes make a character at most 12 bytes (an emoji's
# \ud83d\ude00), 14 in a relay request, so a write is at most 56 MiB, under its MAX_REQUEST
LEASE = 60.0  # seconds a receiver holds a taken batch before another may have it back


class Shown:
    """What a consumer that shows records later than it is given them has shown so far
    (a console holds objects back to print a run of them as one table): a record given to
    it leaves Redis only once counted here (:meth:`add`). Before the stream acknowledges a
    batch it took, or waits for more to come, it calls ``flush``, which must show (and
    count) every record the consumer still holds; what was not counted when the consumer
    stops (Ctrl-C, a closed pipe, an error in ``flush`` itself) goes back at once, and all
    of it, if the process is killed, when its lease runs out."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self.flush = flush
        self.counts: Counter[int] = Counter()  # child job id -> its records shown

    def add(self, rec: Record) -> None:
        """Count ``rec`` as shown."""
        self.counts[rec.job] += 1


@dataclass(frozen=True)
class Pending:
    """A record an action wrote, on its way to Redis: its stream, value, number and time."""

    stream: str
    data: Any
    seq: int
    at: float
    size: int = -1  # characters of its value as JSON, when known (write_parts measures it else)


def write_parts(batch: Sequence[Pending]) -> list[list[Pending]]:
    """``batch`` cut into writes of at most :data:`WRITE_BATCH` records and
    :data:`WRITE_CHARS` characters of values (a value bigger than that is a write alone)."""
    parts: list[list[Pending]] = []
    part: list[Pending] = []
    chars = 0
    for p in batch:
        size = p.size if p.size >= 0 else len(json.dumps(p.data))
        if part and (len(part) == WRITE_BATCH or chars + size > WRITE_CHARS):
            parts.append(part)
            part, chars = [], 0
        part.append(p)
        chars += size
    if part:
        parts.append(part)
    return parts


class Records:
    """The stream records of one fleet's jobs.

    Args:
        store: the fleet's Redis (client, keys, scripts).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.truncated: set[str] = set()  # children whose output reached the cap

    @guarded
    def append(self, iid: str, parent_iid: str | None, batch: Sequence[Pending]) -> bool:
        """Add these records to a child's streams, each once (by its number), in one script,
        and tell who waits on them: what a command printed at once is one round trip.

        Past the configured ``max_output`` bytes, one warning record says the output was
        truncated and later records are dropped (the child's InstanceId joins ``truncated``).

        Returns:
            False when the job no longer exists (it was removed while it ran).
        """
        answer = int(self.store.scripts("append", *self.tail(iid, parent_iid, batch)))
        if answer == 2:
            self.truncated.add(iid)
        return answer != 0

    def tail(self, iid: str, parent_iid: str | None, batch: Sequence[Pending]) -> list[Any]:
        """The arguments that write ``batch`` (append.lua's, and the end of finish.lua's)."""
        cap = self.store.config.max_output
        at = batch[-1].at if batch else 0.0
        warning = _record(
            "warning",
            f"output truncated: the job wrote more than {_size(cap)} of records; "
            "later ones were dropped (FLEETJOBS_MAX_OUTPUT)",
            at,
        )
        out: list[Any] = [iid, parent_iid or "", cap, warning]
        for p in batch:
            out += (p.seq, _record(p.stream, p.data, p.at))
        return out

    def drain(
        self,
        children: Sequence[JobInfo],
        keep: bool = False,
        offsets: dict[str, int] | None = None,
        batch: int = BATCH,
        whole: bool = False,
        handed_on_next: bool = False,
        shown: Shown | None = None,
    ) -> Iterator[Record]:
        """Every record of these children there now, in the order each wrote them.

        Taken a batch at a time and acknowledged once handed on: a record leaves Redis only
        after the caller has been given it, or with ``handed_on_next`` only once the caller
        asks for the next (a console printing each: the one it was printing when Ctrl-C
        came goes back, to be printed again rather than never). What was not handed on
        goes back at once however the caller stops: a close, or an exception (Ctrl-C)
        raised in it or in here, even inside the take. With ``keep`` nothing is taken:
        ``offsets`` (InstanceId -> records already read) lets the caller read on from where
        it was. With ``whole`` (a caller that consumes every record and makes no Redis call
        before handing them all over, as :meth:`Fleet.receive` building its list), the last
        batch leaves Redis as it is taken: one round trip less. With ``shown``, a record is
        handed on once the caller counts it shown, and ``shown.flush`` is called at the end
        of each batch (see :class:`Shown`).
        """
        if not children:
            return
        if keep:
            seen = {} if offsets is None else offsets
            while batch_read := self._read(children, seen, batch):
                yield from batch_read
                if shown is not None:
                    shown.flush()
            return
        while True:
            token = uuid.uuid4().hex
            handed = {c.instance_id: 0 for c in children}
            base = {c.id: shown.counts[c.id] for c in children} if shown else {}
            try:
                lists, held = self._take(children, batch, whole, token)
            except (KeyboardInterrupt, SystemExit):
                # Ctrl-C inside the take: whatever it held under this token goes back now,
                # not when its lease runs out
                self._give_back(token, handed)
                raise
            if not any(lists):
                return
            if not held:  # the last batch, already out of Redis: the caller's now
                for records in lists:
                    yield from records
                return
            # the batch is acknowledged once handed on, or as far as it was when the caller
            # stopped; only a lost Redis (or a killed console) leaves it held, to come back
            # when its lease runs out, as a dead receiver's does
            try:
                for child, records in zip(children, lists, strict=True):
                    for rec in records:
                        if shown is not None:
                            yield rec
                        elif handed_on_next:
                            yield rec
                            handed[child.instance_id] += 1
                        else:
                            handed[child.instance_id] += 1
                            yield rec
                if shown is not None:
                    shown.flush()  # what the caller holds, shown before the batch is acked
                    handed = _shown_of(shown, base, children, lists)
            except BaseException as exc:
                # the caller stopped part-way (or its flush failed: a closed pipe): what it
                # was not given, or has not shown, goes back at once; a list being built
                # (whole) is thrown away with all it was given
                if shown is not None:
                    handed = _shown_of(shown, base, children, lists)
                lost = whole and not isinstance(exc, GeneratorExit)
                self._give_back(token, dict.fromkeys(handed, 0) if lost else handed)
                raise
            try:
                self._ack(token, handed)
            except (KeyboardInterrupt, SystemExit):
                self._give_back(token, handed)  # Ctrl-C inside the ack: once more
                raise
            if sum(map(len, lists)) < batch:
                return  # the take had room left: it emptied every list (no empty take more)

    @guarded
    def _take(
        self, children: Sequence[JobInfo], limit: int, whole: bool, token: str
    ) -> tuple[list[list[Record]], bool]:
        mode = "2" if whole else "0"
        *lists, held = self.store.scripts(
            "take", mode, limit, token, LEASE, *(c.instance_id for c in children)
        )
        records = [_records(c, items) for c, items in zip(children, lists, strict=True)]
        return records, held == "1"

    def _give_back(self, token: str, handed: dict[str, int]) -> None:
        """Acknowledge what was handed on of the batch held under ``token`` (if any is):
        the rest goes back in front at once. Best effort: a Redis gone leaves it to the
        lease, and so does a second Ctrl-C, which goes on up."""
        with contextlib.suppress(FleetJobsError):
            self._ack(token, handed)

    @guarded
    def _ack(self, token: str, handed: dict[str, int]) -> None:
        args = [x for iid, n in handed.items() for x in (iid, n)]
        self.store.scripts("ack", token, *args)

    @guarded
    def _read(
        self, children: Sequence[JobInfo], offsets: dict[str, int], limit: int
    ) -> list[Record]:
        pipe = self.store.r.pipeline(transaction=False)
        for c in children:
            start = offsets.get(c.instance_id, 0)
            pipe.lrange(self.store.keys.out(c.instance_id), start, start + limit - 1)
        out: list[Record] = []
        for child, items in zip(children, pipe.execute(), strict=True):
            offsets[child.instance_id] = offsets.get(child.instance_id, 0) + len(items)
            out.extend(_records(child, items))
        return out

    def take(self, children: Sequence[JobInfo], keep: bool = False) -> list[Record]:
        """Every record of these children there now, as a list (see :meth:`drain`)."""
        return list(self.drain(children, keep=keep))


def _shown_of(
    shown: Shown, base: dict[int, int], children: Sequence[JobInfo], lists: list[list[Record]]
) -> dict[str, int]:
    """How many of each child's batch the caller has shown (InstanceId -> count)."""
    return {
        c.instance_id: min(shown.counts[c.id] - base[c.id], len(records))
        for c, records in zip(children, lists, strict=True)
    }


def _records(child: JobInfo, items: list[str]) -> list[Record]:
    out = []
    for item in items:
        try:
            rec = json.loads(item)
            stream, data, at = rec["s"], rec["d"], rec["t"]
            if not isinstance(stream, str):
                raise TypeError("its stream is not a name")
            if not is_time(at):  # NaN, 1e300: no time a console can show
                raise ValueError(f"its time is {at!r}")
            at = float(at)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            # one damaged record (written by hand into Redis) is said, and the rest delivered
            stream, at = "error", 0.0
            data = f"a record of this job could not be read ({type(exc).__name__}): {item[:200]}"
        out.append(Record(child.id, child.location, stream, data, at))
    return out


def is_record(text: str) -> bool:
    """Whether ``text`` is a record as workers write them (what a reader can deliver)."""
    try:
        rec = json.loads(text)
        return (
            isinstance(rec, dict)
            and isinstance(rec.get("s"), str)
            and "d" in rec
            and is_time(rec.get("t"))
        )
    except (ValueError, RecursionError):  # the last: nested too deep to read
        return False


def _record(stream: str, data: Any, at: float) -> str:
    return json.dumps({"s": stream, "d": data, "t": at}, separators=(",", ":"))


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"
