"""Real hosts on one machine: network namespaces, each with its own hostname and address.

A :class:`Fleetnet` makes a bridge in the root namespace at .1 of a random /24 in 10.0.0.0/8
(one that overlaps no route of this machine), a redis-server bound to that address, and hosts:
a network namespace joined to the bridge by a veth pair, with its own address (.2, .3, ...),
running a fleetjobs worker under ``unshare --uts`` with the host's name as hostname and no
``--location``, so its location is its hostname, as on a real server. :meth:`Fleetnet.cut`
downs the host's end of the veth (the host drops off the network, its processes go on);
:meth:`Fleetnet.restore` brings it back. No namespace has a route beyond the subnet, so traffic
only ever goes to the bridge, the namespaces and loopback.

Needs root (:func:`can_make_hosts` says). Leaving the ``with`` block stops every worker and
deletes every namespace, link, mount and the server, each step on its own so that one failure
leaves nothing else behind; closing twice is harmless.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetjobs import Config
from fleetjobs.embedded import free_port, redis_server_binary, wait_for_hosts
from fleetjobs.errors import RedisUnavailableError
from fleetjobs.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def can_make_hosts() -> tuple[bool, str]:
    """Whether this process can make namespaced hosts; if not, why."""
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "unshare", "hostname", "mount", "redis-server"):
        if shutil.which(tool) is None:
            return False, f"no {tool} on PATH"
    probe = f"fjprobe{uuid.uuid4().hex[:6]}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return False, f"ip netns add failed: {made.stderr.strip()}"
        _ip("netns", "del", probe)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return False, f"ip netns does not work here: {exc}"
    return True, ""


def _free_subnet() -> ipaddress.IPv4Network:
    """A random /24 in 10.0.0.0/8 that overlaps no route in any table of this machine."""
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    taken = [
        ipaddress.ip_network(r["dst"], strict=False)
        for r in routes
        if r.get("dst", "default") != "default"
    ]
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randrange(256)}.{random.randrange(1, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /24 in 10.0.0.0/8 on this machine")


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _end(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each process group, give them ``timeout`` in all, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))


@dataclass
class Host:
    """A namespaced host: name (= hostname = location), namespace, address, worker."""

    name: str
    netns: str
    address: str
    veth: str  # its end in the root namespace, on the bridge
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


class Fleetnet:
    """A bridge, a redis-server on it, and namespaced hosts running workers (see module doc)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        heartbeat_interval: float = 0.5,
        host_ttl: float = 3.0,
        disconnect_grace: float = 4.0,
        concurrency: int = 2,
    ) -> None:
        # in every name this fleet gives: fjb<token>, fj<token>NNh, fj<token>-<host>
        self.token = uuid.uuid4().hex[:5]
        self.bridge = f"fjb{self.token}"
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.subnet = ipaddress.IPv4Network("0.0.0.0/32")
        self.redis: subprocess.Popen[bytes] | None = None
        #: the fleet's settings, for a console in the root namespace (and for the workers)
        self.config = Config(
            prefix="nn:",
            heartbeat_interval=heartbeat_interval,
            host_ttl=host_ttl,
            disconnect_grace=disconnect_grace,
        )
        self.hosts: dict[str, Host] = {}
        self._mounts: list[Path] = []
        self._next = 2

    def __enter__(self) -> Fleetnet:
        try:
            self.subnet = _free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.address(1)}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            self._start_redis()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_redis(self) -> None:
        # Not EmbeddedRedis(tcp=True, bind=...): it keeps Redis's protected mode, which refuses
        # every client that is not on loopback, so no host could connect. This server binds the
        # bridge address (only this machine and its namespaces reach it) and loopback.
        port = free_port(self.address(1))
        args = ["--port", str(port), "--bind", self.address(1), "127.0.0.1"]
        args += ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
        with open(self.log_dir / f"{self.token}-redis.log", "ab") as out:
            self.redis = subprocess.Popen(
                [redis_server_binary(), *args],
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        url = f"redis://{self.address(1)}:{port}/0"
        self.config = self.config.with_(redis_url=url)
        registry = Store.connect(self.config)
        try:
            while self.redis.poll() is None:
                with contextlib.suppress(RedisUnavailableError):
                    return registry.ping()
                time.sleep(0.02)
            raise RuntimeError(f"redis-server on {url} exited with {self.redis.returncode}")
        finally:
            registry.close()

    def address(self, n: int) -> str:
        """The address .n of this fleet's subnet."""
        return str(self.subnet.network_address + n)

    def add_host(
        self,
        name: str,
        *,
        extra_args: Sequence[str] = (),
        allow_shell: bool = True,
        tags: Mapping[str, str] | None = None,
        binds: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Host:
        """Make host ``name`` and start its worker; with ``wait``, return once it is online.

        ``binds`` maps a path to a folder mounted over it (``--rbind``) in the host's own mount
        namespace only: there the host sees its folder, as a server sees its own ``/var/log``.
        """
        n, self._next = self._next, self._next + 1
        ns, veth, peer = f"fj{self.token}-{name}", f"fj{self.token}{n:02d}h", f"fj{n:02d}n"
        host = self.hosts[name] = Host(name, ns, self.address(n), veth)
        for command in (
            f"netns add {ns}",
            f"link add {veth} type veth peer name {peer} netns {ns}",
            f"link set {veth} master {self.bridge} up",
            f"-n {ns} addr add {host.address}/24 dev {peer}",
            f"-n {ns} link set {peer} up",
            f"-n {ns} link set lo up",
        ):
            _ip(*command.split())
        cfg = self.config
        argv = [sys.executable, "-m", "fleetjobs.workers"]  # the URL goes in env: never in argv
        argv += ["--concurrency", str(self.concurrency), *extra_args]
        argv += ["--allow-shell"] if allow_shell else []
        argv += [f"--tag={key}={value}" for key, value in (tags or {}).items()]
        q = shlex.quote
        steps = ["set -e", f"hostname {q(name)}"]
        steps += [f"mount --rbind {q(src)} {q(dst)}" for dst, src in (binds or {}).items()]
        steps.append("exec " + " ".join(q(a) for a in argv))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.getenv("PYTHONPATH")) if p),
            "FLEETJOBS_REDIS_URL": cfg.redis_url,
            "FLEETJOBS_PREFIX": cfg.prefix,
            "FLEETJOBS_HEARTBEAT_INTERVAL": str(cfg.heartbeat_interval),
            "FLEETJOBS_HOST_TTL": str(cfg.host_ttl),
            "FLEETJOBS_DISCONNECT_GRACE": str(cfg.disconnect_grace),
        }
        unshare = ["unshare", "--uts", *(["--mount"] if binds else [])]
        host.log = self.log_dir / f"{self.token}-{name}.log"
        with open(host.log, "ab") as out:
            host.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *unshare, "sh", "-c", "; ".join(steps)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        if wait:
            self.wait_online(name)
        return host

    def wait_online(self, *names: str, timeout: float = 30.0) -> None:
        """Block until these hosts heartbeat; a worker that exits fails with its log's tail."""
        procs = [p for p in (self.hosts[n].proc for n in names) if p is not None]
        try:
            wait_for_hosts(self.config, names, timeout, procs)
        except RedisUnavailableError as exc:
            logs = [h.log.read_text()[-1500:] for n in names if (h := self.hosts[n]).log]
            raise RuntimeError(f"{exc}; worker logs:\n" + "\n".join(logs)) from None

    def cut(self, name: str) -> None:
        """Take ``name`` off the network (its worker goes on, unheard)."""
        _ip("link", "set", self.hosts[name].veth, "down")

    def restore(self, name: str) -> None:
        """Put ``name`` back on the network."""
        _ip("link", "set", self.hosts[name].veth, "up")

    def mount_tmpfs(self, path: Path, size: str = "16m") -> None:
        """Mount a tmpfs (another file system) on ``path``; unmounted on close."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
        )
        self._mounts.append(path)

    def remove_host(self, name: str, timeout: float = 5.0) -> None:
        """Stop ``name``'s worker (SIGTERM, then SIGKILL); delete its namespace and link."""
        host = self.hosts.pop(name, None)
        if host is not None:
            self._stop([host], timeout)

    def _stop(self, hosts: Sequence[Host], timeout: float) -> None:
        with contextlib.suppress(Exception):  # warm shutdown, then kill, whole process groups
            _end([h.proc for h in hosts if h.proc is not None], timeout)
        for h in hosts:
            with contextlib.suppress(Exception):  # what left the worker's group (run's commands)
                for pid in _ip("netns", "pids", h.netns, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(Exception):
                _ip("netns", "del", h.netns, check=False)
            with contextlib.suppress(Exception):
                _ip("link", "del", h.veth, check=False)

    def close(self) -> None:
        """Undo everything this fleet made, each step on its own; safe to call twice."""
        with contextlib.suppress(Exception):
            self._stop(list(self.hosts.values()), 5.0)
        self.hosts.clear()
        while self._mounts:
            path = str(self._mounts.pop())
            with contextlib.suppress(Exception):
                if subprocess.run(["umount", path], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", path], capture_output=True)
        with contextlib.suppress(Exception):
            _ip("link", "del", self.bridge, check=False)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                _end([self.redis], 5.0)
            self.redis = None
