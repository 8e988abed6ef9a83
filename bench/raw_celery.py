"""A bare Celery app with fleetjobs' exact settings, the baseline the benchmarks compare to.

It is built by :func:`fleetjobs.celery_app.make_celery` itself (JSON only, acks_late off,
prefetch 1, task events on, ``global_keyprefix``) plus a Redis result backend (fleetjobs keeps
none: its registry is the record), with the key prefix ``raw:`` so it never meets fleetjobs'
keys, and the task ``bench.echo``, that returns its argument (``bench.claimed_echo`` claims its
message in Redis first: the least an at-most-once task does). It is Celery as shipped: its
worker does not get fleetjobs' fixes of kombu, its client per message
(:func:`~fleetjobs.celery_app.keep_kombu_clients`, ~12-20% of a fleetjobs worker's CPU per
job) and its restore that looks before it locks
(:func:`~fleetjobs.celery_app.peek_before_restoring`), since a user writing raw Celery would
not have them; the benchmark's own process, which also runs fleetjobs' console, has them only
if that console made a Celery app of its own (a start no longer does). A benchmark starts
its worker as::

    BENCH_RAW_REDIS_URL=redis://127.0.0.1:PORT/0 PYTHONPATH=/work/main \\
        python -m celery -A bench.raw_celery worker -Q raw -c 1 --pool prefork \\
        --without-mingle --without-gossip -E
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from celery import Celery

from fleetjobs.celery_app import make_celery
from fleetjobs.config import DEFAULT_REDIS_URL, Config

URL_ENV = "BENCH_RAW_REDIS_URL"
PREFIX = "raw:"
ECHO = "bench.echo"


RUN = "bench.run"
CLAIMED = "bench.claimed_echo"

# the least an at-most-once task can do before it runs: take its message's id, once, in
# Redis, and read the answer (one script, one round trip); fleetjobs' claim does this too,
# and reads the job's record besides (bench/throughput.py's third side)
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 600) then return 1 end
return 0
"""


def echo(value: Any) -> Any:
    """The no-op task: its argument back."""
    return value


def run(command: str) -> str:
    """A shell command line on the worker's host, its stdout back (``fleetjobs run``'s
    counterpart, without its streaming, process groups or records): bench/vs_ansible.py."""
    done = subprocess.run(
        ["/bin/sh", "-c", "--", command], capture_output=True, text=True, check=True
    )
    return done.stdout


def make_app(url: str, prefix: str = PREFIX) -> Celery:
    """A Celery app on ``url`` with fleetjobs' settings and the ``bench.echo`` task."""
    config = Config(redis_url=url, prefix=prefix)
    app = make_celery(config, main="bench.raw_celery", kombu_fixes=False)
    app.conf.update(
        result_backend=config.broker_url,
        task_ignore_result=False,
        result_serializer="json",
        result_accept_content=["json"],
        result_backend_transport_options={"global_keyprefix": prefix},
    )
    # not shared: each app made here has its own, without Celery's duplicate-name warning
    app.task(name=ECHO, shared=False)(echo)
    app.task(name=RUN, shared=False)(run)
    claim: list[Any] = []

    @app.task(name=CLAIMED, shared=False, bind=True)
    def claimed_echo(self: Any, value: Any) -> Any:
        """``echo`` after a claim of its message, as an at-most-once task must make."""
        if not claim:  # in the process that runs it, on the result backend's client
            claim.append(self.app.backend.client.register_script(CLAIM))
        if not claim[0](keys=[f"{prefix}claim:{self.request.id}"], args=[os.getpid()]):
            raise RuntimeError(f"task {self.request.id} claimed twice")
        return value

    return app


# what `celery -A bench.raw_celery` loads; Celery connects lazily, so importing is harmless
app = make_app(os.environ.get(URL_ENV) or DEFAULT_REDIS_URL)
