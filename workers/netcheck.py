"""The ``ping`` action's reachability checks: the same as a console's own
(:mod:`fleetjobs.netcheck`), so ``ping`` answers alike from a console and from a host."""

from __future__ import annotations

from fleetjobs.netcheck import icmp_ping, tcp_ping

__all__ = ["icmp_ping", "tcp_ping"]
