"""A job's stream records: written by the worker as they are made, taken once by a receive.

Each child's records are a Redis list (``out:<iid>``), oldest first. A worker appends with
``append.lua`` (numbered, so a retried write is not doubled, and refused once the job is
removed); a console takes with ``take.lua`` (one script for many children, so concurrent
receivers get each record exactly once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import JobInfo, Record
from .store import Store, guarded


class Records:
    """The stream records of one fleet's jobs.

    Args:
        store: the fleet's Redis (client, keys, scripts).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @guarded
    def append(
        self, iid: str, parent_iid: str | None, stream: str, data: Any, seq: int, at: float
    ) -> bool:
        """Add record number ``seq`` to a child's streams, once, and tell who waits on it.

        Returns:
            False when the job no longer exists (it was removed while it ran).
        """
        rec = json.dumps({"s": stream, "d": data, "t": at}, separators=(",", ":"))
        return bool(self.store.scripts("append", iid, rec, parent_iid or "", seq))

    @guarded
    def take(self, children: Sequence[JobInfo], keep: bool = False) -> list[Record]:
        """The records of these children in the order each wrote them, removed unless ``keep``.

        One script for all of them: concurrent receivers get each record exactly once.
        """
        if not children:
            return []
        lists = self.store.scripts("take", "1" if keep else "0", *(c.instance_id for c in children))
        out: list[Record] = []
        for child, items in zip(children, lists, strict=True):
            for item in items:
                rec = json.loads(item)
                out.append(Record(child.id, child.location, rec["s"], rec["d"], float(rec["t"])))
        return out
