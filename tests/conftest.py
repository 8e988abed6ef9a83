"""Fixtures: a real redis-server on a free port and real workers in subprocesses.

One Redis serves the whole run; each fixture that needs a clean fleet takes its own key
prefix, so tests never see each other's jobs where that matters (``get`` of every job).
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetjobs import Config, Fleet
from fleetjobs.embedded import EmbeddedRedis, LocalWorkers
from fleetjobs.lifecycle import Lifecycle
from fleetjobs.records import Records
from fleetjobs.registry import Registry
from fleetjobs.store import Store

ROOT = Path(__file__).resolve().parent.parent
FAST = {"heartbeat_interval": 0.5, "host_ttl": 3.0, "disconnect_grace": 4.0}
INCLUDE = ["--include", "tests.support_actions"]
# the keys --json promises for a job and for each of its children
JOB_KEYS = {
    "id",
    "instance_id",
    "name",
    "state",
    "has_more_data",
    "location",
    "command",
    "begin_time",
    "end_time",
    "reason",
    "children",
}
CHILD_KEYS = {"id", "instance_id", "location", "state", "has_more_data", "reason"}


def uniq(stem: str = "job") -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def nested(levels: int) -> Any:
    """A JSON value of lists and objects ``levels`` deep (made without recursion)."""
    value: Any = 1
    for i in range(levels):
        value = {"x": value} if i % 2 else [value]
    return value


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis(tcp=True) as server:
        assert not server.url.endswith(":6379/0")
        yield server.url


@pytest.fixture(scope="session")
def config(redis_url: str) -> Config:
    return Config(redis_url=redis_url, prefix="t:", **FAST)  # type: ignore[arg-type]


class Layers:
    """The registry's reads and the write path on one private prefix (no workers)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys
        self.registry = Registry(store)
        self.lifecycle = Lifecycle(store)
        self.records = Records(store)


@pytest.fixture
def layers(redis_url: str) -> Iterator[Layers]:
    """A fleet of its own prefix, driven through the scripts by hand."""
    store = Store.connect(Config(redis_url=redis_url, prefix=f"{uniq('ly')}:", **FAST))  # type: ignore[arg-type]
    yield Layers(store)
    store.close()


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session", autouse=True)
def _import_path() -> None:
    # workers import tests.support_actions from the repository root
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )


@pytest.fixture(scope="session")
def workers(config: Config, logs: Path) -> Iterator[LocalWorkers]:
    """Two hosts, alpha and beta, that allow run."""
    with LocalWorkers(
        config,
        [["alpha"], ["beta"]],
        allow_shell=True,
        concurrency=4,
        extra_args=INCLUDE,
        log_dir=logs,
    ) as w:
        yield w


@pytest.fixture(scope="session")
def locked(config: Config, logs: Path) -> Iterator[LocalWorkers]:
    """A host, locked, whose operator did not allow run."""
    with LocalWorkers(config, [["locked"]], concurrency=1, extra_args=INCLUDE, log_dir=logs) as w:
        yield w


@pytest.fixture
def fleet(config: Config, workers: LocalWorkers) -> Iterator[Fleet]:
    with Fleet(config=config) as f:
        yield f


@pytest.fixture
def second_console(config: Config, workers: LocalWorkers) -> Iterator[Fleet]:
    """Another console on the same fleet: its own Fleet, its own connections."""
    with Fleet(config=config) as f:
        yield f


@pytest.fixture
def private(redis_url: str, logs: Path) -> Iterator[tuple[Config, Fleet]]:
    """A fleet of its own (own prefix) with one host, solo: for tests about every job."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('p')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(
            cfg, [["solo"]], allow_shell=True, concurrency=2, extra_args=INCLUDE, log_dir=logs
        ),
        Fleet(config=cfg) as f,
    ):
        yield cfg, f


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def make_cli(cfg: Config) -> CliRunner:
    def run(
        *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            **os.environ,
            "FLEETJOBS_REDIS_URL": cfg.redis_url,
            "FLEETJOBS_PREFIX": cfg.prefix,
            "COLUMNS": "200",
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "fleetjobs", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=ROOT,
        )

    return run


@pytest.fixture
def cli(config: Config, workers: LocalWorkers) -> CliRunner:
    """The fleetjobs command, as a separate process (another console)."""
    return make_cli(config)


def console_env(config: Config) -> dict[str, str]:
    """This process's environment with the fleet of ``config``: what a console it starts
    reads."""
    return {
        **os.environ,
        "FLEETJOBS_REDIS_URL": config.redis_url,
        "FLEETJOBS_PREFIX": config.prefix,
    }


def on_a_terminal(config: Config, *args: str) -> tuple[int, int]:
    """``fleetjobs ARGS`` on a terminal of its own (a pty) as its session leader, its signals
    as a terminal leaves them: its pid, and the terminal's end this process reads."""
    pid, master = pty.fork()
    if pid == 0:  # the child: the terminal's session leader
        default_signals()
        os.chdir(ROOT)
        argv = [sys.executable, "-m", "fleetjobs", *args]
        os.execve(sys.executable, argv, console_env(config))
    return pid, master


def default_signals() -> None:
    """The signals a terminal's process gets, as a terminal leaves them (the tests may run
    under nohup, or as a shell's background job, which ignore SIGHUP, SIGINT)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def console(config: Config, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``fleetjobs ARGS`` as a process of its own on this fleet, its stdout a pipe, its
    signals as a terminal leaves them (unless ``preexec_fn`` says otherwise)."""
    popen.setdefault("preexec_fn", default_signals)
    return subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=console_env(config),
        cwd=ROOT,
        **popen,
    )


def eventually(check: Callable[[], object], timeout: float = 10.0, every: float = 0.05) -> object:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    assert value, f"condition not met within {timeout} s (last value {value!r})"
    return value


@contextlib.contextmanager
def fleet_with_worker_settings(
    redis_url: str, logs: Path, location: str, settings: dict[str, str]
) -> Iterator[Fleet]:
    """A fleet of its own with one worker serving ``location``, started with these
    ``FLEETJOBS_*`` settings in its environment (settings only a worker reads)."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq(location)}:", **FAST)  # type: ignore[arg-type]
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        workers = LocalWorkers(cfg, [[location]], extra_args=INCLUDE, log_dir=logs)
        workers.start()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    with workers, Fleet(config=cfg) as fleet:
        yield fleet
