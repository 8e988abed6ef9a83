"""Flower shows what fleetjobs knows: a real Flower on a private fleet, read through its HTTP
API and in a headless browser, agrees with ``fleetjobs get`` on names, workers and final states.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetjobs import Config, Fleet, JobState
from fleetjobs.celery_app import make_celery
from fleetjobs.embedded import LocalWorkers, free_port

from .conftest import FAST, INCLUDE, ROOT, eventually, make_cli, uniq

AUTH = "ops:s3cret-for-tests"
HOSTS = ["fl1", "fl2", "fl3"]
FLOWER_STATE = {
    JobState.COMPLETED.value: "SUCCESS",
    JobState.FAILED.value: "FAILURE",
    JobState.STOPPED.value: "REVOKED",
}


class FlowerProc:
    """``fleetjobs flower`` as a subprocess on a free port, and its API with basic auth."""

    def __init__(self, config: Config, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "FLEETJOBS_REDIS_URL": config.redis_url,
            "FLEETJOBS_PREFIX": config.prefix,
            "FLEETJOBS_FLOWER_AUTH": AUTH,
        }
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetjobs", "flower", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        eventually(self._up, timeout=30, every=0.2)

    def _up(self) -> bool:
        assert self.proc.poll() is None, "flower exited"
        try:
            self.get("/api/workers?refresh=0")
        except (OSError, urllib.error.URLError):
            return False
        return True

    def get(self, path: str, auth: str | None = AUTH) -> Any:
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
        return json.loads(body) if path.startswith("/api") else body

    def tasks(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/tasks")
        return result

    def close(self) -> None:
        with_suppress_kill(self.proc)
        self._log.close()


def with_suppress_kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def flower_fleet(
    redis_url: str, logs: Path, tmp_path: Path
) -> Iterator[tuple[Config, Fleet, LocalWorkers, FlowerProc]]:
    """A private fleet of three hosts, each its own worker, and Flower watching it."""
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fl')}:", **FAST)  # type: ignore[arg-type]
    with (
        LocalWorkers(
            cfg,
            [[h] for h in HOSTS],
            allow_shell=True,
            concurrency=2,
            extra_args=INCLUDE,
            log_dir=tmp_path,
        ) as workers,
        Fleet(config=cfg) as fleet,
    ):
        flower = FlowerProc(cfg, tmp_path / "flower.log")
        try:
            eventually(lambda: _hears(fleet, flower), timeout=30, every=0.1)
            yield cfg, fleet, workers, flower
        finally:
            flower.close()


def _hears(fleet: Fleet, flower: FlowerProc) -> bool:
    """Whether Flower now hears every event: its web server answers before its event
    receiver is bound, and events sent before that are lost to it (Celery events are not kept)."""
    probe = fleet.start("echo", "probe", name="probe", locations=["fl1"])
    fleet.wait([probe], timeout=10)
    iid = probe.info.children[0].instance_id
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        task = flower.tasks().get(iid, {})
        if task.get("state") == "SUCCESS":
            fleet.remove([probe])
            return task.get("name") == "probe@fl1"
        time.sleep(0.1)
    fleet.remove([probe])
    return False


def fan_out(fleet: Fleet) -> tuple[str, dict[str, Any]]:
    """A job on the three hosts: fl2 fails, fl3 is stopped mid-run, fl1 completes."""
    name = uniq("Fan")
    job = fleet.start("fail_on", "fl2", 3, name=name, locations=HOSTS, throttle_limit=len(HOSTS))
    child3 = next(c for c in job.info.children if c.location == "fl3")
    eventually(lambda: fleet.info(child3.id).state is JobState.RUNNING)
    fleet.stop([child3.id])
    fleet.wait([job], timeout=30)
    return name, {c.instance_id: c for c in fleet.info(job).children}


def test_flower_api_agrees_with_get(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    cfg, fleet, _, flower = flower_fleet
    # given Flower on the fleet: its API refuses a request without credentials, and the
    # password is on no command line (`ps` shows those to every user of the host)
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/api/tasks", auth=None)
    assert refused.value.code == 401
    # and so do its metrics (Flower's own handler served them to anyone)
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/metrics", auth=None)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/metrics", auth="ops:wrong")
    assert refused.value.code == 401
    cmdline = Path(f"/proc/{flower.proc.pid}/cmdline").read_bytes().decode()
    assert "flower" in cmdline and AUTH.split(":")[1] not in cmdline
    # when a fan-out ends with one failure and one stop
    name, children = fan_out(fleet)
    got = json.loads(make_cli(cfg)("get", "--children", "--json", name).stdout)
    states = {c["instance_id"]: c for c in got[0]["children"]}
    assert sorted(c["state"] for c in states.values()) == ["Completed", "Failed", "Stopped"]

    # then each child is one task in Flower: named Name@location, on its own host's worker,
    # in the state `fleetjobs get` shows (a failure's Reason as its exception)
    def settled() -> dict[str, Any]:
        tasks = flower.tasks()
        ours = {k: v for k, v in tasks.items() if k in children}
        done = all(
            ours.get(iid, {}).get("state") == FLOWER_STATE[states[iid]["state"]] for iid in children
        )
        return ours if done and len(ours) == len(children) else {}

    ours = eventually(settled, timeout=20, every=0.5)
    assert isinstance(ours, dict)
    for iid, child in children.items():
        task = ours[iid]
        assert task["name"] == f"{name}@{child.location}"
        assert task["worker"] == f"fleetjobs@{child.location}"
        if child.state is JobState.FAILED:
            assert "refused on fl2" in task["exception"]
            assert states[iid]["reason"] == "ActionError: refused on fl2" or "refused" in str(
                states[iid]["reason"]
            )
    failures = flower.get("/api/tasks?state=FAILURE")
    assert [t["name"] for t in failures.values() if t["uuid"] in children] == [f"{name}@fl2"]
    # and each host is one worker, named after its location
    workers = flower.get("/api/workers?refresh=1")
    assert {f"fleetjobs@{h}" for h in HOSTS} <= set(workers)


def test_metrics_do_not_grow_with_jobs(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    _, fleet, _, flower = flower_fleet

    def series() -> set[str]:
        text = flower.get("/metrics")
        return {ln.split(" ")[0] for ln in text.splitlines() if ln.startswith("flower_")}

    def run_jobs(count: int) -> None:
        jobs = [fleet.start("echo", i, name=uniq("M"), locations=HOSTS) for i in range(count)]
        fleet.wait(jobs, timeout=60)

    # given the fleet has run some jobs and Flower has seen them end
    run_jobs(5)
    time.sleep(2)
    before = series()
    # when many more jobs, each with its own name, run on the same hosts
    run_jobs(30)
    time.sleep(2)
    after = series()
    # then no series was added: the task label is the action, the worker label the host
    assert after == before, sorted(after - before)[:10]
    assert any('task="echo"' in s for s in after)
    tasks = {m.group(1) for s in after if (m := re.search(r'task="([^"]*)"', s))}
    assert tasks <= {"echo", "fleetjobs.job"}, tasks
    # and starts from other console processes on this machine add none either: task-sent is
    # counted under the machine's console name, not a name per process (gen<pid>@host)
    cli = make_cli(fleet.config)
    for _ in range(3):
        res = cli("start", "-l", HOSTS[0], "echo", "from a cli")
        assert res.returncode == 0, res.stderr
    time.sleep(2)
    sent = {
        m.group(1)
        for s in series()
        if "task-sent" in s and (m := re.search(r'worker="([^"]*)"', s))
    }
    assert sent == {f"fleetjobs-console@{socket.gethostname()}"}, sent


def test_terminate_from_celery_is_a_stop(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc], tmp_path: Path
) -> None:
    _, fleet, _, flower = flower_fleet
    marker = f"{time.time():.6f}".replace(".", "")[-9:]
    # given a job running a shell command on fl1
    job = fleet.start("run", f"sleep 3{marker}", name=uniq("Term"), locations=["fl1"])
    eventually(lambda: fleet.info(job).state is JobState.RUNNING)
    eventually(lambda: _pids(marker), timeout=10)
    child = job.info.children[0]
    # when Celery terminates its task (what Flower's Terminate button sends)
    make_celery(fleet.config).control.revoke(child.instance_id, terminate=True)
    # then it is Stopped as from `fleetjobs stop`, its processes are gone, Flower says REVOKED
    fleet.wait([job], timeout=20)
    info = fleet.info(child.id)
    assert info.state is JobState.STOPPED
    assert info.reason == "stopped from Celery"
    eventually(lambda: not _pids(marker), timeout=10)
    eventually(
        lambda: flower.tasks().get(child.instance_id, {}).get("state") == "REVOKED", timeout=15
    )
    # and no worker logged a traceback for it
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    assert "Traceback" not in logs
    assert "TypeError" not in logs
    # and the worker still runs jobs
    again = fleet.start("echo", "still here", locations=["fl1"])
    assert fleet.wait([again], timeout=20)
    assert fleet.info(again).state is JobState.COMPLETED


def _pids(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"sleep 3{marker}"], capture_output=True, text=True)
    return out.stdout.split()


def test_a_vanished_host_is_a_failure_in_flower(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    _, fleet, workers, flower = flower_fleet
    # given a job running on fl3
    job = fleet.start("sleep", 120, name=uniq("Lost"), locations=["fl3"])
    eventually(lambda: fleet.info(job).state is JobState.RUNNING)
    iid = job.info.children[0].instance_id
    eventually(lambda: flower.tasks().get(iid, {}).get("state") == "STARTED", timeout=15)
    # when its host vanishes (the worker killed outright) and the sweep fails the job
    os.killpg(workers.procs[2].pid, signal.SIGKILL)
    eventually(lambda: fleet.get(job.id)[0].info.state is JobState.FAILED, timeout=30, every=0.5)
    # then Flower shows the end too, on that host's worker, with the Reason
    task = eventually(
        lambda: (t := flower.tasks().get(iid, {})).get("state") == "FAILURE" and t, timeout=15
    )
    assert isinstance(task, dict)
    assert task["worker"] == "fleetjobs@fl3"
    assert "stopped answering" in task["exception"]


def test_a_job_stopped_while_its_host_is_down_is_revoked_in_flower(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    _, fleet, _, flower = flower_fleet
    # given a job queued for a host whose worker is down: Flower shows it PENDING
    down = uniq("down")
    job = fleet.start("echo", "x", name=uniq("Held"), locations=[down])
    iid = job.info.children[0].instance_id
    eventually(lambda: flower.tasks().get(iid, {}).get("state") == "PENDING", timeout=15)
    # when it is stopped, then Flower shows REVOKED, on that host's worker (it stayed
    # PENDING for as long as the host was down)
    fleet.stop(job)
    task = eventually(
        lambda: (t := flower.tasks().get(iid, {})).get("state") == "REVOKED" and t, timeout=15
    )
    assert isinstance(task, dict) and task["worker"] == f"fleetjobs@{down}"


def test_a_start_timeout_is_a_failure_in_flower(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    _, fleet, _, flower = flower_fleet
    # given a job for a location no worker serves, with a start timeout
    nowhere = uniq("nowhere")
    job = fleet.start("echo", "x", name=uniq("Late"), locations=[nowhere], start_timeout=1)
    iid = job.info.children[0].instance_id
    eventually(lambda: flower.tasks().get(iid, {}).get("state") == "PENDING", timeout=15)
    # when the sweep fails it (no worker started it in time)
    eventually(lambda: fleet.info(job).state is JobState.FAILED, timeout=30, every=0.5)
    # then Flower shows the failure too, with the Reason, not PENDING for ever
    task = eventually(
        lambda: (t := flower.tasks().get(iid, {})).get("state") == "FAILURE" and t, timeout=15
    )
    assert isinstance(task, dict)
    assert "started the job within 1 s" in task["exception"]
    fleet.remove(job)


def test_a_restarted_worker_is_the_same_worker_in_flower(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc], tmp_path: Path
) -> None:
    cfg, fleet, workers, flower = flower_fleet
    eventually(lambda: "fleetjobs@fl1" in flower.get("/api/workers?refresh=1"), timeout=15)
    # when fl1's worker stops (warm shutdown) and a new one starts for the same location
    os.killpg(workers.procs[0].pid, signal.SIGTERM)
    workers.procs[0].wait(30)
    (tmp_path / "again").mkdir()
    with LocalWorkers(cfg, [["fl1"]], extra_args=INCLUDE, log_dir=tmp_path / "again"):
        job = fleet.start("echo", "back", name=uniq("Back"), locations=["fl1"])
        assert fleet.wait([job], timeout=20)
        iid = job.info.children[0].instance_id
        eventually(lambda: flower.tasks().get(iid, {}).get("state") == "SUCCESS", timeout=15)
        # then Flower knows one worker for fl1, and the new job ran on it
        names = [w for w in flower.get("/api/workers?refresh=1") if "fl1" in w]
        assert names == ["fleetjobs@fl1"]
        assert flower.tasks()[iid]["worker"] == "fleetjobs@fl1"


def test_junk_on_the_event_channels_does_not_blind_flower(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc], tmp_path: Path
) -> None:
    cfg, fleet, _, flower = flower_fleet
    # given junk published without pause on the task event channels (any worker's
    # credential may publish there, a confined one's too): not events, not even envelopes
    db = int(cfg.redis_url.rsplit("/", 1)[-1] or 0)
    channel = f"{cfg.prefix}/{db}.celeryev/task.failed"
    junk = [b"{}", b'"x"', b'{"properties": 1}', b"[" * 5000, b"\xff"]
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.05):
            for payload in junk:
                fleet.store.r.publish(channel, payload)

    sender = threading.Thread(target=publish, daemon=True)
    sender.start()
    try:
        time.sleep(0.5)
        # when jobs run meanwhile
        jobs = [fleet.start("echo", i, name=uniq("Junk"), locations=["fl1"]) for i in range(5)]
        assert fleet.wait(jobs, timeout=30)
        # then Flower saw each of them end (its capture of events ended at each junk
        # message, and the events sent while it started again were lost)
        iids = [j.info.children[0].instance_id for j in jobs]
        seen = lambda: [flower.tasks().get(i, {}).get("state") for i in iids]  # noqa: E731
        eventually(lambda: seen() == ["SUCCESS"] * 5, timeout=15)
    finally:
        stop.set()
        sender.join()
    log = (tmp_path / "flower.log").read_text()
    assert "Failed to capture events" not in log, log[-2000:]


REFUSED_CAPTURE = """
import os, sys, threading
import fleetjobs.flower_app as flower_app  # as Flower loads it: its guard installed
seen, raised = [], []
def capture():
    try:
        with flower_app.app.connection() as conn:
            handlers = {"*": lambda e: seen.append(e)}
            receiver = flower_app.app.events.Receiver(conn, handlers=handlers)
            receiver.capture(limit=None, wakeup=False)  # the refusal comes as a reply read
    except Exception as exc:
        raised.append(type(exc).__name__)
t = threading.Thread(target=capture, daemon=True)
t.start()
t.join(10)
print(raised[0] if raised else "still capturing")
"""


def test_a_refused_subscription_still_ends_flowers_capture(redis_url: str, tmp_path: Path) -> None:
    # given a Redis user that may not subscribe to the event channels (an ACL changed under a
    # running Flower): a real error, not a message to drop
    import redis

    admin = redis.Redis.from_url(redis_url)
    user = uniq("nosub")
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "resetchannels")
    try:
        url = redis_url.replace("redis://", f"redis://{user}:pw@", 1)
        env = {**os.environ, "FLEETJOBS_REDIS_URL": url, "FLEETJOBS_PREFIX": uniq("ns") + ":"}
        done = subprocess.run(
            [sys.executable, "-c", REFUSED_CAPTURE],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        # then the capture ends with it, for Flower to connect again (the guard that drops
        # junk messages let it block for ever, blind)
        assert done.stdout.strip() == "NoPermissionError", done.stdout + done.stderr[-2000:]
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_every_event_of_a_job_carries_its_display_name(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc],
) -> None:
    cfg, fleet, _, _ = flower_fleet
    app = make_celery(cfg)
    seen: list[dict[str, Any]] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": seen.append})
        thread = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        thread.start()
        time.sleep(1)  # the receiver's queue is bound: it hears what comes next
        # when a job runs on two hosts
        name = uniq("Named")
        job = fleet.start("echo", "hi", name=name, locations=["fl1", "fl2"])
        fleet.wait([job], timeout=20)
        locs = {c.instance_id: c.location for c in job.info.children}
        eventually(
            lambda: (
                sum(1 for e in seen if e.get("uuid") in locs and e["type"] == "task-succeeded") == 2
            ),
            timeout=15,
        )
        receiver.should_stop = True
        thread.join(10)
    # then every event that names the task (task-sent from the console included) says Name@host
    ours = [e for e in seen if e.get("uuid") in locs]
    named = [(e["type"], e["name"]) for e in ours if e.get("name")]
    assert {t for t, _ in named} >= {"task-sent", "task-received"}
    assert all(n == f"{name}@{locs[e['uuid']]}" for e in ours if (n := e.get("name"))), named


def test_flower_refuses_to_start_without_credentials(redis_url: str) -> None:
    cfg = Config(redis_url=redis_url, prefix=f"{uniq('fl')}:")
    run = make_cli(cfg)
    env = {"FLEETJOBS_FLOWER_AUTH": ""}
    out = run("flower", "--port", str(free_port()), env=env)
    assert out.returncode == 2
    assert "FLEETJOBS_FLOWER_AUTH" in out.stderr
    out = run("flower", "--no-auth", "--address", "0.0.0.0", env=env)
    assert out.returncode == 2
    assert "loopback" in out.stderr
    out = run("flower", env={"FLEETJOBS_FLOWER_AUTH": "nopassword"})
    assert out.returncode == 2
    assert "nopassword" not in out.stderr
    # a port taken, an address that is none: one line, exit 2 (each ended in a traceback)
    auth = {"FLEETJOBS_FLOWER_AUTH": "ops:pw123456789"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("flower", "--port", str(port), env=auth)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"Flower cannot listen on 127.0.0.1 port {port}: Address already in use" in out.stderr
    out = run("flower", "--address", "not an address", env=auth)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--address 'not an address' is no address of this machine" in out.stderr
    # and --no-auth on loopback starts an open Flower (for a laptop)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetjobs", "flower", "--no-auth", "--port", str(port)],
        env={**os.environ, "FLEETJOBS_REDIS_URL": cfg.redis_url, "FLEETJOBS_PREFIX": cfg.prefix},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    try:

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5):
                    return True
            except OSError:
                return False

        eventually(answers, timeout=30, every=0.3)
    finally:
        with_suppress_kill(proc)


# ---- the browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)
def test_flower_tasks_page_in_a_browser(
    flower_fleet: tuple[Config, Fleet, LocalWorkers, FlowerProc], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    _, fleet, _, flower = flower_fleet
    # given a fan-out that ended with a failure and a stop, and Flower has seen it all
    name, children = fan_out(fleet)
    eventually(
        lambda: all(
            flower.tasks().get(iid, {}).get("state") == FLOWER_STATE[c.state.value]
            for iid, c in children.items()
        ),
        timeout=20,
        every=0.5,
    )
    # when a person opens Flower's tasks page in a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        token = base64.b64encode(AUTH.encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        driver.get(flower.url + "/tasks")

        def rows() -> list[str]:
            return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr")]

        def ours() -> list[str]:
            return [r for r in rows() if name in r]

        found = eventually(lambda: len(ours()) == len(HOSTS) and ours(), timeout=30, every=0.5)
        shot = tmp_path / "flower-tasks.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
    # then it shows each child by Name@location, and the failed one as FAILURE
    assert isinstance(found, list)
    text = "\n".join(found)
    for child in children.values():
        assert f"{name}@{child.location}" in text
    assert any(f"{name}@fl2" in r and "FAILURE" in r for r in found)
    assert any(f"{name}@fl3" in r and "REVOKED" in r for r in found)
    assert any(f"{name}@fl1" in r and "SUCCESS" in r for r in found)
    assert shot.stat().st_size > 10_000
