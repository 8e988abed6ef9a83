"""Actions' parameters as data: what a worker publishes with its heartbeat (Get-Command), and
how a console binds a command line's words and a call's keywords to them before anything is
queued.

A parameter is ``{"name", "kind", "type", "required", "default"}``: ``kind`` is
``positional`` (positional-or-keyword), ``keyword`` (keyword-only), ``var_positional``
(``*args``) or ``var_keyword`` (``**kwargs``); ``type`` is ``str``, ``int``, ``float``,
``bool`` or ``any`` (from the annotation; ``any`` guesses JSON, as before signatures).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ArgumentError

Param = dict[str, Any]
_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
_INSPECT = {
    "positional": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "keyword": inspect.Parameter.KEYWORD_ONLY,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}
_TYPES = {"str", "int", "float", "bool"}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def describe(fn: Callable[..., Any]) -> list[Param]:
    """The parameters of an action function after its context, as JSON-able data."""
    out = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        default = None if p.default is p.empty else p.default
        try:
            json.dumps(default)
        except (TypeError, ValueError):
            default = repr(default)
        out.append(
            {
                "name": p.name,
                "kind": _KINDS[p.kind],
                "type": _type_name(p.annotation),
                "required": p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY),
                "default": default,
            }
        )
    return out


def well_formed(params: Any) -> bool:
    """Whether a published parameter list is one :func:`describe` could have made (a host's
    record is data from another machine: a malformed one says nothing)."""
    return isinstance(params, list) and all(
        isinstance(p, dict)
        and isinstance(p.get("name"), str)
        and p.get("kind") in _INSPECT
        and p.get("type") in (*_TYPES, "any")
        and isinstance(p.get("required"), bool)
        and "default" in p
        for p in params
    )


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [t.strip() for t in str(text).split("|") if t.strip() and t.strip() != "None"]
    return parts[0] if len(parts) == 1 and parts[0] in _TYPES else "any"


def text(params: Sequence[Param]) -> str:
    """The parameters as a person reads them: ``COMMAND [ARGV ...] [--keep-children]``."""
    words = []
    for p in params:
        option = "--" + p["name"].replace("_", "-")
        if p["kind"] == "var_positional":
            words.append(f"[{p['name'].upper()} ...]")
        elif p["kind"] == "var_keyword":
            words.append("[--KEY VALUE ...]")
        elif p["kind"] == "keyword":
            value = "" if p["type"] == "bool" else f" {p['type'].upper()}"
            words.append(f"{option}{value}" if p["required"] else f"[{option}{value}]")
        elif p["required"]:
            words.append(p["name"].upper())
        else:
            words.append(f"[{p['name'].upper()}={json.dumps(p['default'])}]")
    return " ".join(words)


def convert(raw: str, kind: str, what: str) -> Any:
    """A command-line word as the parameter's type (``any``: JSON when it parses, else text).

    Raises:
        ArgumentError: it is not of that type, or not text at all (bytes the terminal's
            encoding could not decode).
    """
    try:
        raw.encode()
    except UnicodeEncodeError:
        raise ArgumentError(f"{what}: {raw!r} is not valid UTF-8 text") from None
    if kind == "str":
        return raw
    if kind in ("int", "float"):
        try:
            return int(raw)  # an int is a float too, and reads as typed: `sleep 5`
        except ValueError:
            pass
        try:
            if kind == "float" and math.isfinite(value := float(raw)):
                return value
        except ValueError:
            pass
        article = "an" if kind == "int" else "a"
        raise ArgumentError(f"{what} must be {article} {kind}, got {raw!r}")
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ArgumentError(f"{what} must be true or false, got {raw!r}")
    try:
        return strict_json(raw)
    except RecursionError:
        raise ArgumentError(f"{what}: {raw[:40]!r}... nests deeper than JSON allows") from None
    except ValueError as exc:
        if raw.lstrip()[:1] in ("{", "["):
            raise ArgumentError(f"{what}: {raw!r} looks like JSON but is not: {exc}") from None
        return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a JSON number's range")
    return value


def strict_json(raw: str) -> Any:
    """``raw`` read as JSON as the standard has it: Python's reader also takes ``NaN``,
    ``Infinity`` and ``1e999`` (read as inf), which no JSON can carry on to a worker.

    Raises:
        ValueError: ``raw`` is not JSON.
    """
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)


def bind_words(
    action: str, params: Sequence[Param], words: Sequence[str]
) -> tuple[list[Any], dict[str, Any]]:
    """What followed ACTION on a command line, bound to the action's parameters.

    ``--name value`` / ``--name=value`` / ``--flag`` set a parameter by name (dashes become
    underscores); other words fill the positional parameters in order, each converted to its
    type (``run true`` stays the text ``true``). An action whose ``*args`` are ``str`` (``run``)
    takes every word from its first positional one on as it is, options included.

    Raises:
        ArgumentError: an option the action does not take (the message names its parameters,
            and says that the verb's own options go before ACTION), a value of the wrong type,
            or too many words.
    """
    by_name = {p["name"]: p for p in params if p["kind"] in ("positional", "keyword")}
    positional = [p for p in params if p["kind"] == "positional"]
    rest = next((p for p in params if p["kind"] == "var_positional"), None)
    any_kw = any(p["kind"] == "var_keyword" for p in params)
    takes_words = rest is not None and rest["type"] == "str"
    raw_args: list[str] = []
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            raw_args.extend(words[i + 1 :])
            break
        if not word.startswith("--") or len(word) < 3 or (takes_words and raw_args):
            raw_args.append(word)
            i += 1
            continue
        key, sep, value = word[2:].partition("=")
        key = key.replace("-", "_")
        param = by_name.get(key)
        if param is None and not (any_kw and key.isidentifier()):
            raise ArgumentError(
                f"{action} takes no option --{key.replace('_', '-')} (its parameters: "
                f"{text(params) or 'none'}); options of the verb go before ACTION"
            )
        kind = param["type"] if param else "any"
        if not sep:
            nxt = words[i + 1] if i + 1 < len(words) else None
            if kind == "bool" and (nxt is None or nxt.lower() not in _TRUE | _FALSE):
                value = "true"
            elif nxt is not None and not nxt.startswith("--"):
                value = nxt
                i += 1
            elif kind in ("bool", "any"):
                value = "true"
            else:
                raise ArgumentError(f"{action}: option --{key.replace('_', '-')} needs a value")
        kwargs[key] = convert(value, kind, f"{action}: --{key.replace('_', '-')}")
        i += 1
    args = []
    for n, raw in enumerate(raw_args):
        param = positional[n] if n < len(positional) else rest
        if param is None:
            raise ArgumentError(
                f"{action} takes {len(positional)} argument(s), got {len(raw_args)}: "
                f"{' '.join(raw_args)!r} (its parameters: {text(params) or 'none'})"
            )
        args.append(convert(raw, param["type"], f"{action}: {param['name'].upper()}"))
    return args, kwargs


def check_call(
    action: str, params: Sequence[Param], args: Sequence[Any], kwargs: dict[str, Any]
) -> None:
    """Refuse a call the action cannot take (a missing or unknown argument), before it is
    queued.

    Raises:
        ArgumentError: the message names the action's parameters.
    """
    signature = inspect.Signature(
        [
            inspect.Parameter(
                p["name"],
                _INSPECT[p["kind"]],
                default=inspect.Parameter.empty
                if p["required"] or p["kind"].startswith("var")
                else p["default"],
            )
            for p in params
        ]
    )
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentError(f"{action}: {exc} (its parameters: {text(params) or 'none'})") from None
    # and each value of the type its parameter declares (str, int, float, bool), as the
    # command line's words are converted: a Python call does not learn it from the worker
    for p in params:
        if p["name"] not in bound.arguments or p.get("type") not in _TYPES:
            continue
        given = bound.arguments[p["name"]]
        values = (
            given
            if p["kind"] == "var_positional"
            else given.values()
            if p["kind"] == "var_keyword"
            else [given]
        )
        for value in values:
            if value is None or _of_type(value, p["type"]):
                continue
            what = f"{action}: {p['name'].upper()}"
            if isinstance(value, str):
                convert(value, p["type"], what)  # text the command line reads as one ("5")
                continue
            raise ArgumentError(f"{what} must be {_A[p['type']]}, got {value!r}")


_A = {"str": "text", "int": "a whole number", "float": "a number", "bool": "True or False"}


def _of_type(value: Any, kind: str) -> bool:
    """Whether a JSON value is one of a parameter's declared type (None is left to it)."""
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # True is an int to Python, not a number to a person
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)
