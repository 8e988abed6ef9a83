"""Rollouts: a start's ``--batch N`` / ``--batch 10%``, ``--batch-wait``, ``--max-failures``.

A rollout does its hosts in waves (Salt's ``-b``, Ansible's ``serial``) and halts once more
than ``max_failures`` hosts have failed (Salt's ``--failhard`` is ``max_failures=0``). Its
rules run in Redis (``lua/rollout.lua``): the worker that settles a wave's last child releases
the next wave, and the sweep releases a delayed one, so a rollout goes on after the console
that started it has exited. This module only turns what a person typed into numbers.
"""

from __future__ import annotations

import math
import re

from . import options
from .errors import ArgumentError

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def batch_size(
    batch: int | str | None,
    hosts: int,
    *,
    batch_wait: float = 0.0,
    max_failures: int | None = None,
    halt_running: bool = False,
    throttle: int | None = None,
) -> int | None:
    """The number of hosts per wave, or None for a job that is no rollout.

    Args:
        batch: hosts per wave, or a percentage of the hosts (``"10%"``, rounded up, at least
            one); None: no waves, unless ``max_failures`` asks for a halt (then waves of
            ``throttle`` hosts, the job's throttle limit, whose hosts not yet started are
            stopped when it halts: a rollout does not throttle, so its waves do).
        hosts: how many hosts the start selected.

    Raises:
        ArgumentError: a batch that is not a positive count or percentage, a negative wait or
            failure count, or waits and halts asked with no rollout.
    """
    batch_wait = options.seconds("batch wait", batch_wait, zero=True) or 0.0
    if max_failures is not None:
        options.count("max failures", max_failures, 0)
    if batch is None:
        if batch_wait:
            raise ArgumentError("--batch-wait needs --batch: it is the pause between waves")
        if halt_running and max_failures is None:
            raise ArgumentError("--halt-running needs --max-failures or --fail-fast")
        if max_failures is None:
            return None
        return max(1, min(hosts, throttle)) if throttle is not None else max(1, hosts)
    if isinstance(batch, str):
        text = batch.strip()
        found = _PERCENT.match(text)
        if found:
            percent = float(found.group(1))
            if not 0 < percent <= 100:
                raise ArgumentError(
                    f"batch {batch!r}: a percentage must be above 0 and at most 100"
                )
            return max(1, math.ceil(hosts * percent / 100))
        if not text.isdigit():
            raise ArgumentError(
                f"batch {batch!r} is neither a host count (5) nor a percentage (10%)"
            )
        batch = int(text)
    return options.count("batch (hosts per wave)", batch, 1)
