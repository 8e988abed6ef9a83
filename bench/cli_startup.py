"""CLI start-up: the whole ``fleetjobs`` process, against ``python -c "import redis"``.

A private Redis with one worker and a few finished jobs; ``FLEETJOBS_REDIS_URL`` points at
it. Timed, round by round so that all commands alternate (hyperfine when it is installed):
``fleetjobs get``, ``fleetjobs start --location bench01 echo hi``, ``fleetjobs --help``, and
the floors ``python -c "import redis"`` and ``python -c pass``. Then, once each, the process's
peak RSS and what it imports (``python -X importtime``): a read verb need not import Celery.
"""

from __future__ import annotations

import compileall
import os
import shutil
import sys
from pathlib import Path

import fleetjobs
from bench.common import BenchError, median, percentile
from bench.measure import MiB, hyperfine, run_measured
from bench.report import Ctx, Row, ratio_of
from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

LOC = "bench01"
BASE = 'python -c "import redis"'


def fleetjobs_argv() -> list[str]:
    """The installed ``fleetjobs`` script beside this Python, else ``python -m fleetjobs``."""
    script = Path(sys.executable).parent / "fleetjobs"
    if script.exists():
        return [str(script)]
    found = shutil.which("fleetjobs")
    return [found] if found else [sys.executable, "-m", "fleetjobs"]


def imports(args: list[str], env: dict[str, str]) -> tuple[int, bool, float]:
    """(modules imported, whether Celery is among them, import time s) of ``fleetjobs ARGS``."""
    argv = [sys.executable, "-X", "importtime", "-m", "fleetjobs", *args]
    m = run_measured(argv, env, timeout=120)
    names, total = [], 0
    for line in m.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            cells = [c.strip() for c in line.split(":", 1)[1].split("|")]
            if cells[0].isdigit():
                names.append(cells[2])
                if not cells[2].startswith(" ") and "." not in cells[2].strip():
                    total += int(cells[1])  # cumulative time of each top-level import
    return len(names), any(n.strip().split(".")[0] == "celery" for n in names), total / 1e6


def installed_env(redis_url: str) -> dict[str, str]:
    """The environment a ``fleetjobs`` command is timed in: as installed, with fleetjobs'
    bytecode compiled (pip compiles what it installs; an editable checkout under
    PYTHONDONTWRITEBYTECODE would compile fleetjobs again on every run)."""
    compileall.compile_dir(str(Path(fleetjobs.__file__).parent), quiet=1, workers=0, force=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"FLEETJOBS_REDIS_URL": redis_url}


def bench_cli(ctx: Ctx) -> None:
    rounds = ctx.param("rounds", 2, 5)
    runs = ctx.param("runs", 3, 5)
    fj = fleetjobs_argv()
    with EmbeddedRedis(tcp=True) as server:
        config = Config(redis_url=server.url)
        workers = LocalWorkers(config, [[LOC]], concurrency=1, log_dir=ctx.log_dir)
        try:
            workers.start()
            with Fleet(config=config) as fleet:
                for _ in range(5):
                    job = fleet.start("echo", "x", locations=LOC)
                    if not fleet.wait([job], timeout=30):
                        raise BenchError("a set-up job did not finish")
            env = installed_env(server.url)
            commands = {
                "fleetjobs get": [*fj, "get"],
                "fleetjobs start": [*fj, "start", "--location", LOC, "echo", "hi"],
                "fleetjobs --help": [*fj, "--help"],
                BASE: [sys.executable, "-c", "import redis"],
                'python -c "pass"': [sys.executable, "-c", "pass"],
            }
            for name, argv in commands.items():
                m = run_measured(argv, env, timeout=60)
                if m.returncode != 0:
                    raise BenchError(f"{name} exited {m.returncode}: {m.stderr.strip()[-300:]}")
            times, tool = hyperfine(commands, env, rounds, runs)
            peaks = {name: run_measured(argv, env).maxrss for name, argv in commands.items()}
            loaded = {
                "fleetjobs get": imports(["get"], env),
                "fleetjobs start": imports(["start", "--location", LOC, "echo", "hi"], env),
                "fleetjobs --help": imports(["--help"], env),
            }
        finally:
            workers.stop()
    ctx.note(
        "timed with fleetjobs' bytecode compiled and PYTHONDONTWRITEBYTECODE unset, as a pip "
        "install runs; an editable checkout under PYTHONDONTWRITEBYTECODE pays some 40 ms more"
    )
    ctx.note(
        "the private Redis holds a few finished jobs, and each timed `start` adds one, so "
        "`get` lists some 5 to 50 jobs; a read verb should import neither Celery nor every "
        "subcommand, and --help no Redis client"
    )
    ctx.params["timed_by"] = tool
    ctx.params["samples_per_command"] = rounds * runs
    ms = {k: [t * 1000 for t in v] for k, v in times.items()}
    base = median(ms[BASE])
    for name, target_delta in (("fleetjobs get", 50.0), ("fleetjobs start", None)):
        value = median(ms[name])
        n_mod, celery, _ = loaded[name]
        ctx.add(
            Row(
                name,
                "ms",
                value,
                percentile(ms[name], 99),
                base,
                percentile(ms[BASE], 99),
                BASE,
                ratio_of(value, base),
                f"<= +{target_delta:g} ms over the baseline" if target_delta else "",
                (value - base <= target_delta) if target_delta else None,
                note=f"+{value - base:.0f} ms over the baseline; peak RSS "
                f"{peaks[name] / MiB:.0f} MiB; imports {n_mod} modules, Celery "
                f"{'among them' if celery else 'not among them'}",
                n=len(ms[name]),
            )
        )
    name = "fleetjobs --help"
    value = median(ms[name])
    n_mod, celery, _ = loaded[name]
    ctx.add(
        Row(
            name,
            "ms",
            value,
            percentile(ms[name], 99),
            median(ms['python -c "pass"']),
            percentile(ms['python -c "pass"'], 99),
            'python -c "pass"',
            ratio_of(value, median(ms['python -c "pass"'])),
            "< 200 ms",
            value < 200.0,
            note=f"peak RSS {peaks[name] / MiB:.0f} MiB; imports {n_mod} modules, Celery "
            f"{'among them' if celery else 'not among them'}",
            n=len(ms[name]),
        )
    )
    ctx.add(
        Row(
            BASE + " (the baseline itself)",
            "ms",
            base,
            percentile(ms[BASE], 99),
            note=f"peak RSS {peaks[BASE] / MiB:.0f} MiB",
            n=len(ms[BASE]),
        )
    )
