"""Actions: what a job runs, registered by name on the hosts that may run them.

An action is a function whose first parameter is the job's context (its streams, its stop
flag) and whose other parameters are the job's JSON arguments — the script block and
``-ArgumentList`` of ``Start-Job``. The console never ships code: it names an action, and each
worker runs only the actions registered in its own process (the built-ins, and the modules its
operator loaded with ``--include``).

::

    from fleetjobs import action

    @action
    def disk_free(ctx, path="/"):
        usage = shutil.disk_usage(path)
        return {"Path": path, "FreeGB": round(usage.free / 2**30, 1)}
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ActionSpec:
    """A registered action: its name, its function, whether it runs shell commands, and
    whether it marks checkpoints (``ctx.checkpoint()``) where its job may be suspended."""

    name: str
    fn: Callable[..., Any]
    shell: bool = False
    suspendable: bool = False

    @property
    def signature(self) -> str:
        """The parameters after the context, as a person would read them."""
        params = list(inspect.signature(self.fn).parameters.values())[1:]
        return " ".join(_param_text(p) for p in params)


_REGISTRY: dict[str, ActionSpec] = {}


def check_action_name(name: str) -> str:
    """``name`` if it can name an action.

    Raises:
        ValueError: it cannot (empty, spaces, punctuation).
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid action name {name!r}: letters, digits, '_', '.', '-'")
    return name


@overload
def action(fn: F, /) -> F: ...
@overload
def action(
    *, name: str | None = None, shell: bool = False, suspendable: bool = False
) -> Callable[[F], F]: ...


def action(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    shell: bool = False,
    suspendable: bool = False,
) -> F | Callable[[F], F]:
    """Register a function as an action, under its own name or ``name``.

    Args:
        name: the name jobs call it by (default: the function's name).
        shell: it runs shell commands, so a worker offers it only with ``--allow-shell``.
        suspendable: it calls ``ctx.checkpoint()`` (or ``ctx.sleep``) often enough that a
            suspend takes hold soon; a suspend of a job whose action is not is refused.
    """

    def register(f: F) -> F:
        spec = ActionSpec(check_action_name(name or f.__name__), f, shell, suspendable)
        _REGISTRY[spec.name] = spec
        return f

    return register(fn) if fn is not None else register


def registered() -> dict[str, ActionSpec]:
    """Every action registered in this process, by name."""
    return dict(_REGISTRY)


def get_action(name: str) -> ActionSpec | None:
    return _REGISTRY.get(name)


def _param_text(p: inspect.Parameter) -> str:
    if p.kind is p.VAR_POSITIONAL:
        return f"[{p.name.upper()} ...]"
    if p.kind is p.VAR_KEYWORD:
        return "[--kw KEY=VALUE ...]"
    if p.default is p.empty:
        return p.name.upper()
    return f"[{p.name}={p.default!r}]"
