"""Custom facts whose values are not JSON (loaded by one worker of tests/test_facts.py)."""

from __future__ import annotations

from typing import Any

from fleetjobs import fact


@fact
def seen_on() -> set[int]:
    """A set: no JSON holds one."""
    return {1, 2}


@fact
def disk_map() -> dict[str, Any]:
    """Keys of two kinds, which the facts' sorted JSON cannot order."""
    return {"disks": {0: "sda", "boot": "sda1"}}


@fact
def ratios() -> dict[str, Any]:
    """Several facts at once, one of them NaN (not JSON either)."""
    return {"ratio_ok": 0.5, "ratio_bad": float("nan")}
