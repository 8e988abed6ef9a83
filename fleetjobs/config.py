"""Configuration: one typed object, read from ``FLEETJOBS_*`` variables when asked, never at import.

The Redis URL is the one connection setting: credentials and TLS travel in it
(``rediss://user:secret@host:6380/0?ssl_cert_reqs=required``), Unix sockets as
``unix:///path/redis.sock?db=0``. Celery's broker URL is derived from it here, so
the console and the workers can never disagree about where the fleet lives.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "fj:"
DEFAULT_RETENTION = 7 * 24 * 3600.0
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def default_location() -> str:
    """This machine's short hostname: PowerShell's ``localhost`` in the Location column."""
    return socket.gethostname().split(".")[0] or "localhost"


@dataclass(frozen=True)
class Config:
    """Every setting of a console or a worker.

    Attributes:
        redis_url: where jobs, records, hosts and the Celery queues live.
        prefix: put before every registry key, so two fleets can share one Redis.
        retention: seconds a finished job is kept before it is purged (PowerShell keeps jobs
            for the session; a fleet needs a bound).
        heartbeat_interval: seconds between a worker's heartbeats.
        host_ttl: seconds after the last heartbeat that a host counts as offline.
        disconnect_grace: seconds a job on an offline host stays Disconnected before it fails.
        stop_grace: seconds an action gets to end after its stop or timeout before its worker
            kills and replaces the pool process that runs it.
    """

    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    retention: float = DEFAULT_RETENTION
    heartbeat_interval: float = 2.0
    host_ttl: float = 10.0
    disconnect_grace: float = 30.0
    stop_grace: float = 2.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.redis_url)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ConfigError(
                f"unsupported Redis URL scheme {parts.scheme!r} in {self.safe_url} "
                "(use redis://, rediss:// or unix://)"
            )
        if parts.scheme == "unix" and not parts.path:
            raise ConfigError(f"a unix:// Redis URL needs a socket path: {self.safe_url}")
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"invalid key prefix {self.prefix!r} (letters, digits, _.:-)")
        for name in (
            "retention",
            "heartbeat_interval",
            "host_ttl",
            "disconnect_grace",
            "stop_grace",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Settings from ``FLEETJOBS_*`` variables, then ``overrides`` (None means unset).

        Raises:
            ConfigError: a variable that cannot be parsed, or a value that cannot work.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        names = {
            "redis_url": ("FLEETJOBS_REDIS_URL", str),
            "prefix": ("FLEETJOBS_PREFIX", str),
            "retention": ("FLEETJOBS_RETENTION", float),
            "heartbeat_interval": ("FLEETJOBS_HEARTBEAT_INTERVAL", float),
            "host_ttl": ("FLEETJOBS_HOST_TTL", float),
            "disconnect_grace": ("FLEETJOBS_DISCONNECT_GRACE", float),
            "stop_grace": ("FLEETJOBS_STOP_GRACE", float),
        }
        for attr, (var, kind) in names.items():
            raw = env.get(var)
            if raw:
                try:
                    values[attr] = kind(raw)
                except ValueError:
                    raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Config:
        """A copy with some settings changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def safe_url(self) -> str:
        """The Redis URL with its password replaced by ``***``, for messages and logs."""
        return redact_url(self.redis_url)

    @property
    def broker_url(self) -> str:
        """The Redis URL in the form kombu's Redis transport reads."""
        return _celery_url(self.redis_url)


def redact_url(url: str) -> str:
    """``url`` with any password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _celery_url(url: str) -> str:
    """Celery spells a Unix socket ``redis+socket:///path?virtual_host=DB``."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = dict(parse_qsl(parts.query))
    query["virtual_host"] = query.pop("db", "0")
    # built by hand: urlunsplit drops the '//' of an empty host, which Celery needs
    return f"redis+socket://{parts.netloc}{parts.path}?{urlencode(query)}"
