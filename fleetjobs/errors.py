"""Errors: one root, :class:`FleetJobsError`, with a subtree per subsystem.

::

    FleetJobsError
    ├── ConfigError (ValueError)             a setting or URL that cannot work
    ├── RegistryError                        the registry could not be read or written
    │   ├── RedisUnavailableError (ConnectionError)   Redis cannot be reached
    │   └── PermissionDeniedError (PermissionError)   Redis's ACL refused this user a command
    ├── JobError
    │   ├── JobNotFoundError (LookupError)   no job has that Id, Name or InstanceId
    │   └── JobStateError                    the verb does not fit the job's state
    │       ├── JobBlockedError              a wait on a job that can only go on with an answer
    │       └── NotRemovedError              a remove left unfinished jobs (the rest went)
    ├── StartError (ValueError)              a start refused before anything was queued
    │   ├── ArgumentError                    an argument JSON cannot carry
    │   ├── UnknownActionError (LookupError) no live host offers that action
    │   ├── ShellNotAllowedError             ``run`` on a host whose operator did not allow it
    │   ├── NoHostError (LookupError)        a target selected no host
    │   └── NotSignedError                   signed-only hosts, a console that signs none
    ├── ScheduleError                        a schedule verb refused (schedules.py)
    │   ├── BadTriggerError (ValueError)     a cron, interval or --at time that cannot work
    │   ├── ScheduleExistsError              add of a name already taken
    │   ├── ScheduleNotFoundError (LookupError)  no schedule has that name
    │   ├── ScheduleBusyError                another console is firing it, for too long
    │   └── ScheduleUnreadableError          its stored definition cannot be read
    ├── ActionError                          raised by an action to fail its job with a message
    └── ParallelError                        items of a local parallel() run failed (parallel.py)

Errors from a job itself never travel as exceptions: a failed job's Reason is data in the
registry (its type and message), never an unpickled exception.
"""

from __future__ import annotations

from typing import Any


class FleetJobsError(Exception):
    """Root of every error fleetjobs raises on purpose."""


class ConfigError(FleetJobsError, ValueError):
    """A setting or URL that cannot work."""


class RegistryError(FleetJobsError):
    """The registry could not be read or written."""


class RedisUnavailableError(RegistryError, ConnectionError):
    """Redis cannot be reached; the message names the URL without its password."""


class CredentialsRefusedError(RedisUnavailableError):
    """Redis refused the URL's credentials (a wrong password, an unknown or disabled user):
    no retry makes it answer, so a waiting verb does not ride it out."""


class RedisFullError(RegistryError):
    """Redis is at its maxmemory and evicts nothing: it takes no write (reads still work)."""


class PermissionDeniedError(RegistryError, PermissionError):
    """Redis's ACL refused this user a command (a read-only console asked to write)."""


class JobError(FleetJobsError):
    """A verb could not be applied to a job."""


class JobNotFoundError(JobError, LookupError):
    """No job has that Id, Name or InstanceId."""


class JobStateError(JobError):
    """The verb does not fit the job's state (remove of a running job without force)."""


class JobBlockedError(JobStateError):
    """A wait on jobs that can only go on with an answer (PowerShell's deadlock error)."""


class NotRemovedError(JobStateError):
    """A remove without force left the unfinished jobs; the finished ones were removed.

    Attributes:
        removed: the jobs' snapshots that were removed.
        kept: the unfinished ones, left as they are.
    """

    def __init__(self, message: str, removed: list[Any], kept: list[Any]) -> None:
        super().__init__(message)
        self.removed = removed
        self.kept = kept


class StartError(FleetJobsError, ValueError):
    """A start was refused before anything was queued."""


class ArgumentError(StartError):
    """An argument JSON cannot carry, or a malformed one."""


class UnknownActionError(StartError, LookupError):
    """No live host offers that action."""


class ShellNotAllowedError(StartError):
    """``run`` was asked of a host whose operator did not start its worker with --allow-shell."""


class NoHostError(StartError, LookupError):
    """A location, glob or tag selected no host."""


class NotSignedError(StartError):
    """A job for hosts that run only signed jobs, from a console that signs none."""


class ScheduleError(FleetJobsError):
    """A schedule verb was refused; nothing was stored."""


class BadTriggerError(ScheduleError, ValueError):
    """A cron expression, interval, time or time zone that cannot work."""


class ScheduleExistsError(ScheduleError):
    """A schedule with that name exists already."""


class ScheduleNotFoundError(ScheduleError, LookupError):
    """No schedule has that name."""


class ScheduleBusyError(ScheduleError):
    """Another console held the schedule (firing it) for longer than this verb waits."""


class ScheduleUnreadableError(ScheduleError):
    """A schedule's stored definition cannot be read (written by hand, or damaged): it does
    not fire, and only ``remove`` acts on it."""


class ActionError(FleetJobsError):
    """Raised by an action to fail its job with a plain message as its Reason."""
