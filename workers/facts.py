"""The facts a worker reports about its host: read from the system, plus the operator's tags
and the ``@fact`` functions of the modules it loaded (see :mod:`fleetjobs.facts`).

Reading them costs a few small files under /proc and /etc and a name lookup (the FQDN), so
a worker reads them in a thread of their own, beside its heartbeat, every :data:`REFRESH`
seconds, and writes them only when they differ from what Redis holds: a heartbeat stays a
few small writes, and a slow name lookup never delays one.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fleetjobs.errors import FleetJobsError
from fleetjobs.facts import registered_facts
from fleetjobs.hosts import Hosts, facts_text
from fleetjobs.store import Store
from fleetjobs.version import __version__

REFRESH = 30.0
log = logging.getLogger("fleetjobs.worker")


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    key, sep, value = line.strip().partition("=")
                    if sep:
                        out[key] = value.strip().strip('"')
            return out
        except OSError:
            continue
    return out


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _boot_time() -> str | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    ts = int(line.split()[1])
                    return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OSError, ValueError):
        pass
    return None


def _addresses() -> list[str]:
    """The host's IPv4 and IPv6 addresses, loopback left out."""
    found: dict[str, None] = {}
    try:  # IPv4: the kernel's routing table of local addresses
        with open("/proc/net/fib_trie", encoding="ascii") as fh:
            lines = fh.read().splitlines()
        for prev, line in itertools.pairwise(lines):
            if "/32 host LOCAL" in line:
                addr = prev.split()[-1]
                if not addr.startswith("127."):
                    found[addr] = None
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                raw, *_, dev = line.split()
                if dev == "lo":
                    continue
                words = [raw[i : i + 4] for i in range(0, 32, 4)]
                found[str(socket.inet_ntop(socket.AF_INET6, bytes.fromhex("".join(words))))] = None
    except (OSError, ValueError):
        pass
    return sorted(found)


def collect(tags: dict[str, str]) -> dict[str, Any]:
    """This host's facts now (a custom fact that raises, or whose value is not JSON, is left
    out with a warning; the others stay)."""
    release = _os_release()
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "fqdn": socket.getfqdn(),
        "addresses": _addresses(),
        "os": release.get("ID", platform.system().lower()),
        "os_name": release.get("NAME", platform.system()),
        "os_version": release.get("VERSION_ID", ""),
        "os_pretty": release.get("PRETTY_NAME", ""),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
        "fleetjobs": __version__,
        "boot_time": _boot_time(),
    }
    for name, fn in registered_facts().items():
        try:
            value = fn()
        except Exception as exc:
            log.warning("fact %s failed: %s", name, exc)
            continue
        found = {str(k): v for k, v in value.items()} if isinstance(value, dict) else {name: value}
        for key, v in found.items():
            problem = _not_json(v)
            if problem:  # a set, a datetime, NaN: the whole report would fail to be written
                log.warning("fact %s left out: %s is %s", name, key, problem)
            else:
                facts[key] = v
    facts["tags"] = dict(tags)
    return facts


def _not_json(value: Any) -> str:
    """Why ``value`` cannot be a fact every console reads ('' when it can)."""
    try:
        facts_text({"fact": value})  # as the facts are written (hosts.publish_facts)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"not JSON ({exc})"
    return ""


class FactsReporter(threading.Thread):
    """Reports the host's facts for ``locations`` now, then whenever they change."""

    def __init__(
        self, store: Store, locations: Sequence[str], tags: dict[str, str], every: float = REFRESH
    ) -> None:
        super().__init__(name="fleetjobs-facts", daemon=True)
        self.hosts = Hosts(store)
        self.locations = list(locations)
        self.tags = dict(tags)
        self.every = every
        self._closing = threading.Event()

    def report(self) -> bool:
        """Write the facts where Redis holds other ones; returns whether it wrote."""
        return self.hosts.publish_facts(collect(self.tags), self.locations)

    def run(self) -> None:
        while not self._closing.is_set():
            try:
                self.report()
            except FleetJobsError as exc:
                log.warning("could not report facts (will retry): %s", exc)
            except Exception:
                log.exception("could not read facts")
            self._closing.wait(self.every)

    def close(self) -> None:
        self._closing.set()
