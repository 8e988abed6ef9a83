"""Facts: what a host is, as its worker reports it, and the ``--where`` filters that select by it.

A worker reports its host's facts with its heartbeat (written to Redis only when they
change): hostname, FQDN, addresses, OS, kernel, architecture, CPU count, memory, Python and
fleetjobs versions, boot time, its operator's tags, and whatever the ``@fact`` functions of
the modules it loaded with ``--include`` return (Salt's custom grains)::

    from fleetjobs import fact

    @fact
    def rack():                       # the fact 'rack'
        return open("/etc/rack").read().strip()

    @fact
    def gpus():                       # a dict: several facts at once
        return {"gpu_count": 2, "gpu_model": "A100"}

A filter is ``NAME OP VALUE``: ``=`` (or ``==``) and ``!=`` match a glob, case-insensitively
(a list fact such as ``addresses`` matches if any item does); ``>``, ``>=``, ``<``, ``<=``
compare numbers, or versions (``kernel>=6.1``). A host lacking the fact fails the filter. A
name that is no fact is looked up among the host's tags.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from .errors import ArgumentError

F = TypeVar("F", bound=Callable[[], Any])
_FILTER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")
_VERSION = re.compile(r"\d+(?:\.\d+)*")
_FACTS: dict[str, Callable[[], Any]] = {}


@overload
def fact(fn: F, /) -> F: ...
@overload
def fact(*, name: str | None = None) -> Callable[[F], F]: ...


def fact(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register a function (no arguments) whose value is a fact of the host, under its own name
    or ``name``; a function returning a dict gives each of its keys as a fact."""

    def register(f: F) -> F:
        _FACTS[name or f.__name__] = f
        return f

    return register(fn) if fn is not None else register


def registered_facts() -> dict[str, Callable[[], Any]]:
    """Every ``@fact`` function registered in this process, by name."""
    return dict(_FACTS)


@dataclass(frozen=True)
class Where:
    """One ``--where`` filter."""

    text: str
    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Where:
        """Raises: ArgumentError: not ``NAME OP VALUE``, or an order with no number in it."""
        found = _FILTER.match(text)
        if not found:
            raise ArgumentError(
                f"--where {text!r} is not NAME OP VALUE (os=debian, memory_gb>=8, kernel=6.*)"
            )
        name, op, value = found.groups()
        if op in (">", ">=", "<", "<=") and _order_key(value) is None:
            raise ArgumentError(f"--where {text!r}: {op} needs a number or a version")
        return cls(text.strip(), name, "=" if op == "==" else op, value)

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """Whether a host with these facts (``tags`` among them) passes."""
        value = facts.get(self.name)
        if value is None:
            value = (facts.get("tags") or {}).get(self.name)
        if value is None:
            return False
        items = value if isinstance(value, list) else [value]
        if self.op == "=":
            return any(_equal(item, self.value) for item in items)
        if self.op == "!=":
            return not any(_equal(item, self.value) for item in items)
        return any(_ordered(item, self.op, self.value) for item in items)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _equal(value: Any, pattern: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(pattern)
        except ValueError:
            pass
    return fnmatch.fnmatchcase(_text(value).lower(), pattern.lower())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _version(value: Any) -> tuple[int, ...] | None:
    found = _VERSION.match(_text(value).strip())
    return tuple(int(x) for x in found.group(0).split(".")) if found else None


def _order_key(value: Any) -> float | tuple[int, ...] | None:
    """A number, or a version's numbers (``6.1.0-18-amd64``: (6, 1, 0)); None for neither."""
    number = _number(value)
    return number if number is not None else _version(value)


def _ordered(value: Any, op: str, bound: str) -> bool:
    left: Any = _number(value)
    right: Any = _number(bound)
    if left is None or right is None:  # one of them is a version: compare both as versions
        left, right = _version(value), _version(bound)
        if left is None or right is None:
            return False
        size = max(len(left), len(right))  # 6.1 == 6.1.0
        left += (0,) * (size - len(left))
        right += (0,) * (size - len(right))
    return bool(
        {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
    )
