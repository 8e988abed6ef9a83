"""The registry's Lua scripts, loaded by name from ``fleetjobs/lua/*.lua``.

Every change of a job's state is one script run inside Redis, so a state, its parent's state,
the host's running set, the throttle queue and the event published for waiters change together
or not at all. Each script is its ``.lua`` file behind a generated header that gives it the
names it must not spell itself: ``S`` (the state names of :mod:`fleetjobs.states`), ``FIN``
(the finished ones), ``IXN`` (top-level jobs per history bucket), ``K`` (the key builders of
:mod:`fleetjobs.keys`) and ``EV`` (the pub/sub messages), then ``common.lua`` (``fields``:
HMGET by name; ``ix_add``, ``ix_rem``: the history indexes). The state-changing scripts also
get ``prelude.lua`` (``move``, ``settle``, ``refresh_parent``...) and ``rollout.lua`` (a
rollout's waves and halts, the failed index). Every script takes ``ARGV[1]`` = key prefix and
``ARGV[2]`` = now (Unix seconds) and computes its keys from them: the fleet lives in one Redis,
not a cluster.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection
from functools import cache
from importlib import resources
from typing import Any

import redis.exceptions

from .keys import EVENT_END, EVENT_RECORD, EVENT_STATE, EVENT_STOP, IX_BUCKET, SCHEMA
from .states import FINISHED, JobState

# the scripts that change a job's state share prelude.lua; the others need only the header
STATE_CHANGES = ("claim", "finish", "stop", "sweep", "ask", "answer", "suspend", "park", "resume")
RECORDS = ("append", "take", "ack", "unqueue")
# read only: snapshots, a wait's look, counts, a history index's ids
READS = ("load", "poll", "hosts", "letters", "topids")
# a job created in one command; a heartbeat per worker; the messages a worker may re-send
# its history indexes out (removal) or moved into buckets (an older version's)
WRITES = ("newid", "create", "beat", "overdue", "resend", "pgroups", "unindex", "migrate")


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def header(keys: Collection[str] | None = None) -> str:
    """The generated names every script starts with; of the key builders only ``keys`` when
    given (Redis runs the header at every call: each name costs it a string or a closure)."""
    lines = ["local P = ARGV[1]", "local NOW = ARGV[2]", "local S = {"]
    lines += [f"  {s.name} = {_lua_string(s.value)}," for s in JobState]
    lines.append("}")
    finished = ", ".join(f"[{_lua_string(s.value)}] = true" for s in sorted(FINISHED))
    lines.append(f"local FIN = {{{finished}}}")
    lines.append(f"local IXN = {IX_BUCKET}")
    lines.append("local K = {}")
    for name, template in SCHEMA.items():
        if keys is not None and name not in keys:
            continue
        if "{}" in template:
            head, tail = template.split("{}")
            tail_lua = f" .. {_lua_string(tail)}" if tail else ""
            lines.append(f"function K.{name}(x) return P .. {_lua_string(head)} .. x{tail_lua} end")
        else:
            lines.append(f"K.{name} = P .. {_lua_string(template)}")
    lines.append(
        f"local EV = {{STATE = {_lua_string(EVENT_STATE)}, END = {_lua_string(EVENT_END)}, "
        f"RECORD = {_lua_string(EVENT_RECORD)}, STOP = {_lua_string(EVENT_STOP)}}}"
    )
    return "\n".join(lines) + "\n"


KEY_USE = re.compile(r"\bK\.(\w+)")


def _read(name: str) -> str:
    return resources.files("fleetjobs").joinpath("lua", f"{name}.lua").read_text("utf-8")


@cache
def body(name: str) -> str:
    """The script ``name`` after its header: ``common.lua``, for the state-changing ones
    ``prelude.lua`` and ``rollout.lua``, then its own file."""
    if name not in STATE_CHANGES + RECORDS + READS + WRITES:
        raise KeyError(f"no Lua script named {name!r}")
    parts = [_read("common")]
    if name in STATE_CHANGES:
        parts += [_read("prelude"), _read("rollout")]
    parts.append(_read(name))
    return "\n".join(parts)


@cache
def source(name: str) -> str:
    """The full text of the script ``name`` as Redis runs it: the header, with the key
    builders its body names (``K.job``...; ``K`` is never indexed by a computed name), then
    its body."""
    text = body(name)
    return header(frozenset(KEY_USE.findall(text))) + "\n" + text


class Scripts:
    """The scripts run on one client: by SHA, and sent whole (EVAL, which caches it in Redis)
    only when Redis does not know it yet. Never SCRIPT LOAD: a read-only user may run EVAL
    and EVALSHA but not SCRIPT."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._scripts: dict[str, tuple[str, str]] = {}  # name -> (sha, source), on first use

    def __call__(self, name: str, *args: Any) -> Any:
        """Run script ``name`` with its own arguments (after the prefix and now)."""
        found = self._scripts.get(name)
        if found is None:
            text = source(name)
            found = self._scripts[name] = (hashlib.sha1(text.encode()).hexdigest(), text)
        sha, text = found
        argv = [self._prefix, repr(time.time()), *args]
        try:
            return self._client.evalsha(sha, 0, *argv)
        except redis.exceptions.NoScriptError:
            return self._client.eval(text, 0, *argv)
