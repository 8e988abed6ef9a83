"""The store: one fleet's Redis connection, its keys and scripts, and its error translation.

Every layer that talks to Redis (the registry's reads, the write path's lifecycle, records
and hosts) stands on one :class:`Store`, so a console or a worker process holds one connection
pool however many layers it uses. :func:`guarded` turns redis-py's errors into fleetjobs'
own, for plain functions and generators alike: no ``redis.exceptions`` type ever reaches a
user.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import redis
import redis.connection
import redis.exceptions
import redis.sentinel
from redis._parsers.encoders import Encoder
from redis.driver_info import DriverInfo

from .config import Config
from .errors import (
    ConfigError,
    CredentialsRefusedError,
    PermissionDeniedError,
    RedisFullError,
    RedisUnavailableError,
    RegistryError,
)
from .keys import Keys
from .relaycall import RelayClient, RelayedScripts
from .scripts import Scripts
from .version import __version__

# who connects (CLIENT LIST shows it), given whole: redis-py's default looks its own version
# up in the installed packages' metadata at every connection pool, some 5 ms of each CLI verb
_DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__).add_upstream_driver(
    "fleetjobs", __version__
)
# a reply that is not UTF-8 reads with U+FFFD where it is not: what fleetjobs writes always
# is, and what is not was written by hand or by a stolen credential (a relay's ring, a relay
# request, a job's channel); strict decoding raised UnicodeDecodeError, no RedisError, out
# of a relay's round (every location's turn lost) and a console's wait
READ_ERRORS = "replace"

P = ParamSpec("P")
T = TypeVar("T")


def translate(exc: redis.exceptions.RedisError, url: str) -> Exception:
    """The fleetjobs error for a redis-py error (to raise ``from None``)."""
    # redis-py's AuthenticationError is a ConnectionError: asked first, it is no Redis away
    if isinstance(exc, redis.exceptions.AuthenticationError) or any(
        code in str(exc) for code in ("NOAUTH", "WRONGPASS")
    ):
        return CredentialsRefusedError(f"Redis at {url} refused the credentials: {_why(exc)}")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return RedisUnavailableError(f"cannot reach Redis at {url}: {_why(exc)}")
    # NOPERM for a command (redis-py's NoPermissionError, whose text drops the code); inside
    # a script, Redis 7 says the user "can't run this command"
    if (
        isinstance(exc, redis.exceptions.NoPermissionError)
        or "NOPERM" in str(exc)
        or "can't run this command" in str(exc)
    ):
        why = _why(exc).split(" script: ")[0].rstrip(" .,")  # not the script's SHA and line
        return PermissionDeniedError(
            f"Redis at {url} refused this user the command: {why} (a user that may only read "
            "gets, waits and receives with --keep; what writes needs a console's user)"
        )
    if "OOM " in str(exc) or "used memory > 'maxmemory'" in str(exc):
        return RedisFullError(
            f"Redis at {url} is full: it takes no writes past its maxmemory (its policy evicts "
            "nothing); remove jobs or their output (fleetjobs remove), or raise maxmemory"
        )
    if "unknown command 'SENTINEL'" in str(exc):  # a redis+sentinel:// URL at a plain Redis
        return ConfigError(f"the servers {url} names are no Redis Sentinels: {_why(exc)}")
    if "DB index is out of range" in str(exc):  # SELECT of the URL's database: a URL error
        return ConfigError(f"Redis at {url} has no database {_db(url)}: {_why(exc)}")
    return RegistryError(f"Redis answered an error: {exc}")


def _db(url: str) -> str:
    try:
        return str(Config(redis_url=url).db)
    except ConfigError:
        return "of this URL"


def _why(exc: Exception) -> str:
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        # redis-py adds the repr of its Sentinel client: some 1,500 characters of pools
        return f"{str(exc).split(' : ')[0]} (no sentinel answered, or none knows the service)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def _url_of(args: tuple[Any, ...]) -> str:
    owner = args[0] if args else None
    store = getattr(owner, "store", owner)
    return store.safe_url if isinstance(store, Store) else "Redis"


def guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Translate redis-py's errors raised by a method of a store's layer (or by iterating the
    generator it returns) into :class:`RedisUnavailableError` or :class:`RegistryError`."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except redis.exceptions.RedisError as exc:
                raise translate(exc, _url_of(args)) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise translate(exc, _url_of(args)) from None

    return wrapper


class Store:
    """One fleet's Redis: its client, its keys, its scripts.

    Args:
        client: a redis-py client with ``decode_responses=True``.
        config: the fleet's settings (prefix, retention, heartbeat timings).
    """

    def __init__(self, client: redis.Redis, config: Config) -> None:
        # Any: redis-py's annotations cannot know that decode_responses makes every reply str
        self.r: Any = client
        self.config = config
        self.keys = Keys(config.prefix)
        self.safe_url = config.safe_url
        self.scripts: Scripts | RelayedScripts = Scripts(client, config.prefix)
        # a confined worker's (config.confined_to): what it may not write, the relay writes
        self.relay: RelayClient | None = None
        if config.confined_to:
            self.relay = RelayClient(client, self.keys, config.confined_to)
            self.scripts = RelayedScripts(Scripts(client, config.prefix), self.relay)
        self._idle_pubsubs: list[Any] = []  # subscriptions ended, kept for the next one
        self._pubsub_lock = threading.Lock()
        self._pid = os.getpid()

    @classmethod
    def connect(cls, config: Config) -> Store:
        """A store on a new connection pool to ``config.redis_url`` (through Sentinel, the
        primary of the moment: after a failover, the next connection finds the new one)."""
        sentinel = config.sentinel
        if sentinel is None:
            client = redis.Redis.from_url(
                config.redis_url,
                decode_responses=True,
                encoding_errors=READ_ERRORS,
                socket_connect_timeout=5,
                health_check_interval=30,
                command_packer=_packer(),
                driver_info=_DRIVER,
            )
            return cls(client, config)
        watchers = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(sentinel.hosts),
            sentinel_kwargs={
                "password": sentinel.sentinel_password,
                "socket_connect_timeout": 5,
                "socket_timeout": 5,
            },
            socket_connect_timeout=5,
        )
        primary = watchers.master_for(  # type: ignore[no-untyped-call]
            sentinel.service,
            db=sentinel.db,
            username=sentinel.username,
            password=sentinel.password,
            decode_responses=True,
            encoding_errors=READ_ERRORS,
            health_check_interval=30,
            command_packer=_packer(),
            driver_info=_DRIVER,
        )
        return cls(primary, config)

    def close(self) -> None:
        with self._pubsub_lock:
            idle, self._idle_pubsubs = self._idle_pubsubs, []
        for pubsub in idle:
            with contextlib.suppress(Exception):
                pubsub.close()
        self.r.close()

    def subscribe(self, channels: Sequence[str]) -> Any:
        """A pub/sub subscription to ``channels``, on a connection a finished subscription
        left (a new connection costs a connect and a handshake, some 2 ms, for each job a
        worker runs and each wait). Hand it back with :meth:`unsubscribe`. A reused one may
        still deliver a message of its former channels: readers check the channel.

        Raises:
            redis.exceptions.RedisError: Redis could not be reached.
        """
        pubsub = None
        with self._pubsub_lock:
            if self._pid == os.getpid() and self._idle_pubsubs:
                pubsub = self._idle_pubsubs.pop()
        if pubsub is None:
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*channels)
        except BaseException:
            self.unsubscribe(pubsub, reuse=False)
            raise
        return pubsub

    def unsubscribe(self, pubsub: Any, reuse: bool = True) -> None:
        """End a subscription from :meth:`subscribe` and keep its connection for the next
        (at most a few: one per thread that waits at once). Without ``reuse`` (a read broken
        off by an error or a Ctrl-C, in an unknown state), or when it cannot even
        unsubscribe, its connection is closed."""
        if reuse:
            try:
                pubsub.unsubscribe()
                with self._pubsub_lock:
                    if self._pid == os.getpid() and len(self._idle_pubsubs) < 8:
                        self._idle_pubsubs.append(pubsub)
                        return
            except Exception:  # it cannot even unsubscribe: closed below
                pass
        with contextlib.suppress(Exception):
            pubsub.close()

    @guarded
    def ping(self) -> None:
        self.r.ping()


def _packer() -> Any:
    """redis-py's own command packer. hiredis still parses the replies (where the time goes);
    its C packer crashed the process (SIGSEGV) when a Ctrl-C landed while it packed a command
    (seen on `receive --wait`, hiredis 3.5), so commands are packed in Python."""
    encoder = Encoder("utf-8", "strict", decode_responses=True)  # type: ignore[no-untyped-call]
    return redis.connection.PythonRespSerializer(6000, encoder.encode)
