"""``python -m fleetjobs.workers``: run a fleetjobs worker (``fleetjobs worker`` starts this)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from celery import signals

from fleetjobs.config import Config, default_location
from fleetjobs.errors import FleetJobsError, RedisUnavailableError
from fleetjobs.monitor import node_name
from fleetjobs.routing import queue_for, split_locations
from fleetjobs.store import Store

from . import reaper
from .archive import ROOTS_ENV

MAX_CONCURRENCY = 1024  # pool processes (or threads) a worker runs at most


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m fleetjobs.workers",
        description="Run a fleetjobs worker: what `fleetjobs worker` starts, once it has read "
        "its own options (-c, --confined, ...; see fleetjobs worker --help).",
    )
    # accepted for old scripts only: argv is in every `ps`, so nothing generates it; the URL
    # comes from FLEETJOBS_REDIS_URL
    ap.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="LOC",
        help="location(s) to serve, each its own queue (default: this hostname)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (default: CPUs, >= 2)"
    )
    ap.add_argument(
        "--allow-shell", action="store_true", help="offer the run action (command lines)"
    )
    ap.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE for its @action functions (repeatable)",
    )
    ap.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag for targeting"
    )
    ap.add_argument(
        "--archive-root",
        action="append",
        default=[],
        metavar="DIR",
        help="archive_logs reads and writes only under this folder (repeat for more; "
        "default: wherever this worker's user may)",
    )
    ap.add_argument(
        "--loglevel",
        default="WARNING",
        type=str.upper,
        # what Celery's --loglevel takes (WARN and FATAL too: units written for it still work)
        choices=["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET"],
        help="default: WARNING",
    )
    ap.add_argument(
        "--fresh-process", action="store_true", help="run each job in a new pool process"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # before any pool process is forked: a run command must not read its credential
    reaper.not_dumpable()
    ns = parse(sys.argv[1:] if argv is None else argv)
    try:
        config = Config.from_env(redis_url=ns.redis_url)
        confined = config.confined_to
        named = split_locations(ns.location)
        if ns.location and not named:
            raise FleetJobsError(f"no location named in --location {' '.join(ns.location)!r}")
        locations = named or [confined or default_location()]
        if confined and locations != [confined]:
            raise FleetJobsError(
                f"a worker confined to {confined} (FLEETJOBS_CONFINED_TO) serves that one "
                f"location, not {','.join(locations)}: start one worker per location"
            )
        queues = [queue_for(loc) for loc in locations]
        tags: dict[str, str] = {}
        for item in ns.tag:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise FleetJobsError(f"--tag {item!r} is not of the form key=value")
            if key in tags:  # the first would be dropped without a word, and --target miss it
                raise FleetJobsError(f"--tag {key} is given twice ({tags[key]!r}, {value!r})")
            tags[key] = value
        concurrency = max(2, os.cpu_count() or 2) if ns.concurrency is None else ns.concurrency
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise FleetJobsError(
                f"--concurrency must be from 1 to {MAX_CONCURRENCY}, got {concurrency}"
            )
        from . import builtins  # noqa: F401  (registers the built-in actions)

        for module in ns.include:
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise FleetJobsError(f"cannot load actions from {module!r}: {exc}") from None
        store = Store.connect(config)
        store.ping()  # a clear error now beats Celery's retry loop
        store.close()
    except FleetJobsError as exc:
        print(f"fleetjobs worker: error: {exc}", file=sys.stderr)
        # the fleetjobs command's codes: 4 Redis cannot be reached, 2 bad input
        return 4 if isinstance(exc, RedisUnavailableError) else 2

    from .app import WorkerSettings, create_app

    if ns.archive_root:  # read by archive_logs in the pool processes
        os.environ[ROOTS_ENV] = os.pathsep.join(os.path.realpath(r) for r in ns.archive_root)
    settings = WorkerSettings(locations, concurrency, ns.allow_shell, tags)
    if config.confined_to:  # the relay takes a confined worker's id only under its location
        settings.worker_id = f"{config.confined_to}/{settings.worker_id}"
    try:
        app = create_app(config, settings)
    except FleetJobsError as exc:  # its journal folder, its signing settings
        print(f"fleetjobs worker: error: {exc}", file=sys.stderr)
        return 2
    # Celery's worker_main drops the worker's exit code: a worker that ended on an
    # "Unrecoverable error" exited 0, and Restart=on-failure left the host offline
    controllers: list[Any] = []
    signals.worker_init.connect(lambda sender=None, **_: controllers.append(sender), weak=False)
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--hostname",
            # one identity in Flower across restarts: no pid, no machine name
            node_name(locations),
            "--loglevel",
            ns.loglevel,
            "--pool",
            "prefork",
            "--without-mingle",
            "--without-gossip",
            "--task-events",
            # a new pool process for every job: no module state leaks from job to job
            *(["--max-tasks-per-child", "1"] if ns.fresh_process else []),
        ]
    )
    code = getattr(controllers[-1], "exitcode", None) if controllers else None
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
