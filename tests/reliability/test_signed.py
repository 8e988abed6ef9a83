"""Signed messages: with a key, a certificate and a store of trusted certificates, consoles sign
what they publish and workers run only job messages signed by a trusted certificate; an
unsigned or wrongly signed message is refused (dead-lettered) and nothing runs."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetjobs import Config, Fleet, JobState
from fleetjobs import deadletters as letters
from fleetjobs.celery_app import make_celery
from fleetjobs.embedded import LocalWorkers
from fleetjobs.errors import ConfigError, NotSignedError
from fleetjobs.lifecycle import JobSpec

from ..conftest import FAST, INCLUDE, ROOT, eventually, make_cli, uniq

FORGE = """
import sys
from fleetjobs.celery_app import make_celery
from fleetjobs.config import Config
from fleetjobs.routing import TASK_NAME, queue_for
url, prefix, job_id, iid, loc = sys.argv[1:6]
signing = dict(zip(("signing_key", "signing_cert", "cert_store"), sys.argv[6:9]))
app = make_celery(Config(redis_url=url, prefix=prefix, **signing))
app.send_task(TASK_NAME, args=[int(job_id)], queue=queue_for(loc), task_id=iid, ignore_result=True)
app.close()
"""


def make_identity(folder: Path, name: str) -> tuple[Path, Path]:
    """A private key and a self-signed certificate (PEM files) for ``name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture
def signed(redis_url: str, logs: Path, tmp_path: Path) -> Iterator[tuple[Config, Fleet, Path]]:
    """A fleet whose console signs and whose worker verifies (one trusted identity, 'fleet'):
    the worker is given the trusted certificates and no key, as deploy/ sets one up."""
    store = tmp_path / "trusted"
    store.mkdir()
    key, cert = make_identity(store, "fleet")
    key.rename(tmp_path / "fleet.key")
    signing = {
        "FLEETJOBS_SIGNING_KEY": str(tmp_path / "fleet.key"),
        "FLEETJOBS_SIGNING_CERT": str(cert),
        "FLEETJOBS_CERT_STORE": str(store),
    }
    cfg = Config(
        redis_url=redis_url,
        prefix=f"{uniq('sg')}:",
        signing_key=signing["FLEETJOBS_SIGNING_KEY"],
        signing_cert=signing["FLEETJOBS_SIGNING_CERT"],
        cert_store=signing["FLEETJOBS_CERT_STORE"],
        **FAST,  # type: ignore[arg-type]
    )
    os.environ["FLEETJOBS_CERT_STORE"] = str(store)
    os.environ["FLEETJOBS_STATE_DIR"] = str(tmp_path / "state")  # the machine's journal
    try:
        workers = LocalWorkers(cfg, [["signed", "signed2"]], extra_args=INCLUDE, log_dir=logs)
        workers.start()
    finally:
        del os.environ["FLEETJOBS_CERT_STORE"], os.environ["FLEETJOBS_STATE_DIR"]
    with workers, Fleet(config=cfg) as fleet:
        yield cfg, fleet, tmp_path


def forge(cfg: Config, job_id: int, iid: str, *signing: str) -> None:
    argv = [sys.executable, "-c", FORGE, cfg.redis_url, cfg.prefix, str(job_id), iid, "signed"]
    subprocess.run([*argv, *signing], check=True, cwd=ROOT, timeout=60)


def test_signed_jobs_run(signed: tuple[Config, Fleet, Path]) -> None:
    _, fleet, _ = signed
    job = fleet.start("echo", "signed and verified", locations="signed")
    assert fleet.wait(job, timeout=30)
    assert job.state is JobState.COMPLETED
    assert list(fleet.receive(job)) == ["signed and verified"]
    # a throttled child, released by its sibling's end on a worker that holds no key, runs:
    # its message is the one its console signed, kept until the release
    job = fleet.start("echo", "released", locations="signed,signed2", throttle_limit=1)
    [done] = fleet.wait(job, timeout=30)
    assert [c.state for c in done.info.children] == [JobState.COMPLETED] * 2
    assert list(fleet.receive(job)) == ["released", "released"]


def test_a_console_that_cannot_sign_is_refused_at_start_not_left_waiting(
    signed: tuple[Config, Fleet, Path],
) -> None:
    cfg, fleet, _ = signed
    # given a console of this fleet with no signing key (its workers run only signed jobs)
    plain = make_cli(Config(redis_url=cfg.redis_url, prefix=cfg.prefix))
    before = len(fleet.get())
    # when it starts a job there, it is told in one line, exit 2, and nothing is queued (its
    # job waited NotStarted for ever, every worker refusing its unsigned messages)
    done = plain("start", "-l", "signed", "echo", "hi")
    assert done.returncode == 2, done.stderr
    assert "run only signed jobs, and this console signs none" in done.stderr
    assert done.stderr.count("\n") == 1 and len(fleet.get()) == before
    # and the hosts say so
    [host] = [h for h in fleet.hosts() if h.location == "signed"]
    assert host.signed and host.to_dict()["signed"] is True
    # and a schedule it fires there is a Failed run that says why (a beat with no key)
    with Fleet(config=Config(redis_url=cfg.redis_url, prefix=cfg.prefix)) as console:
        console.schedules.add("unsigned", "echo", 1, cron="0 0 1 1 *", locations="signed")
        run = console.schedules.run("unsigned")
        assert run is not None and run.state is JobState.FAILED
        assert "run only signed jobs" in (run.reason or "")
        console.schedules.remove("unsigned")


def test_a_console_that_cannot_sign_runs_on_the_chosen_hosts_that_need_no_signature(
    signed: tuple[Config, Fleet, Path], logs: Path
) -> None:
    cfg, _, _ = signed
    # given a fleet moving to signing a host at a time: one host's worker is not signed yet
    plain = Config(redis_url=cfg.redis_url, prefix=cfg.prefix, **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(plain, [["plain"]], extra_args=INCLUDE, log_dir=logs),
        Fleet(config=plain) as console,
    ):
        eventually(lambda: "plain" in {h.location for h in console.hosts() if h.online}, 20)
        # when a console that signs nothing starts a job on --all (it was refused whole,
        # exit 2, nothing run anywhere)
        job = console.start("echo", "hi", all_hosts=True)
        # then it says which hosts will refuse it, runs on the one that does not, and the
        # others' parts fail saying why
        assert sorted(w.split()[3] for w in job.warnings) == ["signed", "signed2"], job.warnings
        [done] = console.wait(job, timeout=30)
        states = {c.location: c.state for c in done.info.children}
        assert states == {
            "plain": JobState.COMPLETED,
            "signed": JobState.FAILED,
            "signed2": JobState.FAILED,
        }, states
        for child in done.info.children:
            if child.location != "plain":
                assert "refused its message" in (child.reason or ""), child.reason
        assert list(console.receive(job)) == ["hi"]
        # and a signed host named outright is still refused before anything is queued
        with pytest.raises(NotSignedError, match="run only signed jobs"):
            console.start("echo", "x", locations="plain,signed")


def test_a_console_whose_key_is_not_its_certificates_is_an_input_error(
    signed: tuple[Config, Fleet, Path], tmp_path: Path
) -> None:
    cfg, fleet, _ = signed
    # a key and a certificate of two identities: a setting to fix (exit 2), where it read as
    # a Redis that cannot be reached (exit 4)
    _, cert = make_identity(tmp_path, "ops2")
    other_key, _ = make_identity(tmp_path, "other")
    mixed = Config(
        redis_url=cfg.redis_url,
        prefix=cfg.prefix,
        signing_key=str(other_key),
        signing_cert=str(cert),
        cert_store=str(cert),
    )
    before = len(fleet.get())
    done = make_cli(mixed)(
        "start",
        "-l",
        "signed",
        "echo",
        "hi",
        env={
            "FLEETJOBS_SIGNING_KEY": str(other_key),
            "FLEETJOBS_SIGNING_CERT": str(cert),
            "FLEETJOBS_CERT_STORE": str(cert),
        },
    )
    assert done.returncode == 2, done.stderr
    assert "is not the key of signing certificate" in done.stderr
    assert done.stderr.count("\n") == 1 and len(fleet.get()) == before


def test_a_worker_holds_nothing_that_signs(signed: tuple[Config, Fleet, Path]) -> None:
    cfg, _, _ = signed
    # given a worker's settings: the trusted certificates, no key
    worker = Config(redis_url=cfg.redis_url, prefix=cfg.prefix, cert_store=cfg.cert_store)
    assert worker.signed and not worker.can_sign
    # when code with those settings tries to send a job message, it cannot sign it
    argv = [sys.executable, "-c", FORGE, cfg.redis_url, cfg.prefix, "1", "x", "signed"]
    done = subprocess.run(
        [*argv, "", "", cfg.cert_store], cwd=ROOT, timeout=60, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "sign" in done.stderr.lower() or "key" in done.stderr.lower(), done.stderr[-500:]


def test_a_record_changed_after_signing_does_not_run(signed: tuple[Config, Fleet, Path]) -> None:
    _, fleet, _ = signed
    # given a throttled job whose second child waits for the first (asleep for 2 s)
    job = fleet.start("sleep", 2, locations="signed2,signed", throttle_limit=1)
    waiting = job.info.children[1]
    # when someone with Redis access changes what the job runs while the child waits
    fleet.store.r.hset(fleet.store.keys.job(job.id), "args", "[600]")
    # then the worker refuses the child's changed record: it fails, saying why, unrun
    assert fleet.wait(job, timeout=30)
    child = fleet.get(waiting.id)[0].info
    assert child.state is JobState.FAILED
    assert "differs from what its console signed" in (child.reason or ""), child.reason
    assert "600" in (child.reason or "")


@pytest.mark.parametrize("who", ["unsigned", "a stranger"])
def test_a_message_not_signed_by_a_trusted_certificate_is_refused(
    signed: tuple[Config, Fleet, Path], who: str
) -> None:
    cfg, fleet, folder = signed
    # given a child recorded in Redis (as anyone with Redis access could) but not published
    _, _, [child] = fleet.lifecycle.create(JobSpec("echo", ["forged"], {}, "echo", ["signed"]))
    # when a message for it is pushed unsigned, or signed by a certificate nobody trusts
    if who == "unsigned":
        forge(cfg, child.id, child.instance_id)
        why = "not a signed message"
    else:
        key, cert = make_identity(folder, "stranger")
        forge(cfg, child.id, child.instance_id, str(key), str(cert), str(cert))
        why = "cannot be decoded"
    # then the worker refuses it, keeps it as a dead letter, and nothing runs
    found = eventually(lambda: letters.read(fleet.store), timeout=20)
    [letter] = found  # type: ignore[misc]
    assert why in letter.reason, letter.reason
    assert fleet.get(child.id)[0].info.state is JobState.NOT_STARTED
    # and the worker goes on serving signed jobs
    job = fleet.start("echo", "still serving", locations="signed")
    assert fleet.wait(job, timeout=30) and list(fleet.receive(job)) == ["still serving"]


def test_a_job_whose_message_its_worker_refuses_fails_saying_why(
    signed: tuple[Config, Fleet, Path],
) -> None:
    cfg, fleet, folder = signed
    # given a console that signs with a certificate the worker does not trust (a beat's
    # whose certificate was not copied to the hosts)
    key, cert = make_identity(folder, "beat01")
    console = folder / "console-store"
    console.mkdir()
    shutil.copy(cert, console / cert.name)
    other = cfg.with_(signing_key=str(key), signing_cert=str(cert), cert_store=str(console))
    with Fleet(config=other) as beat:
        job = beat.start("echo", "never", locations="signed")
    # when the worker refuses the message, then the job Fails saying why, where it waited
    # NotStarted for ever (and held an overlap-skip schedule with it)
    [done] = fleet.wait(job, timeout=30)
    child = done.info.children[0]
    assert child.state is JobState.FAILED, child
    assert (child.reason or "").startswith("the worker on signed refused its message: ")
    assert "beat01" in (child.reason or "") and list(fleet.receive(job)) == []


def test_a_replayed_message_does_not_run_again(signed: tuple[Config, Fleet, Path]) -> None:
    _, fleet, folder = signed
    r, keys = fleet.store.r, fleet.store.keys
    # given a signed job's kept message, copied by someone with Redis access while it waited
    job = fleet.start("echo", "once", locations="signed2,signed", throttle_limit=1)
    child = job.info.children[1]
    copy = r.get(keys.msg(child.instance_id))
    assert copy
    [done] = fleet.wait(job, timeout=30)
    assert [c.state for c in done.info.children] == [JobState.COMPLETED] * 2
    # when they reset the finished child to NotStarted and push the copy onto its queue
    r.hset(keys.job(child.id), mapping={"state": "NotStarted", "queued": "1"})
    r.hdel(keys.job(child.id), "end", "begin", "worker")
    r.lpush(keys.queue("signed"), copy)
    # then the worker claims it but does not run it: this machine ran it already
    replayed = eventually(
        lambda: (i := fleet.get(child.id)[0].info).state is JobState.FAILED and i, timeout=20
    )
    assert "a replay" in (replayed.reason or ""), replayed.reason  # type: ignore[union-attr]
    # and the job's output is the one run's
    assert list(fleet.receive(job)) == ["once", "once"]
    assert (folder / "state" / "ran.sqlite3").exists()


def test_a_kept_message_pushed_onto_another_hosts_queue_is_refused(
    signed: tuple[Config, Fleet, Path],
) -> None:
    _, fleet, _ = signed
    r, keys = fleet.store.r, fleet.store.keys
    # given a signed job for a host no worker serves now: its message waits on its queue
    job = fleet.start("echo", "meant for elsewhere", locations="elsewhere")
    child = job.info.children[0]
    message = r.get(keys.msg(child.instance_id))
    assert message and r.lrem(keys.queue("elsewhere"), 1, message) == 1
    # when someone with Redis access moves it, byte for byte, onto this worker's queue
    r.lpush(keys.queue("signed"), message)
    # then the worker refuses it (it came through the queue of 'signed'), keeps it as a dead
    # letter, and nothing runs
    found = eventually(lambda: letters.read(fleet.store), timeout=20)
    assert any("belongs to location elsewhere" in x.reason for x in found), found  # type: ignore[attr-defined]
    assert fleet.get(child.id)[0].info.state is JobState.NOT_STARTED
    assert list(fleet.receive(job)) == []


def test_a_message_signed_for_another_fleet_does_not_run(
    signed: tuple[Config, Fleet, Path],
) -> None:
    cfg, fleet, _ = signed
    r, keys = fleet.store.r, fleet.store.keys
    # given another fleet (another key prefix) on the same Redis, whose console signs with the
    # same certificate: its job for 'signed' waits on its own queue, which no worker serves
    other = cfg.with_(prefix=f"{uniq('sgb')}:")
    with Fleet(config=other) as b:
        job = b.start("echo", "for the other fleet only", locations="signed")
        bkeys = b.store.keys
    child = job.info.children[0]
    message = r.get(bkeys.msg(child.instance_id))
    assert message
    # when someone with write access to this fleet copies its records and its signed message
    # over, so that record and message agree, and pushes the message onto this worker's queue
    for jid in (job.id, child.id):
        r.hset(keys.job(jid), mapping=r.hgetall(bkeys.job(jid)))
    r.lpush(keys.queue("signed"), message)
    # then the worker does not run it: it was signed for the other fleet
    refused = eventually(
        lambda: (i := fleet.get(child.id)[0].info).state.finished and i, timeout=20
    )
    assert refused.state is JobState.FAILED, refused  # type: ignore[union-attr]
    assert f"for the fleet of prefix {other.prefix!r}" in (refused.reason or "")  # type: ignore[union-attr]
    assert list(fleet.receive(child.id)) == []


def test_the_deploy_script_makes_keys_a_fleet_signs_and_verifies_with(tmp_path: Path) -> None:
    folder = tmp_path / "signing"  # a folder the script makes, as /etc/fleetjobs/signing
    made = subprocess.run(
        ["sh", str(ROOT / "deploy" / "make-signing-keys.sh"), str(folder), "ops", "web01"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(made.stdout.splitlines()) == 2
    # a worker runs as a user of its own (the unit's fleetjobs): it must reach the trusted
    # certificates, which the script left root's alone (umask 077), while each key stays its
    # owner's only
    mode = {p.name: p.stat().st_mode & 0o777 for p in (folder, *folder.rglob("*"))}
    assert mode["signing"] == mode["trusted"] == 0o755, mode
    assert mode["ops.pem"] == mode["web01.pem"] == 0o644, mode
    assert mode["ops.key"] == mode["web01.key"] == 0o600, mode
    tmp_path = folder
    check = """
import sys
from kombu.serialization import dumps, loads
from fleetjobs.celery_app import make_celery
from fleetjobs.config import Config
key, cert, store = sys.argv[1:4]
make_celery(Config(signing_key=key, signing_cert=cert, cert_store=store))
ctype, encoding, body = dumps([[7], {}, {}], serializer="auth")
assert ctype == "application/data" and loads(body, ctype, encoding) == [[7], {}, {}]
print("verified")
"""
    # ops signs, and a worker trusting the folder verifies it
    key, cert, store = tmp_path / "ops.key", tmp_path / "trusted" / "ops.pem", tmp_path / "trusted"
    done = subprocess.run(
        [sys.executable, "-c", check, str(key), str(cert), str(store)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.stdout.strip() == "verified", done.stderr


def test_a_signing_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    # a console whose key and certificate are two identities' signed messages every worker
    # refused (a TypeError inside Celery's verification), its jobs waiting NotStarted for ever
    ops_key, ops_cert = make_identity(tmp_path, "ops")
    other_key, _ = make_identity(tmp_path, "other")
    mixed = Config(signing_key=str(other_key), signing_cert=str(ops_cert), cert_store=str(ops_cert))
    with pytest.raises(ConfigError, match="is not the key of signing certificate"):
        make_celery(mixed)
    make_celery(
        Config(signing_key=str(ops_key), signing_cert=str(ops_cert), cert_store=str(ops_cert))
    )


def test_flowers_unsigned_broadcasts_are_refused_once_not_logged_each_time(
    signed: tuple[Config, Fleet, Path], logs: Path
) -> None:
    cfg, fleet, _ = signed
    log = logs / "worker-0.log"
    start = log.stat().st_size
    # given Flower on the fleet: its Celery app signs nothing
    flower = make_celery(cfg.with_(signing_key="", signing_cert="", cert_store=""))
    # when it broadcasts enable_events, as it does every 5 s (each logged a CRITICAL
    # traceback on every worker of a signed fleet, for as long as Flower ran)
    for _ in range(6):
        flower.control.broadcast("enable_events")

    # then the worker keeps one dead letter saying why, and logs it once, with no traceback
    def refused() -> list[letters.DeadLetter]:
        return [d for d in letters.read(fleet.store) if d.queue == "celery.pidbox (broadcast)"]

    eventually(refused, timeout=20)
    time.sleep(1.0)  # the other five, heard meanwhile
    [letter] = refused()
    assert "remote control 'enable_events' is not signed" in letter.reason, letter.reason
    text = log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in text and "decode message body" not in text, text[-3000:]
    assert text.count("enable_events") == 1, text[-3000:]
    # and the worker goes on running signed jobs
    job = fleet.start("echo", "still serving", locations="signed")
    assert fleet.wait(job, timeout=30) and list(fleet.receive(job)) == ["still serving"]
