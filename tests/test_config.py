"""Config: one typed object from FLEETJOBS_* variables; URLs with secrets never printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from fleetjobs import Config, ConfigError
from fleetjobs.config import redact_url


def test_settings_come_from_the_environment_then_overrides() -> None:
    env = {
        "FLEETJOBS_REDIS_URL": "redis://h:6380/2",
        "FLEETJOBS_PREFIX": "blue:",
        "FLEETJOBS_RETENTION": "3600",
    }
    cfg = Config.from_env(env)
    assert (cfg.redis_url, cfg.prefix, cfg.retention) == ("redis://h:6380/2", "blue:", 3600.0)
    assert Config.from_env(env, prefix="green:").prefix == "green:"
    assert Config.from_env({}).redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"FLEETJOBS_RETENTION": "soon"}, "FLEETJOBS_RETENTION='soon' is not a valid float"),
        ({"FLEETJOBS_REDIS_URL": "http://x"}, "unsupported Redis URL scheme 'http'"),
        # redis-py would connect to database 0 and say nothing
        ({"FLEETJOBS_REDIS_URL": "redis://h:6379/abc"}, "path is its database number"),
        ({"FLEETJOBS_REDIS_URL": "rediss://h/0/x"}, "path is its database number"),
        ({"FLEETJOBS_PREFIX": "has space"}, "invalid key prefix"),
        ({"FLEETJOBS_RETENTION": "-1"}, "retention must be a positive number, got -1.0"),
        ({"FLEETJOBS_RETENTION": "nan"}, "retention must be a positive number, got nan"),
        ({"FLEETJOBS_HEARTBEAT_INTERVAL": "inf"}, "heartbeat_interval must be a positive"),
        # a host record saying so is one no reader takes (fleetjobs.hosts): every host hidden
        ({"FLEETJOBS_HOST_TTL": "2e9"}, r"host_ttl must be at most 1e\+09 s, got 2000000000.0"),
        # a host would flap offline between its own heartbeats (and its jobs Disconnected)
        (
            {"FLEETJOBS_HEARTBEAT_INTERVAL": "12", "FLEETJOBS_HOST_TTL": "4"},
            r"heartbeat_interval \(12 s\) must be less than host_ttl \(4 s\)",
        ),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


def test_a_config_passed_where_a_url_goes_is_refused_with_the_way_to_pass_it() -> None:
    # Fleet(Config(...)): the first argument is the URL, the config goes by name
    from fleetjobs import Fleet

    with pytest.raises(ConfigError, match="not Config: pass it as config="):
        Fleet(Config(redis_url="redis://127.0.0.1:1/0"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a Redis URL must be text, not int"):
        Config(redis_url=6379)  # type: ignore[arg-type]
    # a URL given is a URL, even an empty one: not the default Redis in its place
    with pytest.raises(ConfigError, match="unsupported Redis URL scheme ''"):
        Fleet("")
    with pytest.raises(ConfigError, match="not int"):
        Fleet(0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retention must be a number, got 'x'"):
        Config(retention="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid key prefix 5"):
        Config(prefix=5)  # type: ignore[arg-type]


def test_passwords_are_hidden_in_every_message() -> None:
    assert redact_url("rediss://ops:hunter2@cache:6380/0") == "rediss://ops:***@cache:6380/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigError) as err:
        Config(redis_url="ftp://u:hunter2@h/0")
    assert "hunter2" not in str(err.value)


def test_a_password_given_as_a_query_parameter_is_hidden_and_reaches_celery() -> None:
    # redis-py takes ?password=; kombu takes the user part only (it failed on the worker's
    # start with "multiple values for keyword argument 'password'")
    from kombu import Connection

    url = "redis://127.0.0.1:6412/0?password=hunter2&socket_timeout=3"
    assert redact_url(url) == "redis://127.0.0.1:6412/0?password=***&socket_timeout=3"
    assert redact_url("unix:///run/r.sock?password=hunter2") == "unix:///run/r.sock?password=***"
    cfg = Config(redis_url=url)
    assert "hunter2" not in cfg.safe_url
    conn = Connection(cfg.broker_url, transport_options=cfg.broker_transport_options)
    assert (conn.password, conn.hostname, conn.port) == ("hunter2", "127.0.0.1", 6412)
    assert conn.transport_options == {"socket_timeout": 3.0}  # kombu's place for it


@pytest.mark.parametrize(
    "query, message",
    [
        ("?timeout=3", "unsupported option 'timeout' in the Redis URL"),
        ("?db=abc", "?db= in the Redis URL redis://h:1/0?db=abc must be a number"),
        ("?socket_timeout=nan", "must be a positive number, got 'nan'"),
        ("?socket_timeout=0", "must be a positive number, got '0'"),
        ("?health_check_interval=nan", "must be a number, got 'nan'"),
        ("?sentinel_password=x", "for a redis+sentinel:// URL only"),
        ("?ssl_cert_reqs=bogus", "is one of none, optional, required, got 'bogus'"),
        ("?ssl_cert_reqs=REQUIRED", "got 'REQUIRED'"),  # both sides read it as written
        ("?passwd=hunter2", "unsupported option 'passwd' in the Redis URL (supported"),
    ],
)
def test_a_redis_url_option_either_side_cannot_read_is_refused(query: str, message: str) -> None:
    # a console (redis-py) and a worker (kombu) read the same URL: what one of them cannot
    # take is refused for both, up front, not as a worker's traceback at its start
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        Config(redis_url=f"redis://h:1/0{query}")
    assert "hunter2" not in str(refused.value)  # a mistyped secret is not shown


def test_a_sentinel_url_takes_only_what_is_applied_through_sentinel() -> None:
    url = "redis+sentinel://s1:26379/fleet/1?sentinel_password=sp"
    assert Config(redis_url=url).broker_transport_options["master_name"] == "fleet"
    for query in ("password=x", "db=2", "socket_timeout=3", "ssl_cert_reqs=required"):
        with pytest.raises(ConfigError, match="is not read in a redis\\+sentinel:// URL"):
            Config(redis_url=f"{url}&{query}")


def test_what_kombu_reads_elsewhere_is_moved_there_and_a_password_is_given_once() -> None:
    # kombu reads the database from the path only: ?db= goes there, as redis-py reads it
    cfg = Config(redis_url="redis://h:1?db=3")
    assert (cfg.db, cfg.broker_url) == (3, "redis://h:1/3")
    tls = "rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_path=/etc/ca&ssl_password=k3y"
    assert "k3y" not in Config(redis_url=tls).safe_url
    with pytest.raises(ConfigError, match="gives a password twice") as twice:
        Config(redis_url="redis://:hunter2@h:1/0?password=other")
    assert "hunter2" not in str(twice.value) and "other" not in str(twice.value)


def test_unix_sockets_and_tls_reach_celery_in_its_own_spelling() -> None:
    cfg = Config(redis_url="unix:///tmp/r.sock?db=3")
    assert cfg.broker_url == "redis+socket:///tmp/r.sock?virtual_host=3"
    tls = Config(redis_url="rediss://u:p@h:6380/1?ssl_cert_reqs=required")
    assert tls.broker_url == "rediss://u:p@h:6380/1?ssl_cert_reqs=required"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    cfg = Config(redis_url="redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/fleet/3")
    assert cfg.sentinel is not None
    assert cfg.sentinel.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (cfg.sentinel.service, cfg.sentinel.db, cfg.sentinel.password) == ("fleet", 3, "pw")
    # Celery's broker gets kombu's spelling, with the service as a transport option
    assert cfg.broker_url == "sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26379/3"
    assert cfg.broker_transport_options == {"master_name": "fleet"}
    assert cfg.safe_url == "redis+sentinel://:***@10.0.0.1:26379,10.0.0.2/fleet/3"
    for bad in ("redis+sentinel://h1:26379", "sentinel://h1:999999/fleet", "sentinel://h/a/b/c"):
        with pytest.raises(ConfigError):
            Config(redis_url=bad)


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379", 0),
        ("redis://127.0.0.1:6379/0", 0),
        ("rediss://u:p@host:6380/5?ssl_cert_reqs=required", 5),
        ("redis://127.0.0.1:6379/2?db=7", 7),  # redis-py: the query wins over the path
        ("unix:///run/redis.sock?db=3", 3),
        ("unix:///run/redis.sock", 0),
        ("redis+sentinel://s1:26379,s2:26379/mymaster/4", 4),
    ],
)
def test_the_database_number_is_the_one_redis_py_connects_to(url: str, db: int) -> None:
    assert Config(redis_url=url).db == db
    if not url.startswith("redis+sentinel"):
        assert redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0) == db


def test_a_cert_store_that_holds_no_certificate_is_refused(tmp_path: Path) -> None:
    # a worker given it would start "ready" and refuse every job as signed by no one it knows
    empty = tmp_path / "certs"
    empty.mkdir()
    for store in (tmp_path / "missing", empty):
        with pytest.raises(ConfigError, match="holds no certificate"):
            Config.from_env({"FLEETJOBS_CERT_STORE": str(store)})
    (empty / "ops.pem").write_text("a certificate\n")
    assert Config.from_env({"FLEETJOBS_CERT_STORE": str(empty)}).signed
