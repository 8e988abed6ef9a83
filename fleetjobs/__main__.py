"""``python -m fleetjobs``: the fleetjobs command."""

from fleetjobs.cli import main

main()
