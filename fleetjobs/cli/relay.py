"""``fleetjobs relay``: what confined workers may not write, written for them (fleetjobs.relay)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from .app import State, cli, loglevel_option, pass_state, url_off_the_command_line


@cli.command(
    epilog="Runs in the foreground; stop it with Ctrl-C or SIGTERM. Run it with a console's "
    "Redis user; run two or more to keep confined workers going when one stops (each request "
    "is taken by one)."
)
@loglevel_option("INFO")
@pass_state
def relay(state: State, loglevel: str) -> None:
    """Serve confined workers: write what they ask for their own location's jobs, and sweep.

    A confined worker (`fleetjobs worker --confined`, FLEETJOBS_CONFINED_TO) has a Redis user
    that writes only its own location's keys. Its jobs' state changes, records, heartbeats
    and dead letters touch the fleet's shared keys, so it asks the relay, which checks that
    each request is about that location's own jobs and makes it. The relay also does what
    confined workers may not: the fleet's sweep (start deadlines, dead hosts), the
    retention purge, and forgetting workers killed. Trusted workers need no relay.
    """
    url_off_the_command_line(state)
    from ..hosts import Hosts
    from ..relay import Relay

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    fleet = state.fleet
    keeping = fleet.housekeeping
    keeping.migrates = False  # an older version's indexes: moved by the first newer console

    hosts = Hosts(fleet.store)

    def upkeep() -> None:
        keeping.sweep(force=True)
        keeping.purge_expired()
        hosts.forget_now_and_then()  # confined workers killed: none of them forgets

    server = Relay(fleet.store, upkeep)
    logging.getLogger("fleetjobs.relay").info(
        "relay serving confined workers on %s", fleet.store.safe_url
    )
    server.run(stop)
    sys.exit(0)
