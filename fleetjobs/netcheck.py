"""Reachability checks from a host or a console: ICMP echo and TCP connect (``ping``).

ICMP is tried where the host permits it (an unprivileged ICMP socket, where
``net.ipv4.ping_group_range`` allows it, or a raw socket as root); otherwise, or when asked,
a TCP connect to a port shows whether the target answers at all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _icmp_socket() -> tuple[socket.socket, bool] | None:
    """An ICMP socket and whether replies carry an IP header (raw), or None if not permitted."""
    with contextlib.suppress(OSError):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    with contextlib.suppress(OSError):
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True
    return None


def icmp_ping(address: str, timeout: float) -> float | bool | None:
    """One ICMP echo: the round trip in ms, None if no reply in time, False if ICMP is not
    permitted on this host (the caller falls back to TCP)."""
    opened = _icmp_socket()
    if opened is None:
        return False
    sock, raw = opened
    ident = os.getpid() & 0xFFFF
    seq = int(time.monotonic() * 1000) & 0xFFFF
    payload = b"fleetjobs-ping"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
    with sock:
        sock.settimeout(timeout)
        began = time.monotonic()
        try:
            sock.sendto(packet, (address, 0))
            deadline = began + timeout
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                data, _ = sock.recvfrom(2048)
                if raw:
                    data = data[(data[0] & 0x0F) * 4 :]
                kind, _, _, _, got_seq = struct.unpack("!BBHHH", data[:8])
                # an unprivileged socket rewrites the id, so match on type and sequence
                if kind == 0 and got_seq == seq:
                    return (time.monotonic() - began) * 1000
        except TimeoutError:
            return None
        except OSError:
            return None


def tcp_ping(address: str, port: int, timeout: float) -> float | None:
    """A TCP connect: the time to connect in ms, or None. A refusal still means it answers."""
    began = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return (time.monotonic() - began) * 1000
    except OSError:
        return None
    return (time.monotonic() - began) * 1000


def reach(
    target: str,
    count: int = 1,
    timeout: float = 2.0,
    port: int | None = None,
    before_try: Callable[[], None] = lambda: None,
    unresolved: Callable[[str], None] = lambda target: None,
) -> dict[str, object]:
    """Is ``target`` reachable from this machine: ICMP where permitted, else (or with
    ``port``) a TCP connect (default port 22). A console's ``ping`` and the ``ping`` action
    (with its job's stop check and warning as ``before_try`` and ``unresolved``) both ask this.

    Returns:
        ``{"Server", "Online", "RttMs", "Method"}``; RttMs is the best of ``count`` tries.
    """
    try:
        address = socket.gethostbyname(target)
    except OSError:
        unresolved(target)
        return {"Server": target, "Online": False, "RttMs": None, "Method": "dns"}
    best: float | None = None
    method = "tcp"
    for _ in range(max(1, int(count))):
        before_try()
        rtt: float | bool | None = False
        if port is None:
            rtt = icmp_ping(address, float(timeout))
            method = "icmp" if rtt is not False else "tcp"
        if rtt is False:
            rtt = tcp_ping(address, int(port or 22), float(timeout))
        if isinstance(rtt, float) and (best is None or rtt < best):
            best = rtt
    return {
        "Server": target,
        "Online": best is not None,
        "RttMs": None if best is None else round(best, 3),
        "Method": method,
    }
