"""``fleetjobs demo``: the PowerShell background-jobs walkthrough, run for real.

Each step prints the command a person would type and runs it through the real CLI, against a
private Redis and local workers that the demo starts and removes (see :mod:`fleetjobs.embedded`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click
import redis

from ..config import Config, default_location
from ..embedded import EmbeddedRedis, LocalWorkers
from ..errors import FleetJobsError
from ..fleet import Fleet
from ..parallel import parallel
from ..refs import batches
from .format import table
from .interrupts import SIGNALS, Terminated, as_interrupt


class _Demo:
    def __init__(self, config: Config, fast: bool) -> None:
        self.config = config
        self.scale = 0.2 if fast else 1.0
        self.env = {"FLEETJOBS_REDIS_URL": config.redis_url, "FLEETJOBS_PREFIX": config.prefix}

    def secs(self, seconds: float) -> str:
        return f"{max(0.2, seconds * self.scale):g}"

    def section(self, title: str, note: str = "") -> None:
        click.secho(f"\n== {title} ==", bold=True)
        if note:
            click.echo(note)

    def say(self, text: str) -> None:
        click.secho(text, fg="cyan")

    def run(self, *args: str) -> int:
        """Show and run one fleetjobs command in this process; returns its exit code."""
        from .app import run as run_cli

        click.secho("PS> fleetjobs " + " ".join(shlex.quote(a) for a in args), fg="green")
        sys.stdout.flush()
        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            code = run_cli(list(args))
            if code == 130:  # the command took the Ctrl-C: the demo ends too
                raise KeyboardInterrupt
            if code - 128 in SIGNALS:  # or the SIGTERM, SIGHUP (interrupts): the same
                raise Terminated(code - 128)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        sys.stdout.flush()
        sys.stderr.flush()
        return code

    def walk(self) -> None:
        here = default_location()
        self.section(
            "Starting a background job",
            'Start-Job { Start-Sleep 5; Write-Output "Job completed at $(Get-Date)" }',
        )
        self.run("start", "run", f'sleep {self.secs(5)}; echo "Job completed at $(date)"')
        self.say("Console is free to use while job runs...")

        self.section("Get-Job: view all jobs")
        self.run("start", "processes", "--top", "3")
        self.run("get")

        self.section(
            "Receiving job results", "Get-Process | Sort CPU -Descending | Select -First 3"
        )
        self.run("start", "--name", "TopCPU", "processes", "--top", "3", "--sort", "cpu")
        self.run("wait", "TopCPU")
        self.run("receive", "TopCPU")
        self.say("Results are consumed once: a second receive prints nothing.")
        self.run("receive", "TopCPU")
        self.say("Unless --keep is used (Receive-Job -Keep):")
        self.run("start", "--name", "Kept", "echo", "stays here")
        self.run("wait", "Kept")
        self.run("receive", "Kept", "--keep")
        self.run("receive", "Kept", "--keep")

        self.section("Wait-Job: wait for a job, with a timeout")
        self.run("start", "--name", "Slow", "sleep", self.secs(10), "Done")
        code = self.run("wait", "Slow", "--timeout", self.secs(2))
        if code == 3:
            self.say(f"Job timed out! (wait exited {code} and printed nothing)")
        self.run("wait", "Slow")
        self.run("receive", "Slow")

        self.section("Named jobs")
        self.run("start", "--name", "BackupJob", "sleep", self.secs(3), "Backup done")
        self.run("start", "--name", "ReportJob", "sleep", self.secs(2), "Report done")
        self.run("get", "BackupJob")
        self.run("receive", "BackupJob", "--wait")
        self.run("wait", "ReportJob")
        self.run("remove", "ReportJob")

        self.section(
            "Passing arguments to jobs",
            "Start-Job { param($path, $limit) Get-ChildItem $path | Select -First $limit }"
            " -ArgumentList $targetPath, $maxFiles",
        )
        self.run("start", "--name", "ListLogs", "files", "/var/log", "5")
        self.run("receive", "ListLogs", "--wait")

        self.section("Running several jobs in parallel")
        start = time.monotonic()
        for n in range(1, 5):
            self.run("start", "--name", f"Part{n}", "sleep", self.secs(2), f"part {n} done")
        self.run("wait", "Part*")
        self.say(f"Four {self.secs(2)} s jobs took {time.monotonic() - start:.1f} s together.")
        self.run("receive", "Part*")

        self.section("Job output streams")
        self.run(
            "start",
            "--name",
            "Streams",
            "echo",
            "Success output",
            "--error",
            "Error output",
            "--warning",
            "Warning output",
            "--verbose",
            "Verbose output",
        )
        self.run("wait", "Streams")
        self.run("receive", "Streams")

        self.section("Stop and remove jobs")
        self.run("start", "--name", "Forever", "sleep", "3600")
        time.sleep(0.5)
        self.run("stop", "Forever")
        self.run("get")
        self.say("Remove all completed jobs:")
        self.run("remove", "--state", "Completed")
        self.run("get")
        self.say("Remove all jobs:")
        self.run("remove", "--all", "--force")
        self.run("get")
        click.echo(f"\n(every job above ran on a worker serving location {here!r})")

    def fleet(self, logs_root: Path) -> None:
        self.section(
            "The fleet: hosts and their workers",
            "Simulated servers: one local worker serves Server01, Server02 and Server04, "
            "WebServer01, WebServer02 and AppServer01; Server03 has no worker (it is offline).",
        )
        self.run("hosts")

        self.section(
            "Running multiple parallel jobs: is every server up?",
            "$servers | ForEach { Start-Job { Test-Connection $srv -Count 1 -Quiet } }",
        )
        self.run(
            "ping", "--worker", "Server01", "Server02", "Server03", "Server04", "--timeout", "2"
        )
        self.say("The same as one fan-out job, one child per server, results tagged by host:")
        self.run("start", "--name", "Reach", "-l", "Server01,Server02,Server04", "ping")
        self.run("wait", "Reach")
        self.run("get", "Reach", "--children")
        self.run("receive", "Reach")
        self.run("remove", "Reach")

        self.section(
            "ForEach-Object -Parallel: local threads (Python API)",
            "$servers | ForEach-Object -Parallel { ... } -ThrottleLimit 5",
        )
        servers = ["Server01", "Server02", "Server03", "Server04", "Server05"]
        click.secho(
            "PS> python -c 'fleetjobs.parallel(is_online, servers, throttle_limit=5)'", fg="green"
        )
        with Fleet(config=self.config) as fleet:
            online = {h.location for h in fleet.hosts() if h.online}
            results = parallel(
                lambda s: {"Server": s, "Online": s in online}, servers, throttle_limit=5
            )
        table(
            [[r.value["Server"], r.value["Online"]] for r in results if r.value],
            ("Server", "Online"),
        )

        self.section("Real-world example: parallel log archiving")
        servers = ["WebServer01", "WebServer02", "AppServer01"]
        old = time.time() - 10 * 86400
        for srv in servers[:2]:  # AppServer01 has no log folder: "Log path not found"
            logs = logs_root / srv / "Logs"
            logs.mkdir(parents=True)
            for n in range(3 if srv == "WebServer01" else 2):
                for age, stem in ((old, f"app{n}"), (time.time(), f"today{n}")):
                    f = logs / f"{stem}.log"
                    f.write_text(f"{srv} {stem}\n" * 100)
                    os.utime(f, (age, age))
        for srv in servers:
            self.run(
                "start",
                "--name",
                f"Archive_{srv}",
                "-l",
                srv,
                "archive_logs",
                str(logs_root / srv / "Logs"),
                str(logs_root / srv / "LogArchive"),
                "--days",
                "7",
            )
        self.say(f"Archiving started on {len(servers)} servers. Working...")
        self.run("wait", "Archive_*")
        with Fleet(config=self.config) as fleet:
            for job in fleet.get(name="Archive_*"):
                got = fleet.receive(job)
                srv = job.location
                # the seed's own lines, en dash included
                if got.warnings:
                    click.echo(f"{srv} – Log path not found")  # noqa: RUF001
                else:
                    click.echo(f"{srv} – Archived {got[0]['Archived']} files")  # noqa: RUF001
                fleet.remove(job)


def run_demo(fast: bool = False) -> int:
    """Run the walkthrough; returns the exit code."""
    # a fleet of its own: the settings of the fleet this shell works with (signing, a
    # confined location, timings) are not the demo's, nor passed to its worker and commands
    ignored = {
        k: os.environ.pop(k)
        for k in sorted(os.environ)
        if k.startswith("FLEETJOBS_") and k != "FLEETJOBS_REDIS_URL"
    }
    try:
        with as_interrupt(), contextlib.ExitStack() as stack:
            if ignored:
                click.echo(f"The demo runs a fleet of its own: it ignores {', '.join(ignored)}.")
            url = os.environ.get("FLEETJOBS_REDIS_URL")
            prefix = f"demo-{uuid.uuid4().hex[:6]}:"
            if url:
                click.echo("Using the Redis at FLEETJOBS_REDIS_URL, under its own key prefix.")
                stack.callback(_forget, url, prefix)  # its keys go with it
            else:
                click.echo("Starting a private Redis and a local worker (nothing else needed)...")
                url = stack.enter_context(EmbeddedRedis()).url
            config = Config(redis_url=url, prefix=prefix, heartbeat_interval=1.0, host_ttl=5.0)
            simulated = [
                "Server01",
                "Server02",
                "Server04",
                "WebServer01",
                "WebServer02",
                "AppServer01",
            ]
            stack.enter_context(
                LocalWorkers(
                    config,
                    [[default_location()], simulated],
                    allow_shell=True,
                    concurrency=4,
                    stop_timeout=5.0,  # what still runs at the end is the demo's, not yours
                )
            )
            demo = _Demo(config, fast)
            demo.walk()
            logs_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fj-demo-")))
            demo.fleet(logs_root)
            click.echo("Cleaning up: stopping the worker and the private Redis.")
        return 0
    except KeyboardInterrupt as exc:
        click.echo("\ninterrupted: everything the demo started was stopped and removed", err=True)
        return 128 + exc.signum if isinstance(exc, Terminated) else 130
    except FleetJobsError as exc:
        click.echo(f"fleetjobs demo: error: {exc}", err=True)
        return 1
    finally:
        os.environ.update(ignored)


def _forget(url: str, prefix: str) -> None:
    """Remove the demo's keys from a Redis it shares (its private one goes whole)."""
    with contextlib.suppress(FleetJobsError, redis.exceptions.RedisError):
        client = redis.Redis.from_url(url)
        try:
            for keys in batches(client.scan_iter(match=f"{prefix}*", count=1000), 500):
                client.unlink(*keys)
        finally:
            client.close()
