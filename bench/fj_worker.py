"""``python -m bench.fj_worker --pool threads ARGS``: a fleetjobs worker on another pool.

A fleetjobs worker always asks Celery for the prefork pool; the throughput benchmark also
measures Celery's threads pool, on both sides. This starts the very same worker
(``python -m workers ARGS``, or ``fleetjobs.workers`` once it is installed under that name)
with only the ``--pool`` it hands to Celery's ``worker_main`` replaced.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def main(argv: list[str]) -> int:
    pool = "prefork"
    if argv[:1] == ["--pool"]:
        pool, argv = argv[1], argv[2:]
    from celery import Celery

    original = Celery.worker_main

    def worker_main(self: Any, args: list[str] | None = None) -> Any:
        args = list(args or [])
        if "--pool" in args:
            args[args.index("--pool") + 1] = pool
        return original(self, args)

    Celery.worker_main = worker_main
    try:
        module = importlib.import_module("fleetjobs.workers.__main__")
    except ModuleNotFoundError:
        module = importlib.import_module("workers.__main__")
    return int(module.main(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
