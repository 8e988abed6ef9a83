"""``fleetjobs flower``: Flower on the fleet's broker, with authentication required.

Flower reads the fleet through :mod:`fleetjobs.flower_app` (the fleet's key prefix, JSON only,
bounded metrics labels). The credentials come from ``FLEETJOBS_FLOWER_AUTH`` (``user:password``,
several comma-separated) and reach Flower through its own environment variable
``FLOWER_BASIC_AUTH``: never on a command line, where ``ps`` would show them to every user of
the host. Without credentials it refuses to start, unless ``--no-auth`` on a loopback address.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys

import click

from .app import EXIT_USAGE, State, cli, fail, fleet_env, pass_state

AUTH_ENV = "FLEETJOBS_FLOWER_AUTH"


def is_loopback(address: str) -> bool:
    """Whether only this machine can reach ``address``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_auth(text: str) -> str:
    """``text`` if every entry is ``user:password`` with both parts non-empty.

    Raises:
        click.UsageError: an entry is not of that form (the secret is never echoed).
    """
    for entry in text.split(","):
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise click.UsageError(
                f"{AUTH_ENV} must be user:password (several comma-separated); "
                f"an entry has {'no password' if sep else 'no colon'}"
            )
    return text


@cli.command(
    epilog=f"Credentials: {AUTH_ENV}=user:password in the environment (never on the command "
    "line). Exit codes: 2 bad input or no credentials."
)
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--no-auth",
    is_flag=True,
    help="Run without authentication: allowed only on a loopback address.",
)
@pass_state
def flower(state: State, port: int, address: str, no_auth: bool) -> None:
    """Run Flower on the fleet's broker: tasks named Name@location, workers by location."""
    auth = os.environ.get(AUTH_ENV, "")
    if no_auth:
        if not is_loopback(address):
            fail(
                f"--no-auth only on a loopback address (127.0.0.1, ::1), not {address}: "
                f"set {AUTH_ENV}=user:password instead",
                EXIT_USAGE,
            )
        auth = ""
    elif not auth:
        fail(
            f"Flower needs credentials: set {AUTH_ENV}=user:password "
            "(or --no-auth on a loopback address)",
            EXIT_USAGE,
        )
    else:
        check_auth(auth)
    if importlib.util.find_spec("flower") is None:
        fail("Flower is not installed here: pip install 'flower>=2'", EXIT_USAGE)
    _check_listen(address, port)
    env = fleet_env(state.config)
    env.pop("FLOWER_BASIC_AUTH", None)
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    if auth:
        env["FLOWER_BASIC_AUTH"] = auth
    else:
        # Flower's pages read its API: without auth, the API must be opened too (loopback only)
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "fleetjobs.flower_app",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]
    os.execve(sys.executable, argv, env)


def _check_listen(address: str, port: int) -> None:
    """Say in one line (exit 2) that Flower could not listen where it is asked, before it
    is started: it would end in a traceback (a port taken, an address that is none here)."""
    import errno
    import socket

    host = address or None  # '' is every interface, to Flower's server as to getaddrinfo
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        fail(f"--address {address!r} is no address of this machine: {exc}", EXIT_USAGE)
    for family, kind, proto, _, where in infos:  # each one its server would listen on
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Flower's does
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(where)
        except OSError as exc:
            if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) and len(infos) > 1:
                continue  # a family this machine lacks (IPv6 off): its server skips it too
            fail(f"Flower cannot listen on {address} port {port}: {exc.strerror}", EXIT_USAGE)
