"""The ``fleetjobs`` command group: its shared options, error handling and exit codes.

The verbs register themselves on :data:`cli` from their own modules (:mod:`.verbs`,
:mod:`.launch`); :mod:`fleetjobs.cli` imports them all.

Exit codes: 0 success; 1 a job failed or a verb could not be applied (unknown job, remove of
a running job); 2 bad input (usage, unknown action, bad JSON, a host that refuses ``run``);
3 ``wait`` timed out; 4 Redis cannot be reached; 130 interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from ..config import Config
from ..errors import (
    ArgumentError,
    ConfigError,
    CredentialsRefusedError,
    FleetJobsError,
    JobNotFoundError,
    JobStateError,
    RedisUnavailableError,
    StartError,
)
from ..options import MAX_SECONDS
from ..states import JobState
from .interrupts import Terminated
from .lazy import LazyGroup

if TYPE_CHECKING:
    from ..fleet import Fleet

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 1, 2, 3, 4
EXIT_PIPE = 128 + 13  # 141: the reader of stdout went away, as for a tool SIGPIPE ended
WRITE_FAILED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
F = TypeVar("F", bound=Callable[..., Any])
EXIT_CODES = (
    "Exit codes: 0 success, 1 a job failed or a verb could not be applied, 2 bad input, 3 wait "
    "timed out, 4 Redis unreachable, 130 interrupted (Ctrl-C; 143 SIGTERM, 129 SIGHUP), 141 "
    "the reader of the output went away (| head)."
)
# the verbs that take JOBs; EXIT_CODES alone for the others
EPILOG = "A JOB is an Id, a Name (globs allowed) or an InstanceId. " + EXIT_CODES


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"fleetjobs: error: {message}", err=True)
    sys.exit(code)


class _Group(LazyGroup):
    """Turns every fleetjobs error into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CredentialsRefusedError as exc:  # the URL's password: bad input, not away
            fail(str(exc), EXIT_USAGE)
        except RedisUnavailableError as exc:
            unset = ctx.get_parameter_source("redis_url") is ParameterSource.DEFAULT
            also = " (no URL was given: set FLEETJOBS_REDIS_URL or --redis-url)" if unset else ""
            fail(f"{exc}{also}", EXIT_UNREACHABLE)
        except (StartError, ConfigError) as exc:
            fail(str(exc), EXIT_USAGE)
        except (JobNotFoundError, JobStateError, FleetJobsError) as exc:
            fail(str(exc), EXIT_FAILED)
        except Terminated as exc:  # SIGTERM, SIGHUP: cleaned up as a Ctrl-C is (interrupts)
            click.echo(f"fleetjobs: terminated ({signal.Signals(exc.signum).name})", err=True)
            sys.exit(128 + exc.signum)
        except KeyboardInterrupt:
            click.echo("fleetjobs: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # the reader went away (| head): as a Unix tool killed by SIGPIPE ends, for every
            # verb alike (click exited 1, silently, as for a failure); what is left unwritten
            # goes nowhere instead of raising again at exit
            to_devnull(sys.stdout)
            sys.exit(EXIT_PIPE)
        except OSError as exc:
            if exc.errno not in WRITE_FAILED:
                raise
            # a full disk, a quota, an I/O error under a redirected output: one line and a
            # failure, not an internal error (the console writes no other file)
            to_devnull(sys.stdout)
            fail(unwritten(exc), EXIT_FAILED)


class State:
    """What the group's options give every verb: the settings, and a Fleet made on demand."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        return self.connect()

    def connect(self, patient: bool = False, until: float | None = None) -> Fleet:
        """The fleet, its Redis answering; ``patient`` (a verb that waits): a Redis away
        for a few seconds is ridden out, as the wait itself rides it out, no later than
        ``until`` (``time.monotonic()``, the verb's own timeout) when given."""
        if self._fleet is None:
            from ..events import ride_out
            from ..fleet import Fleet  # imported by the verbs that use it (start-up time)

            fleet = Fleet(config=self.config)
            ride_out(fleet.store.ping, until) if patient else fleet.store.ping()
            self._fleet = fleet
        return self._fleet


pass_state = click.make_pass_decorator(State)


def url_off_the_command_line(state: State) -> None:
    """A command that was given ``--redis-url`` starts again with the URL in its environment
    instead: ``ps`` shows a command line, and the URL holds the password. Every command does
    when the URL holds a secret (the root group); one that runs for long (beat, relay) does
    for any URL. Returns only when the URL is not on this process's command line (then the
    process is this one); ``-P``: the folder it was started from is not put on the path."""
    root = click.get_current_context().find_root()
    if root.get_parameter_source("redis_url") is not ParameterSource.COMMANDLINE:
        return
    url = root.params.get("redis_url")
    words, kept, found = sys.argv[1:], [], False
    i = 0
    while i < len(words):
        if not found and words[i] == "--redis-url" and words[i + 1 : i + 2] == [url]:
            found, i = True, i + 2
            continue
        if not found and words[i] == f"--redis-url={url}":
            found, i = True, i + 1
            continue
        kept.append(words[i])
        i += 1
    if not found:  # run() called in another program: its command line is not ours to redo
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-P", "-m", "fleetjobs", *kept]
    os.execve(sys.executable, argv, fleet_env(state.config))


def fleet_env(config: Config) -> dict[str, str]:
    """This process's environment with the fleet's URL and prefix, for the process a verb
    starts again or hands over to (worker, flower, beat, relay): in the environment, never
    in argv, where ``ps`` shows the password to every user of the host."""
    return {
        **os.environ,
        "FLEETJOBS_REDIS_URL": config.redis_url,
        "FLEETJOBS_PREFIX": config.prefix,
    }


def loglevel_option(default: str) -> Callable[[F], F]:
    """``--loglevel`` of a command that runs in the foreground (worker, beat, relay)."""
    return click.option(
        "--loglevel",
        default=default,
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    )


class Seconds(click.FloatRange):
    """A number of seconds an option takes: finite (``nan`` and ``inf`` parse as floats),
    above 0 (or 0 too, with ``zero``), at most :data:`fleetjobs.options.MAX_SECONDS`."""

    name = "seconds"

    def __init__(self, zero: bool = False) -> None:
        super().__init__(min=0, max=MAX_SECONDS, min_open=not zero)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON only (objects with stable keys)."
    )(fn)


def parse_value(text: str) -> Any:
    """A command-line argument as JSON when it parses (``5``, ``true``, ``[1,2]``), else text:
    how a start reads a parameter of any type (:func:`fleetjobs.signatures.convert`), where
    the host's signatures are not known."""
    from ..signatures import convert  # the verbs that parse arguments import it, --help not

    try:
        return convert(text, "any", "argument")
    except ArgumentError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_kw(items: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--kw")
        out[key] = parse_value(value)
    return out


def state_type(text: str | None) -> JobState | None:
    if text is None:
        return None
    try:
        return JobState.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--state") from None


@click.group(
    cls=_Group, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--redis-url",
    envvar="FLEETJOBS_REDIS_URL",
    metavar="URL",
    help="Where the fleet lives [env FLEETJOBS_REDIS_URL; default "
    "redis://127.0.0.1:6379/0]. Credentials and TLS go in the URL "
    "(rediss://user:pass@host:6380/0): put such a URL in FLEETJOBS_REDIS_URL, since a "
    "command given one here starts again with it in its environment, off the command line "
    "that ps shows.",
)
@click.option(
    "--prefix",
    envvar="FLEETJOBS_PREFIX",
    metavar="PREFIX",
    help="Key prefix, so fleets can share one Redis [env FLEETJOBS_PREFIX; default fj:].",
)
@click.version_option(package_name="fleetjobs")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, prefix: str | None) -> None:
    """Background jobs for a fleet: start a job on many hosts, get the console back, then
    list, wait for, receive from, stop and remove it from any console."""
    if ctx.invoked_subcommand == "demo":  # a fleet of its own: this shell's are not its settings
        ctx.obj = State(Config())
        return
    try:
        config = Config.from_env(redis_url=redis_url, prefix=prefix)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    ctx.obj = State(config)
    if config.safe_url != config.redis_url:  # a password: ps would show it for as long as
        url_off_the_command_line(ctx.obj)  # the command runs (a wait, an invoke: hours)
    ctx.call_on_close(lambda: ctx.obj._fleet and ctx.obj._fleet.close())


def run(argv: list[str] | None = None) -> int:
    """Run the command; every error is one line on stderr. Returns the exit code."""
    try:
        cli.main(args=argv, prog_name="fleetjobs", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("fleetjobs: interrupted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:  # `fleetjobs`, `fleetjobs schedule`
        click.echo(exc.format_message())  # what it offers is asked for: no error
        return 0
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see: {exc.ctx.command_path} --help)"
        click.echo(f"fleetjobs: error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except Exception as exc:  # a bug of ours: one line, the traceback on request
        if os.environ.get("FLEETJOBS_DEBUG"):
            raise
        click.echo(
            f"fleetjobs: internal error: {type(exc).__name__}: {exc} "
            "(FLEETJOBS_DEBUG=1 shows the traceback)",
            err=True,
        )
        return EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """The program (``fleetjobs``, ``python -m fleetjobs``): runs the command and ends the
    process with its exit code; :func:`run` is the in-process form.

    With no thread left, the end skips the interpreter's teardown of its ~350 modules: every
    atexit handler runs (logging's flush, temporary folders' removal), stdout and stderr are
    flushed, and what is left is freeing memory that the kernel frees at once. That teardown
    was some 40 ms of a read verb's 200 (bench/cli_startup.py)."""
    code = run(argv)
    try:
        code = _flushed(code)
        if threading.active_count() > 1:  # a thread still going: the usual end waits for it
            sys.exit(code)
        atexit._run_exitfuncs()
        code = _flushed(code)  # and what the handlers wrote
    except KeyboardInterrupt:
        code = 130
    os._exit(code)


def _flushed(code: int) -> int:
    """Flush stdout and stderr (the last lines of a table or a receive may still be in their
    buffers); returns the exit code, or what a failed write of the output makes it: 141 for a
    reader gone (| head), as for SIGPIPE; a full disk or an I/O error said in one line, and 1
    in place of a success."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (>&-): nothing to flush
            continue
        try:
            stream.flush()
        except ValueError:  # closed already: nothing left to write
            continue
        except OSError as exc:
            to_devnull(stream)  # what is left unwritten goes nowhere, not again at the end
            if stream is not sys.stdout:
                continue
            if isinstance(exc, BrokenPipeError):
                code = EXIT_PIPE
            else:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    click.echo(f"fleetjobs: error: {unwritten(exc)}", err=True)
                code = code or EXIT_FAILED
    return code


def unwritten(exc: OSError) -> str:
    """What fleetjobs says when its output could not be written (in the verb or at its end)."""
    return f"the output could not be written: {exc.strerror or exc}"


def to_devnull(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null: what its buffer still holds is dropped
    quietly, not written (and failed) again when the process ends."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
