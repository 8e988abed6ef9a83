"""Raw Celery's ``fleetjobs invoke``: one shell command on many hosts, as a whole command.

The engine beneath fleetjobs doing what ``fleetjobs invoke --location h01,... run CMD`` does,
written as a raw Celery user would: ``send_task`` of ``bench.run`` (bench/raw_celery.py) to
each host's queue (``raw.<host>``, served by ``RawWorkers``), then ``get`` of each result in
turn, printed as ``host: line``, and each result forgotten (the invoke removes its job). No
registry, no records, no process groups: the floor of the engine, timed by
bench/vs_ansible.py beside Ansible and fleetjobs::

    BENCH_RAW_REDIS_URL=redis://127.0.0.1:PORT/0 python -m bench.raw_invoke h01,h02 "echo hi"
"""

from __future__ import annotations

import os
import sys

from bench.raw_celery import RUN, URL_ENV, make_app


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.raw_invoke HOST,HOST,... COMMAND", file=sys.stderr)
        return 2
    hosts, command = argv[0].split(","), argv[1]
    app = make_app(os.environ[URL_ENV])
    results = [app.send_task(RUN, args=[command], queue=f"raw.{h}") for h in hosts]
    for host, res in zip(hosts, results, strict=True):
        for line in str(res.get(timeout=60)).splitlines():
            print(f"{host}: {line}")
        res.forget()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
