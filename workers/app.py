"""The Celery app a worker runs: one task, the job runtime, and the signals that keep the
registry true when a job ends without the runtime's knowing (a pool process killed, a message
revoked or expired before it ran).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals

from fleetjobs.celery_app import make_celery
from fleetjobs.config import Config
from fleetjobs.errors import FleetJobsError
from fleetjobs.routing import TASK_NAME, location_of
from fleetjobs.states import JobState

from . import leases, poison, reaper, revokes
from .enforcer import Enforcer
from .facts import FactsReporter
from .heartbeat import Heartbeat
from .outcome import STOPPED_FROM_CELERY, JobEnded, JobFailed, celery_terminate_stops, end_task
from .process import Layers, PerProcess
from .provenance import Journal, default_state_dir, max_message_age
from .redeliver import Redelivery
from .runtime import Runtime

log = logging.getLogger("fleetjobs.worker")
COLD_SHUTDOWN = "its worker was shut down cold (SIGQUIT) while the job ran"


@dataclass
class WorkerSettings:
    """What a worker's operator chose."""

    locations: list[str]
    concurrency: int = 4
    allow_shell: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    )


def create_app(config: Config, settings: WorkerSettings) -> Celery:
    """The worker's Celery app, with the job task and the registry-keeping signals."""
    app = make_celery(config, main="fleetjobs.worker")
    per_process = PerProcess(config, app)
    journal = None
    if config.signed:  # a machine-local record of what ran: a signed message runs once, ever
        journal = Journal(default_state_dir(), keep=2 * max_message_age(config.retention))
        journal.check()
    runtime = Runtime(
        per_process, settings.worker_id, settings.allow_shell, settings.locations, journal
    )

    @app.task(name=TASK_NAME, bind=True, throws=(JobFailed,))
    def job(self: Any, job_id: int, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        # only what is addressed to this worker runs: the claim checks the queue the message
        # came through and its task id against the job (a forged or stray message is refused)
        via = location_of(str((self.request.delivery_info or {}).get("routing_key") or ""))
        # the task ends as the registry did (Flower shows FAILURE / REVOKED, see outcome.py)
        with celery_terminate_stops(per_process, int(job_id)):
            outcome = runtime.execute(int(job_id), via, str(self.request.id or ""), spec)
        return end_task(self, per_process, int(job_id), outcome)

    heartbeat: dict[str, Heartbeat] = {}
    reporters: dict[str, FactsReporter] = {}
    enforcers: list[Enforcer] = []

    @signals.worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        info = {
            "locations": settings.locations,
            "tags": settings.tags,
            "concurrency": settings.concurrency,
            "actions": runtime.offered(),
            "suspendable": runtime.suspendable(),
            "signatures": runtime.signatures(),
            "allow_shell": settings.allow_shell,
            "signed": config.signed,  # consoles that cannot sign refuse to start jobs here
        }
        layers = Layers(config, app)
        hb = Heartbeat(
            layers,
            settings.worker_id,
            settings.locations,
            info,
            chores=[
                functools.partial(reaper.reap, locations=settings.locations),
                Redelivery(layers.dispatcher, settings.locations),
            ],
        )
        hb.beat(take_turn=False)  # online now; the thread's first beat sweeps
        hb.start()
        heartbeat["hb"] = hb
        facts = FactsReporter(hb.hosts.store, settings.locations, settings.tags)
        facts.start()
        reporters["facts"] = facts
        enforcer = Enforcer(Layers(config, app), config.stop_grace)
        enforcer.start()
        enforcers.append(enforcer)
        log.info("fleetjobs worker %s serves %s", settings.worker_id, ", ".join(settings.locations))

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(sender: Any = None, how: str = "", **_: Any) -> None:
        if how == "Cold":  # (its jobs were stopped as Celery cancelled them: _harden)
            return
        # a job suspended or asking (now, or once the shutdown began) would hold a warm
        # shutdown for ever: end each as it is found, until the pool runs nothing
        for enforcer in enforcers:
            threading.Thread(
                target=enforcer.release_held_until_idle, name="fleetjobs-held", daemon=True
            ).start()

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(sender: Any = None, **_: Any) -> None:
        facts = reporters.pop("facts", None)
        if facts is not None:
            facts.close()
        for enforcer in enforcers:
            enforcer.close()
        hb = heartbeat.pop("hb", None)
        if hb is not None:
            hb.close()

    def _settle(request_args: Any, state: JobState, reason: str, task_id: Any = None) -> None:
        try:
            job_id = int(request_args[0])
            iid = task_id if isinstance(task_id, str) and task_id else None  # the child's iid
            _, due = per_process().lifecycle.finish(job_id, state, reason, iid=iid)
            per_process.release(due)
        except (FleetJobsError, IndexError, TypeError, ValueError) as exc:
            log.warning("could not record the end of a job: %s", exc)

    def _unrun(request: Any, state: JobState, why: str) -> None:
        # a delivery Celery discarded (expired, or revoked before it started) ends its child
        # only if the child has not started: a stale copy of one that runs elsewhere (its
        # worker frozen while another took it, or delivered again) changes nothing
        info = getattr(request, "delivery_info", None) or {}
        location = location_of(str(info.get("routing_key") or ""))
        if not isinstance(request.id, str) or not location:
            log.warning("a discarded message came from no location's queue: %s", request.id)
            return
        try:
            layers = per_process()
            if layers.store.relay is not None:
                # confined: its relay finishes its own location's jobs, asked to only for one
                # that has not started
                job_id = int(request.args[0])
                if layers.registry.states([job_id]) != [JobState.NOT_STARTED.value]:
                    return
                after, due = layers.lifecycle.finish(job_id, state, why, iid=request.id)
            elif state is JobState.FAILED:  # (one moved onto another host's queue: not its)
                after, due = layers.lifecycle.fail_queued(request.id, location, why)
            else:
                after, due = layers.lifecycle.stop_queued(request.id, why)
            per_process.release(due)
        except (FleetJobsError, IndexError, TypeError, ValueError) as exc:
            log.warning("could not record the end of a job: %s", exc)
            return
        if after != state.value:
            log.info("a discarded copy of %s left its job as it is (%s)", request.id, after)

    def _stop_from_celery(request_args: Any) -> None:
        # a terminate (Flower's button, `celery control revoke --terminate`) is a stop: the
        # pool process turns the signal into the same stop (outcome.celery_terminate_stops)
        try:
            per_process().lifecycle.stop(int(request_args[0]), STOPPED_FROM_CELERY)
        except (FleetJobsError, IndexError, TypeError, ValueError) as exc:
            log.warning("could not record the stop from Celery: %s", exc)

    @signals.task_revoked.connect(weak=False)
    def _revoked(
        sender: Any = None,
        request: Any = None,
        terminated: bool = False,
        signum: Any = None,
        expired: bool = False,
        **_: Any,
    ) -> None:
        if request is None or getattr(request, "name", TASK_NAME) != TASK_NAME:
            return
        if terminated:
            _stop_from_celery(request.args)
        elif expired:  # a child that waited past its start timeout fails
            _unrun(request, JobState.FAILED, "no worker started the job before it expired")
        else:
            # fleetjobs' own stop settles a queued child before it revokes the message: one
            # still unsettled here was revoked from Celery (Flower's Revoke button)
            _unrun(request, JobState.STOPPED, f"{STOPPED_FROM_CELERY} before it started")

    revokes.install(per_process)

    @signals.task_failure.connect(weak=False)
    def _failure(
        sender: Any = None,
        task_id: str | None = None,
        exception: Any = None,
        args: Any = None,
        **_: Any,
    ) -> None:
        # the runtime catches every failure of an action; what arrives here is the machinery's:
        # the pool process died (WorkerLostError), or a time limit killed it
        if getattr(sender, "name", None) != TASK_NAME or args is None:
            return
        if isinstance(exception, JobEnded):
            return  # the job's own end, raised after the registry was settled
        if type(exception).__name__ == "WorkerLostError":
            # Celery's text ends with its pool's own index ("Job: 6."), no fleetjobs Id
            why = re.sub(r"\s*Job: \d+\.?\s*$", "", str(exception))
            reason = f"the worker process running the job died: {why}"
        else:
            reason = f"the worker could not run the job: {type(exception).__name__}: {exception}"
        _settle(args, JobState.FAILED, reason, task_id)

    _harden(app, config, settings, enforcers)
    return app


def _harden(
    app: Celery, config: Config, settings: WorkerSettings, enforcers: list[Enforcer]
) -> None:
    """What keeps a worker serving and no job stranded or orphaned: poison messages are
    dead-lettered (:mod:`.poison`), reserved messages are leased (:mod:`.leases`), and a dead
    job's processes are reaped at each heartbeat (:mod:`.reaper`, wired in ``_ready``). A
    cold shutdown (SIGQUIT) stops the jobs it cancels saying so."""
    box = poison.DeadLetterBox(config, settings.worker_id)
    poison.guard_envelopes(box)
    guarded: Any = poison.consumer_class(box)

    class Consumer(guarded):  # type: ignore[misc]
        def cancel_active_requests(self) -> Any:
            # a cold shutdown cancels the running tasks (the pool terminates them, which is
            # a stop "from Celery"): stopped first with the reason that is true
            for enforcer in enforcers:
                enforcer.stop_running(COLD_SHUTDOWN)
            return super().cancel_active_requests()

    app.conf.worker_consumer = Consumer
    app.steps["consumer"].add(leases.lease_step(config))
