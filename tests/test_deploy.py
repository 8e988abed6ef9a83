"""The deploy files say what the code does: every service of docker-compose.yml runs a command
line the fleetjobs CLI accepts, names only settings the code reads, restarts by itself, and
has a health check where one can tell something; ``docker compose config`` agrees where it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import yaml

from fleetjobs.cli import cli
from fleetjobs.embedded import redis_server_binary

from .conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "fleet.env.example"
# verbs whose command arrives with another part of the work (issue 7's schedules): checked by
# the parser as soon as the CLI has them, named here so that nothing else can slip through
LATER_VERBS = {"beat"}


def load() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def fleetjobs_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the fleetjobs image (its entrypoint is ``fleetjobs``)."""
    return {
        name: svc
        for name, svc in doc["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith("fleetjobs")
    }


def settings_the_code_reads() -> set[str]:
    names: set[str] = set()
    for folder in ("fleetjobs", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"\bFLEETJOBS_[A-Z_]+\b", path.read_text()))
    return names


def check_command_line(argv: list[str]) -> None:
    """Parse ``fleetjobs ARGV`` with the CLI's own parser, down to the verb, running nothing."""
    ctx = cli.make_context("fleetjobs", list(argv), resilient_parsing=True)
    # click 8.2 keeps the verb apart in _protected_args (its public name is deprecated)
    words = [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert words, f"no verb in {argv}"
    verb = cli.get_command(ctx, words[0])
    if verb is None and words[0] in LATER_VERBS:
        return
    assert verb is not None, f"fleetjobs has no verb {words[0]!r} ({argv})"
    # strict here: an unknown option or a bad value raises, as it would when the service starts
    verb.make_context(words[0], list(words[1:]), parent=ctx)


def test_every_service_runs_a_valid_fleetjobs_command_line() -> None:
    # given the compose file
    services = fleetjobs_services(load())
    assert {"web01", "web02", "db01", "beat", "flower", "console"} <= services.keys()
    # then each fleetjobs service's command parses as a fleetjobs command line
    for name, svc in services.items():
        command = svc.get("command")
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if argv == ["--help"]:
            continue
        try:
            check_command_line(argv)
        except click.ClickException as exc:
            pytest.fail(f"service {name}: {argv}: {exc.format_message()}")
    # and the parser is strict enough to catch a typo
    with pytest.raises(click.ClickException):
        check_command_line(["worker", "--concurency", "4"])
    with pytest.raises(AssertionError):
        check_command_line(["wroker"])


def test_the_environment_names_only_settings_the_code_reads() -> None:
    doc = load()
    known = settings_the_code_reads()
    assert {"FLEETJOBS_REDIS_URL", "FLEETJOBS_FLOWER_AUTH"} <= known
    for name, svc in fleetjobs_services(doc).items():
        for var in svc.get("environment", {}):
            assert var in known, f"service {name} sets {var}, which no code reads"
    # Redis's own variables are used by its command or its health check
    redis = doc["services"]["redis"]
    used = str(redis["command"]) + str(redis["healthcheck"]["test"])
    for var in redis.get("environment", {}):
        assert var in used, f"redis sets {var} and never uses it"
    # and every secret the file interpolates is in the example env file
    wanted = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    example = {ln.split("=")[0] for ln in ENV_EXAMPLE.read_text().splitlines() if "=" in ln}
    assert wanted <= {v for v in example if not v.startswith("#")}, wanted - example


def test_every_service_restarts_and_can_be_checked() -> None:
    doc = load()
    for name, svc in doc["services"].items():
        if "console" in svc.get("profiles", []):
            assert svc.get("restart") == "no"  # a one-off console must not loop
            continue
        assert svc.get("restart") in {"unless-stopped", "always", "on-failure"}, name
    for name in ("redis", "web01", "web02", "db01", "flower"):
        assert doc["services"][name].get("healthcheck", {}).get("test"), name
    redis_cmd = str(doc["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--requirepass" in redis_cmd
    assert "change-me" not in COMPOSE.read_text()  # no default password to forget


def test_every_worker_keeps_its_journal_when_its_container_is_recreated() -> None:
    # with signed messages, a worker's journal of what its host ran refuses a replay; in the
    # container's own filesystem it was lost at each rebuild or upgrade, and a captured
    # message could run once more (security review)
    doc = load()
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    workers = {
        name: svc
        for name, svc in fleetjobs_services(doc).items()
        if str(svc.get("command", "")).startswith("worker")
    }
    assert set(workers) == {"web01", "web02", "db01"}
    volumes: list[str] = []
    for name, svc in workers.items():
        state = svc["environment"].get("FLEETJOBS_STATE_DIR")
        assert state, f"{name} keeps its journal in the container's own filesystem"
        mounted = [v for v in svc.get("volumes", []) if v.split(":")[1] == state]
        assert len(mounted) == 1, f"{name}: no volume at {state}"
        volume = mounted[0].split(":")[0]
        assert volume in (doc.get("volumes") or {}), f"{name}: {volume} is no named volume"
        volumes.append(volume)
        # the image makes the folder, owned by the user the worker runs as, so that a new
        # named volume takes that owner
        assert f"-o fleetjobs -g fleetjobs {state}" in dockerfile
    assert len(set(volumes)) == len(volumes), "two workers share one journal"


def _compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    compose = _compose()
    if compose is None:
        # CI installs it (.ci/run): there, a missing checker is a failure, not a skip
        if os.environ.get("CI"):
            pytest.fail("CI must have docker compose (or docker-compose) to check the file")
        pytest.skip("needs docker compose (or docker-compose) to validate the file")
    env = tmp_path / "test.env"
    env.write_text(ENV_EXAMPLE.read_text())
    done = subprocess.run(
        [*compose, "--env-file", str(env), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    # and without the secrets it refuses, naming what is missing
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(
        [*compose, "--env-file", str(empty), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode != 0 and "REDIS_PASSWORD" in missing.stderr


def test_the_shipped_acl_file_loads_into_redis_and_confines_the_worker(tmp_path: Path) -> None:
    # given deploy/redis-acl.conf, as shipped (its comments too), included from a redis.conf
    # as its header says, beside the administrator it tells the operator to add (the tests
    # had stripped its comments, and Redis refused the file as an aclfile)
    sock = tmp_path / "redis.sock"
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"include {ROOT / 'deploy' / 'redis-acl.conf'}\n"
        "user admin on >admin-pw ~* &* +@all\n"
        f"port 0\nunixsocket {sock}\nsave ''\nappendonly no\ndir {tmp_path}\n"
    )
    server = subprocess.Popen(
        [redis_server_binary(), str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():  # a file Redis cannot parse: it exits instead
            if server.poll() is not None:
                out = server.stdout.read() if server.stdout else b""
                raise AssertionError(f"redis-server refused the file: {out.decode()[-600:]}")
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        admin = redis.Redis(
            unix_socket_path=str(sock), username="admin", password="admin-pw", decode_responses=True
        )
        # then every user it names is there
        names = {line.split()[1] for line in admin.acl_list()}
        assert {"fleet-console", "fleet-viewer", "fleet-worker", "fleet-worker-web01"} <= names
        # and a client with no credentials can do nothing: the default user is off
        anyone = redis.Redis(unix_socket_path=str(sock))
        with pytest.raises(redis.exceptions.AuthenticationError):
            anyone.set("fj:job:1", "x")
        anyone.close()
        # and the confined worker may push onto its own queue and ring the relay, nothing else
        worker = redis.Redis(
            unix_socket_path=str(sock), username="fleet-worker-web01", password="change-me-web01"
        )
        worker.lpush("fj:fleetjobs.loc.web01", "x")
        worker.lpush("fj:relay", "web01")
        worker.sadd("fj:_kombu.binding.fleetjobs.loc.web01", "x")  # its queue's binding
        for table in ("reply.celery.pidbox", "celery.pidbox", "fleetjobs.loc.web02"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                worker.sadd(f"fj:_kombu.binding.{table}", "x")
        for key in ("fj:fleetjobs.loc.web02", "fj:job:1", "fj:loc:web02:relay"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                worker.lpush(key, "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.delete("fj:relay")
        worker.close()
        admin.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
