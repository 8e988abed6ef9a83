"""Placement: which hosts a start's locations, tags and ``--all`` select, and whether they can
run the action (checked before anything is queued)."""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .config import default_location
from .errors import (
    ArgumentError,
    FleetJobsError,
    NoHostError,
    NotSignedError,
    ShellNotAllowedError,
    UnknownActionError,
)
from .facts import Where
from .model import HostInfo
from .routing import is_glob, select_locations
from .signatures import check_call, well_formed

SHELL_ACTIONS = frozenset({"run"})


def select(
    wanted: list[str],
    target: Sequence[str],
    all_hosts: bool,
    hosts: dict[str, HostInfo],
    where: Sequence[str] = (),
) -> list[str]:
    """The locations a start runs on, in order.

    ``where`` filters what the locations, target and ``all_hosts`` selected by the hosts'
    facts; alone, it filters every online host.

    Raises:
        NoHostError: ``all_hosts`` with no host online, or a glob, target or fact filter that
            matched none.
        ArgumentError: a fact filter that is not ``NAME OP VALUE``.
    """
    filters = [Where.parse(w) for w in where]
    if filters and not wanted and not target and not all_hosts:
        all_hosts = True
    online = {loc: h for loc, h in hosts.items() if h.online}
    if all_hosts:
        if not online:
            what = "--where " + repr(where[0]) if filters and not wanted else "--all"
            raise NoHostError(f"{what} selected no host: no worker is online")
        wanted = [*wanted, *sorted(online)]
    if not wanted and not target:
        wanted = [default_location()]
    tags = {loc: h.tags for loc, h in online.items()}
    chosen = select_locations(wanted, online, tags, target)
    for flt in filters:
        before = len(chosen)
        chosen = [
            loc
            for loc in chosen
            if loc in hosts and flt.matches({**hosts[loc].facts, "tags": hosts[loc].tags})
        ]
        if not chosen:
            raise NoHostError(f"--where {flt.text!r} matched none of the {before} hosts selected")
    return chosen


def nearest_in(every: Callable[[], Iterable[HostInfo]]) -> Callable[[str], str | None]:
    """A typo's suggestion: the online location nearest a name no worker serves (``web1``:
    ``web01``), from ``every()`` host, read once, on the first name asked about (a start
    reads only its own hosts' records)."""
    names: list[str] | None = None

    def near(location: str) -> str | None:
        nonlocal names
        if names is None:
            names = sorted(h.location for h in every() if h.online)
        found = difflib.get_close_matches(location, names, n=1, cutoff=0.75)
        return found[0] if found and found[0] != location else None

    return near


def check(
    action: str,
    locations: list[str],
    hosts: dict[str, HostInfo],
    wanted: Sequence[str] | None = None,
    near: Callable[[str], str | None] | None = None,
    can_sign: bool = True,
) -> list[str]:
    """Warnings for locations no live worker serves; refuse an action a live host lacks, or
    from a console that cannot sign (``can_sign``), a job for a live host that runs only
    signed ones (its worker would refuse the message).

    A host a target, a glob or ``--all`` chose (not named in ``wanted``, when given) that
    cannot run the job is a warning, not a refusal, while another chosen host may run it:
    its part fails on its worker, saying why, and the rest run (a host that joined a role
    without ``--allow-shell``, or a fleet that moves to signing a host at a time, must not
    stop a fleet-wide run everywhere).

    Raises:
        ShellNotAllowedError: ``run`` on a live host whose operator did not allow it.
        UnknownActionError: a live host that does not offer ``action``.
        NotSignedError: a live host that runs only signed jobs, from a console that signs
            none (a schedule's firing records it as a Failed run).
    """
    named = None if wanted is None else {w for w in wanted if not is_glob(w)}
    warnings: list[str] = []
    refused: list[FleetJobsError] = []
    unserved = 0
    for loc in locations:
        host = hosts.get(loc)
        if host is None or not host.online:
            unserved += 1
            guess = near(loc) if near is not None and host is None and unserved <= 10 else None
            also = f" (did you mean {guess!r}?)" if guess else ""
            warnings.append(
                f"no worker serves location {loc!r} now{also}; its job waits as NotStarted "
                f"until one does (start one with: fleetjobs worker --location {loc})"
            )
            continue
        problem: FleetJobsError | None = None
        if action in SHELL_ACTIONS and not host.allow_shell:
            problem = ShellNotAllowedError(
                f"the worker on {loc} does not allow {action!r}: its operator must start it "
                "with --allow-shell"
            )
        elif action not in host.actions:
            offers = ", ".join(sorted(host.actions)) or "nothing"
            problem = UnknownActionError(
                f"unknown action {action!r}: the worker on {loc} offers {offers}"
            )
        elif host.signed and not can_sign:
            problem = NotSignedError(
                f"the workers on {loc} run only signed jobs, and this console signs none: set "
                "FLEETJOBS_SIGNING_KEY, FLEETJOBS_SIGNING_CERT and FLEETJOBS_CERT_STORE"
            )
        if problem is None:
            continue
        if named is None or loc in named:
            raise problem
        refused.append(problem)
        warnings.append(f"{problem} (its part fails; the other hosts run it)")
    if refused and len(refused) == len(locations):
        raise refused[0]  # no host chosen could ever run it
    return warnings


def check_arguments(
    action: str,
    hosts: dict[str, HostInfo],
    locations: Sequence[str],
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> None:
    """Refuse, before anything is queued, a call the action's parameters, as these hosts
    publish them (:func:`params_for`), cannot take; a call no host has said anything of is
    left to the worker.

    Raises:
        ArgumentError: see :func:`fleetjobs.signatures.check_call`.
    """
    params = params_for(action, hosts, locations)
    if params is not None:
        check_call(action, params, args, kwargs)


def params_for(
    action: str, hosts: dict[str, HostInfo], locations: Sequence[str] | None = None
) -> list[dict[str, Any]] | None:
    """The action's parameters as the hosts publish them: the hosts at ``locations`` (names
    or globs) when any of them is known, else every online host; None when none has said
    (the call is then not checked here). The arguments are the job's, one set for all its
    hosts, so the hosts must agree: one host's word does not decide another's arguments.

    Raises:
        ArgumentError: those hosts publish different parameters for ``action``.
    """
    wanted = set(locations or ())  # a set: a fan-out to 10,000 is no 10,000 x 10,000 scan
    globs = [w for w in wanted if is_glob(w)]
    chosen = [
        h
        for h in hosts.values()
        if h.location in wanted or any(fnmatch.fnmatchcase(h.location, g) for g in globs)
    ]
    pool = chosen or [h for h in hosts.values() if h.online]
    said: dict[str, tuple[list[dict[str, Any]], str]] = {}
    seen: set[int] = set()  # a worker's locations share its document: compared once
    for host in sorted(pool, key=lambda h: h.location):
        published = host.signatures.get(action)
        if published is not None and id(published) not in seen and well_formed(published):
            seen.add(id(published))
            params = list(published)
            said.setdefault(json.dumps(params, sort_keys=True), (params, host.location))
    if len(said) > 1:
        where = ", ".join(loc for _, loc in said.values())
        raise ArgumentError(
            f"the hosts disagree on what {action!r} takes ({where} publish different "
            "parameters: different versions?): start it on each kind of host separately"
        )
    return next(iter(said.values()))[0] if said else None


# the first version whose workers find a job by an InstanceId that carries its Id
# (model.new_instance_id); an older one reads the iids index for every InstanceId
CARRIED_IDS_SINCE = (0, 2)


def needs_iid_index(locations: Sequence[str], hosts: dict[str, HostInfo]) -> bool:
    """Whether a job on these locations must put every InstanceId in the iids index: some
    location's worker, or the relay of a confined one, is older than
    :data:`CARRIED_IDS_SINCE` or not known (upgrade the workers and relays first; until then
    their jobs cost the index's 100 B per InstanceId)."""
    return any(_older(hosts.get(loc)) for loc in locations)


def _older(host: HostInfo | None) -> bool:
    if host is None:
        return True
    if host.confined and _version(host.relay_version) < CARRIED_IDS_SINCE:
        return True
    return _version(host.version) < CARRIED_IDS_SINCE


def _version(text: str) -> tuple[int, ...]:
    """``0.2.0`` as (0, 2, 0); what does not read as one is older than any."""
    parts = text.split(".")
    if not all(p.isascii() and p.isdigit() for p in parts):
        return ()
    return tuple(int(p) for p in parts)


def place(
    action: str,
    wanted: list[str],
    target: Sequence[str],
    all_hosts: bool,
    where: Sequence[str],
    lookup: Callable[[bool], dict[str, HostInfo]],
    near: Callable[[str], str | None] | None = None,
    can_sign: bool = True,
) -> tuple[list[str], list[str], dict[str, HostInfo]]:
    """:func:`select` and :func:`check` on the hosts ``lookup(fresh)`` gives: first as this
    process saw them a moment ago (a start in a loop reads no host records), and again on
    fresh ones at any doubt (an error, a warning), so what a start says is never stale.

    Returns:
        The locations, the warnings and the hosts they were chosen from.
    """
    hosts = lookup(False)
    try:
        locs = select(wanted, target, all_hosts, hosts, where)
        warnings = check(action, locs, hosts, wanted, None, can_sign)
        if not warnings:
            return locs, warnings, hosts
    except FleetJobsError:
        pass
    hosts = lookup(True)
    locs = select(wanted, target, all_hosts, hosts, where)
    return locs, check(action, locs, hosts, wanted, near, can_sign), hosts
