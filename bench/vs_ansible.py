"""Against Ansible: ``echo hi`` on 20 hosts, whole command, wall time.

fleetjobs: ``fleetjobs invoke --location h01,...,h20 run "echo hi"`` with 20 locations served
by 4 workers (5 each, ``--allow-shell``, concurrency 1) on a private Redis: the command starts
a process on each host, as Ansible's does. Ansible: ``ansible all -i INVENTORY -m command -a
"echo hi" -f 20`` with 20 hosts ``ansible_connection=local``, from ansible-core installed by
pip into ``bench/.ansible-venv`` (made on first use; if it cannot be made, the row is skipped
and the reason printed). And the engine beneath, as a whole command too: raw Celery
(``bench/raw_invoke.py``: ``send_task`` to each host's queue, ``get`` each result) on 4 raw
workers serving the same 20 hosts' queues. Every output is checked for 20 "hi"; the three
alternate, round by round, after one untimed run of each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cli_startup import fleetjobs_argv, installed_env
from bench.common import ROOT, BenchError, RawWorkers, median, percentile, python_path_env
from bench.measure import Measured, run_measured
from bench.raw_celery import URL_ENV, make_app
from bench.report import Ctx, Row, ratio_of
from fleetjobs import Config
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers

VENV = ROOT / "bench" / ".ansible-venv"
HOSTS = [f"h{i:02d}" for i in range(1, 21)]


def ensure_ansible() -> tuple[Path | None, str]:
    """The ``ansible`` program in bench/.ansible-venv, installed if missing; else (None, why)."""
    program = VENV / "bin" / "ansible"
    if not program.exists():
        print("    installing ansible-core into bench/.ansible-venv (once)...", flush=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(VENV)],
                check=True,
                capture_output=True,
                timeout=300,
            )
            pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run(
                [*pip, "--disable-pip-version-check", "ansible-core"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            why = f"{exc} {detail.decode(errors='replace')[-300:]}".strip()
            return None, f"ansible-core could not be installed into {VENV}: {why}"
    if not program.exists():
        return None, f"{program} is missing after pip install ansible-core"
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=False)
    return program, (out.stdout.splitlines() or ["?"])[0]


def ansible_env(folder: Path) -> tuple[dict[str, str], Path]:
    """An environment with Ansible's state in ``folder``, and the inventory file."""
    python = VENV / "bin" / "python"
    inventory = folder / "hosts.ini"
    lines = ["[all]"] + [
        f"{h} ansible_connection=local ansible_python_interpreter={python}" for h in HOSTS
    ]
    inventory.write_text("\n".join(lines) + "\n")
    (folder / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(folder / "ansible.cfg"),
        "ANSIBLE_HOME": str(folder / "home"),
        "ANSIBLE_LOCAL_TEMP": str(folder / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(folder / "remote"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
    env.pop("PYTHONPATH", None)
    return env, inventory


def check(name: str, m: Measured) -> None:
    """Exit 0 and one "hi" per host, or the benchmark measured something else."""
    his = sum(1 for line in m.stdout.splitlines() if line.strip().endswith("hi"))
    if m.returncode != 0 or his < len(HOSTS):
        raise BenchError(
            f"{name} exited {m.returncode} with {his} 'hi' of {len(HOSTS)}: "
            f"{(m.stdout + m.stderr)[-400:]}"
        )


def bench_ansible(ctx: Ctx) -> None:
    rounds = ctx.param("rounds", 2, 5)
    program, version = ensure_ansible()
    if program is None:
        print(f"  Ansible row skipped: {version}", flush=True)
        ctx.note(f"skipped: {version}")
        return
    ctx.params["ansible"] = version
    ctx.note(
        "Ansible's hosts name the venv's Python as ansible_python_interpreter (no interpreter "
        "discovery); both commands start a process per host and print its output"
    )
    fj = fleetjobs_argv()
    groups = [HOSTS[i : i + 5] for i in range(0, len(HOSTS), 5)]
    with (
        EmbeddedRedis(tcp=True) as server,
        tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp,
    ):
        a_env, inventory = ansible_env(Path(tmp))
        a_argv = [str(program), "all", "-i", str(inventory), "-m", "command", "-a", "echo hi"]
        a_argv += ["-f", str(len(HOSTS))]
        f_env = installed_env(server.url)  # timed as installed, as the CLI bench is
        f_argv = [*fj, "invoke", "--location", ",".join(HOSTS), "run", "echo hi"]
        workers = LocalWorkers(
            Config(redis_url=server.url),
            groups,
            allow_shell=True,
            concurrency=1,
            log_dir=ctx.log_dir,
        )
        # the engine beneath, as a whole command too: the same hosts' queues on as many
        # raw Celery workers, bench/raw_invoke.py sending and getting the same 20 commands
        raw = RawWorkers(server.url, [[f"raw.{h}" for h in g] for g in groups], 1, ctx.log_dir)
        r_env = python_path_env(**{URL_ENV: server.url})
        r_env.pop("PYTHONDONTWRITEBYTECODE", None)
        r_argv = [sys.executable, "-m", "bench.raw_invoke", ",".join(HOSTS), "echo hi"]
        raw_times: list[float] = []
        floor_argv = [sys.executable, "-c", "import redis"]
        fj_times: list[float] = []
        an_times: list[float] = []
        floor_times: list[float] = []
        try:
            workers.start()
            raw.start()
            raw.wait_ready(make_app(server.url), timeout=120)
            for r in range(rounds + 1):  # the first round is a warm-up
                m = run_measured(f_argv, f_env, timeout=300, keep_stdout=True)
                check("fleetjobs invoke", m)
                c = run_measured(r_argv, r_env, timeout=300, keep_stdout=True)
                check("raw Celery (bench/raw_invoke.py)", c)
                a = run_measured(a_argv, a_env, timeout=600, keep_stdout=True)
                check("ansible", a)
                # the floor of any console on redis-py, in the same environment and round
                f = [run_measured(floor_argv, f_env, timeout=60).seconds for _ in range(3)]
                if r:
                    fj_times.append(m.seconds)
                    an_times.append(a.seconds)
                    floor_times.append(median(f))
                    raw_times.append(c.seconds)
                    print(
                        f"    round {r}: fleetjobs invoke {m.seconds:.2f} s, "
                        f"raw Celery {c.seconds:.2f} s, "
                        f"ansible {a.seconds:.2f} s, python -c 'import redis' {median(f):.3f} s",
                        flush=True,
                    )
        finally:
            workers.stop()
            raw.stop()
    fm, am, cm = median(fj_times), median(an_times), median(raw_times)
    floor = median(floor_times)
    ansible = f"ansible -m command -f {len(HOSTS)} (connection local)"

    def against_ansible(metric: str, times: list[float], note: str, target: bool = False) -> None:
        """A row of one command's times beside Ansible's, the ratio in times faster."""
        faster = ratio_of(am, median(times))
        ctx.add(
            Row(
                metric,
                "s",
                median(times),
                percentile(times, 99),
                am,
                percentile(an_times, 99),
                ansible,
                faster,
                ">= 20x faster" if target else "",
                (faster is not None and faster >= 20) if target else None,
                note=note,
                n=rounds,
            )
        )

    against_ansible(
        f'"echo hi" on {len(HOSTS)} hosts, whole command',
        fj_times,
        "ratio = Ansible's time / fleetjobs' (times faster); fleetjobs invoke ... "
        'run "echo hi" on 4 workers x 5 locations',
        target=True,
    )
    against_ansible(
        f'raw Celery: "echo hi" on {len(HOSTS)} hosts, whole command',
        raw_times,
        "the engine beneath, as a command: bench/raw_invoke.py, send_task to each "
        "host's queue and get each result, on 4 raw Celery workers x 5 queues; "
        f"fleetjobs invoke takes {ratio_of(fm, cm) or 0:.2f}x its time",
    )
    budget = am / 20
    against_ansible(
        'python -c "import redis" (no job at all: the floor of a console on redis-py)',
        floor_times,
        f"20x Ansible leaves {budget * 1000:.0f} ms for the whole invoke, "
        f"{(budget - floor) * 1000:.0f} ms over this floor; fleetjobs invoke takes "
        f"{(fm - floor) * 1000:.0f} ms over it (start 20 jobs, run 20 processes, "
        "receive 20 outputs, remove the job)",
    )
