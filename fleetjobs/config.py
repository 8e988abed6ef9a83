"""Configuration: one typed object, read from ``FLEETJOBS_*`` variables when asked, never at import.

The Redis URL is the one connection setting: credentials and TLS travel in it
(``rediss://user:secret@host:6380/0?ssl_cert_reqs=required``), Unix sockets as
``unix:///path/redis.sock?db=0``, and a Redis kept highly available by Sentinel as
``redis+sentinel://[user:secret@]sentinel1:26379,sentinel2:26379,sentinel3:26379/SERVICE/DB``
(``sentinel://`` too; ``?sentinel_password=...`` when the sentinels want one). Celery's broker
URL is derived from it here, so the console and the workers can never disagree about where the
fleet lives.
"""

from __future__ import annotations

import glob
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .errors import ConfigError
from .options import MAX_SECONDS

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "fj:"
DEFAULT_RETENTION = 7 * 24 * 3600.0
DEFAULT_MAX_OUTPUT = 256 * 2**20
DEFAULT_MAX_ARGUMENTS = 2**20
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CONFINED_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a location (routing.py)


def default_location() -> str:
    """This machine's short hostname: PowerShell's ``localhost`` in the Location column."""
    return socket.gethostname().split(".")[0] or "localhost"


# the settings that are seconds, then those that are bytes: positive numbers all, and a
# duration at most MAX_SECONDS (a host record carries its ttl, which a reader takes only up
# to that: fleetjobs.hosts)
_DURATIONS = (
    "retention",
    "heartbeat_interval",
    "host_ttl",
    "disconnect_grace",
    "beat_interval",
    "beat_lock_timeout",
    "stop_grace",
)
_SIZES = ("max_output", "max_arguments")


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
        max_output: bytes of records one child job may keep in Redis; past it, one warning
            says the output was truncated and later records are dropped (the job goes on).
        max_arguments: bytes of JSON a job's arguments may take (a start asking for more is
            refused before anything is stored: Redis is no file store).
        beat_interval: the longest ``fleetjobs beat`` sleeps before it looks at the schedules
            again (Celery's ``beat_max_loop_interval``); a standby beat tries the lock as often.
        beat_lock_timeout: seconds RedBeat's lock outlives a beat that stopped ticking (killed):
            then a standby beat takes over (``redbeat_lock_timeout``).
        stop_grace: seconds an action gets to end after its stop or timeout before its worker
            kills and replaces the pool process that runs it.
        signing_key, signing_cert, cert_store: signed messages (all three or none): this
            process's private key and certificate (PEM files), and the folder (or glob) of
            the certificates it trusts. Consoles sign what they publish, workers refuse any
            job message not signed by a trusted certificate (Celery's ``auth`` serializer).
        confined_to: a confined worker's one location: its Redis user may write only that
            location's keys (deploy/redis-acl.conf), so what it would write elsewhere (its
            jobs' parents, the fleet's sweep) it asks ``fleetjobs relay`` to write (README:
            Confined workers). Empty: a worker trusted with the whole fleet's keys.
    """

    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    retention: float = DEFAULT_RETENTION
    heartbeat_interval: float = 2.0
    host_ttl: float = 10.0
    disconnect_grace: float = 30.0
    max_output: int = DEFAULT_MAX_OUTPUT
    max_arguments: int = DEFAULT_MAX_ARGUMENTS
    beat_interval: float = 5.0
    beat_lock_timeout: float = 25.0
    stop_grace: float = 2.0
    signing_key: str = ""
    signing_cert: str = ""
    cert_store: str = ""
    confined_to: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.redis_url, str):  # Fleet(Config(...)): a config where a URL goes
            hint = ": pass it as config=" if isinstance(self.redis_url, Config) else ""
            raise ConfigError(
                f"a Redis URL must be text, not {type(self.redis_url).__name__}{hint}"
            )
        try:
            parts = urlsplit(self.redis_url)
        except ValueError as exc:  # 'Invalid IPv6 URL': not shown, it may hold a password
            raise ConfigError(f"invalid Redis URL: {exc}") from None
        if parts.scheme not in {"redis", "rediss", "unix", *SENTINEL_SCHEMES}:
            raise ConfigError(
                f"unsupported Redis URL scheme {parts.scheme!r} in {self.safe_url} "
                "(use redis://, rediss://, unix:// or redis+sentinel://)"
            )
        if parts.scheme in SENTINEL_SCHEMES:
            parse_sentinel(self.redis_url)  # raises ConfigError for a malformed one
        else:
            self._check_port(parts)
        if parts.scheme == "unix" and not parts.path:
            raise ConfigError(f"a unix:// Redis URL needs a socket path: {self.safe_url}")
        if parts.scheme in {"redis", "rediss"} and not re.fullmatch(r"/?|/\d{1,5}", parts.path):
            # redis-py takes what follows the host for a database number, and anything else
            # for database 0: a typo there would write the fleet into another database
            raise ConfigError(
                f"a Redis URL's path is its database number (/0, /1...), not {parts.path!r}: "
                f"{self.safe_url}"
            )
        self._check_query(parts)
        if not isinstance(self.prefix, str) or not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"invalid key prefix {self.prefix!r} (letters, digits, _.:-)")
        self._check_numbers()
        self._check_signing()
        if self.confined_to and not _CONFINED_RE.match(self.confined_to):
            raise ConfigError(f"invalid location {self.confined_to!r} to confine a worker to")

    def _check_signing(self) -> None:
        # a console signs: key, certificate and the store; a worker only verifies: the store
        if bool(self.signing_key) != bool(self.signing_cert) or (
            self.signing_key and not self.cert_store
        ):
            raise ConfigError(
                "signed messages need FLEETJOBS_SIGNING_KEY, FLEETJOBS_SIGNING_CERT and "
                "FLEETJOBS_CERT_STORE together (a console), or FLEETJOBS_CERT_STORE alone "
                "(a worker, which verifies and signs nothing)"
            )
        for name in ("signing_key", "signing_cert"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name.replace('_', ' ')} {path!r} is not a readable file")
        store = self.cert_store
        pattern = os.path.join(store, "*") if os.path.isdir(store) else store
        if store and not any(os.path.isfile(p) for p in glob.glob(pattern)):
            # a worker would start "ready" and refuse every job as signed by no one it knows
            raise ConfigError(
                f"cert store {store!r} {_unreadable(store) or 'holds no certificate'} "
                "(FLEETJOBS_CERT_STORE: a folder of the trusted consoles' certificates, a "
                "certificate file, or a glob of them)"
            )

    @property
    def signed(self) -> bool:
        """Whether job messages are signed (and only signed ones are run)."""
        return bool(self.cert_store)

    @property
    def can_sign(self) -> bool:
        """Whether this process holds a signing key (a console; a worker needs none)."""
        return bool(self.signing_key)

    def _check_query(self, parts: SplitResult) -> None:
        # what both redis-py (consoles) and kombu (workers) take: a URL one side reads and the
        # other cannot fails a worker's start, so anything else is refused here, for both
        query = parse_qsl(parts.query, keep_blank_values=True)
        if parts.password is not None and any(k == "password" for k, _ in query):
            raise ConfigError(  # redis-py takes one and kombu the other: not both
                f"the Redis URL {self.safe_url} gives a password twice: in the user part and "
                "in ?password="
            )
        for key, value in query:
            if key == "sentinel_password" and parts.scheme not in SENTINEL_SCHEMES:
                raise ConfigError("?sentinel_password= is for a redis+sentinel:// URL only")
            if parts.scheme in SENTINEL_SCHEMES and key != "sentinel_password":
                # neither side applies it through Sentinel: refused, not silently dropped
                raise ConfigError(
                    f"option {key!r} is not read in a redis+sentinel:// URL: its only option "
                    "is ?sentinel_password=; the password goes in the user part "
                    "(redis+sentinel://:PASSWORD@s1:26379/SERVICE/DB), the database at the end"
                )
            if key not in URL_OPTIONS:  # its value is not shown: it may be a mistyped secret
                raise ConfigError(
                    f"unsupported option {key!r} in the Redis URL "
                    f"(supported: {', '.join(sorted(URL_OPTIONS))})"
                )
            choices = URL_CHOICES.get(key)
            if choices is not None and value not in choices:  # both sides read them as written
                raise ConfigError(
                    f"?{key}= in the Redis URL {self.safe_url} is one of "
                    f"{', '.join(sorted(choices))}, got {value!r}"
                )
            number = URL_NUMBERS.get(key)
            if number is not None:
                # a socket timeout of 0 makes the socket non-blocking: every read fails at
                # once; a health check interval of 0 turns the checks off
                positive = key in _POSITIVE_OPTIONS
                try:
                    parsed = number(value)
                    ok = math.isfinite(parsed) and (parsed > 0 if positive else parsed >= 0)
                except ValueError:
                    ok = False
                if not ok:
                    what = "a positive number" if positive else "a number"
                    raise ConfigError(
                        f"?{key}= in the Redis URL {self.safe_url} must be {what}, got {value!r}"
                    )

    def _check_port(self, parts: SplitResult) -> None:
        try:
            parts.port  # noqa: B018  (parses the port: a bad one raises here, not deep in redis-py)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {self.safe_url}: {exc}") from None

    def _check_numbers(self) -> None:
        for name in _DURATIONS + _SIZES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:  # nan passes a plain <= 0
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
            if name in _DURATIONS and value > MAX_SECONDS:  # what a host record may say
                raise ConfigError(f"{name} must be at most {MAX_SECONDS:g} s, got {value!r}")
        if self.heartbeat_interval >= self.host_ttl:
            raise ConfigError(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be less than host_ttl "
                f"({self.host_ttl:g} s): a host would count as offline between its heartbeats"
            )

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
            "max_output": ("FLEETJOBS_MAX_OUTPUT", int),
            "max_arguments": ("FLEETJOBS_MAX_ARGUMENTS", int),
            "beat_interval": ("FLEETJOBS_BEAT_INTERVAL", float),
            "beat_lock_timeout": ("FLEETJOBS_BEAT_LOCK_TIMEOUT", float),
            "stop_grace": ("FLEETJOBS_STOP_GRACE", float),
            "signing_key": ("FLEETJOBS_SIGNING_KEY", str),
            "signing_cert": ("FLEETJOBS_SIGNING_CERT", str),
            "cert_store": ("FLEETJOBS_CERT_STORE", str),
            "confined_to": ("FLEETJOBS_CONFINED_TO", str),
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
    def db(self) -> int:
        """The Redis database number the URL names (0 when it names none), as redis-py reads
        it: the path (``/2``), a ``?db=`` query (a Unix socket's), or Sentinel's
        ``/SERVICE/DB``; kombu, which names Celery's event channels after it, agrees on
        every form it accepts."""
        sentinel = self.sentinel
        if sentinel is not None:
            return sentinel.db
        parts = urlsplit(self.redis_url)
        query = dict(parse_qsl(parts.query))
        raw = query.get("db") or ("" if parts.scheme == "unix" else parts.path.strip("/"))
        return int(raw) if raw.isdigit() else 0

    @property
    def sentinel(self) -> SentinelURL | None:
        """The Sentinel setup the URL names, or None for a plain Redis."""
        if urlsplit(self.redis_url).scheme in SENTINEL_SCHEMES:
            return parse_sentinel(self.redis_url)
        return None

    @property
    def broker_url(self) -> str:
        """The Redis URL in the form kombu's Redis transport reads."""
        sentinel = self.sentinel
        if sentinel is not None:
            return sentinel.broker_url
        return _celery_url(self.redis_url)

    @property
    def broker_transport_options(self) -> dict[str, object]:
        """What kombu's transport needs beside the URL: the URL's socket timeouts and health
        check (kombu takes them here, not in the URL), Sentinel's service name."""
        query = dict(parse_qsl(urlsplit(self.redis_url).query))
        options: dict[str, object] = {
            key: URL_NUMBERS[key](query[key]) for key in _TRANSPORT_OPTIONS if key in query
        }
        sentinel = self.sentinel
        if sentinel is None:
            return options
        options["master_name"] = sentinel.service
        if sentinel.sentinel_password:
            options["sentinel_kwargs"] = {"password": sentinel.sentinel_password}
        return options


SENTINEL_SCHEMES = frozenset({"redis+sentinel", "sentinel"})
# the options a Redis URL may carry (?name=value): read by redis-py and by kombu alike
URL_NUMBERS: dict[str, type[int] | type[float]] = {
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": int,
}
URL_CHOICES = {  # as kombu and redis-py both read them
    "ssl_cert_reqs": frozenset({"required", "optional", "none"}),
    "ssl_check_hostname": frozenset({"true", "false", "True", "False"}),
}
_TRANSPORT_OPTIONS = ("socket_timeout", "socket_connect_timeout", "health_check_interval")
_POSITIVE_OPTIONS = ("socket_timeout", "socket_connect_timeout")  # 0 is no timeout at all
URL_OPTIONS = frozenset(
    {
        *URL_NUMBERS,
        "username",
        "password",
        "sentinel_password",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_ca_path",
        "ssl_password",
        "ssl_ciphers",
    }
)


@dataclass(frozen=True)
class SentinelURL:
    """A Redis found through Sentinel: ``redis+sentinel://[user:pw@]h1:p1,h2:p2/SERVICE/DB``."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @property
    def broker_url(self) -> str:
        """kombu's spelling: one ``sentinel://`` URL per sentinel, joined by ``;``."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '')}:{quote(self.password)}@"
        return ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in self.hosts)


def parse_sentinel(url: str) -> SentinelURL:
    """The Sentinel setup of a ``redis+sentinel://`` URL.

    Raises:
        ConfigError: no sentinel, a bad port, no service name, or a bad database number.
    """
    parts = urlsplit(url)
    auth, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if auth:
        user, sep, secret = auth.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) if sep else None)
    hosts = []
    for item in hostlist.split(","):
        host, sep, port = item.strip().rpartition(":") if ":" in item else (item, "", "26379")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"invalid sentinel {item!r} in {redact_url(url)}")
        hosts.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError(f"a Sentinel URL names its service: .../SERVICE/DB in {redact_url(url)}")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"a Sentinel URL ends with /SERVICE or /SERVICE/DB: {redact_url(url)}")
    query = dict(parse_qsl(parts.query))
    return SentinelURL(
        hosts=tuple(hosts),
        service=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=query.get("sentinel_password"),
    )


def redact_url(url: str) -> str:
    """``url`` with any password hidden: the user part's, and ``?password=`` or
    ``?sentinel_password=`` (redis-py takes both spellings)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    secret = [k for k in query if "password" in k.lower()]
    if secret:
        query.update(dict.fromkeys(secret, "***"))
        parts = parts._replace(query=urlencode(query, safe="*"))
        url = f"{url.split('?', 1)[0]}?{parts.query}"  # the rest as written (unix:///...)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]  # as written: a bad port must not raise here
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _celery_url(url: str) -> str:
    """Celery spells a Unix socket ``redis+socket:///path?virtual_host=DB``, and takes the
    credentials in the user part only (kombu fails on ``?password=``, which redis-py takes)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    moved = [query.pop(key) for key in _TRANSPORT_OPTIONS if key in query]  # transport options
    if "password" in query or "username" in query:
        user = query.pop("username", unquote(parts.username or ""))
        password = query.pop("password", unquote(parts.password or ""))
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}")
        moved.append(password)
    if parts.scheme != "unix" and "db" in query:  # kombu reads the database from the path only
        parts = parts._replace(path=f"/{query.pop('db')}")
        moved.append("db")
    if moved:
        parts = parts._replace(query=urlencode(query))
        url = urlunsplit(parts)
    if parts.scheme != "unix":
        return url
    query["virtual_host"] = query.pop("db", "0")
    # built by hand: urlunsplit drops the '//' of an empty host, which Celery needs
    return f"redis+socket://{parts.netloc}{parts.path}?{urlencode(query)}"


def _unreadable(path: str) -> str:
    """Why this process cannot read ``path`` or the folders on its way ('' when it can, or
    when it is not there at all): a store made by root, 0700, reads as empty to the user a
    worker runs as."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            os.stat(path)
    except PermissionError:
        return (
            f"cannot be read by this process's user (uid {os.getuid()}): permission denied "
            "on it or on a folder on its path (certificates are public: make them readable)"
        )
    except OSError:
        pass
    return ""
