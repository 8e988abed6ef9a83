"""Progress a person can see while a verb blocks: ``wait``, ``invoke`` and ``receive --wait``.

On a terminal (stdout and stderr both), a live rich display on stderr: children done out of
all, how many are in each state, the time since the verb began, and the hosts still running;
``receive --wait`` turns ``ctx.progress`` records into one bar per host. Lines the verb prints
meanwhile go through :meth:`Watch.echo`, above the display. When stdout is not a terminal,
a plain line on stderr now and then instead (only for a wait that takes a while); with
``--json`` nothing at all: the display is never part of what a program reads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ..fleet import Fleet
from ..job import Job
from ..model import JobInfo, Record
from ..states import JobState
from .format import printable

if TYPE_CHECKING:  # rich is imported where a terminal shows it: a piped verb does without
    from rich.console import RenderableType
    from rich.live import Live
    from rich.progress import Progress, TaskID

PLAIN_EVERY = 5.0  # seconds between plain lines when stdout is not a terminal
PLAIN_AFTER = 2.0  # a wait shorter than this prints no plain line at all
REFRESH = 0.5  # seconds between reads of the registry for the display
SHOWN_HOSTS = 8


def mode(as_json: bool) -> str:
    """``live`` on a terminal, ``plain`` when piped, ``off`` with --json."""
    if as_json:
        return "off"
    if sys.stdout.isatty() and sys.stderr.isatty():
        return "live"
    return "plain"


# the states a child is in while a host works on it
_ON_A_HOST = frozenset({JobState.RUNNING, JobState.STOPPING, JobState.SUSPENDING})


class Snapshot:
    """What the display shows: the children's states, read in one go."""

    def __init__(self, infos: Sequence[JobInfo], began: float) -> None:
        children = [c for i in infos for c in (i.children or [i])]
        self.total = len(children)
        self.counts = Counter(c.state.value for c in children)
        self.done = sum(1 for c in children if c.state.finished)
        busy = {c.location for c in children if c.state in _ON_A_HOST}
        self.running = sorted(busy)
        # not started yet (a throttle, a host that is down), or held (Suspended, Blocked...)
        self.waiting = sorted({c.location for c in children if not c.state.finished} - busy)
        self.elapsed = time.monotonic() - began

    def counts_text(self) -> str:
        order = [s.value for s in JobState]
        return "  ".join(f"{s} {self.counts[s]}" for s in order if self.counts.get(s))

    def hosts_text(self) -> str:
        """``running on a, b; waiting on c`` (each list cut to SHOWN_HOSTS), or ''."""
        parts = []
        for what, hosts in (("running on", self.running), ("waiting on", self.waiting)):
            if hosts:
                more = len(hosts) - SHOWN_HOSTS
                tail = f" (+{more} more)" if more > 0 else ""
                parts.append(f"{what} {', '.join(hosts[:SHOWN_HOSTS])}{tail}")
        return "; ".join(parts)

    def line(self, verb: str) -> str:
        text = (
            f"{verb}: {self.done}/{self.total} done ({self.counts_text()}), {_clock(self.elapsed)}"
        )
        hosts = self.hosts_text()
        return text + (f"; {hosts}" if hosts else "")


class Watch:
    """The display for one blocking verb; a context manager (see :func:`watch`)."""

    def __init__(self, fleet: Fleet, handles: Sequence[Job], verb: str, how: str) -> None:
        self._fleet = fleet
        self._ids = [h.id for h in handles]
        self._verb = verb
        self.mode = how
        self._began = time.monotonic()
        self._last: Snapshot | None = None
        self._read_at = 0.0
        self._cost = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> Snapshot | None:
        now = time.monotonic()
        with self._lock:
            # a read costs more with many jobs: it may take a tenth of the time, no more
            if self._last is None or now - self._read_at >= max(REFRESH, 10 * self._cost):
                try:
                    infos = self._fleet.registry.load(self._ids)
                except Exception:  # a display never breaks the verb it shows
                    return self._last
                self._last = Snapshot(infos, self._began)
                self._read_at = time.monotonic()
                self._cost = self._read_at - now
            return self._last

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snap = self._snapshot()
        if snap is None:
            return Text(f"{self._verb}: …")
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(f"{self._verb}", style="bold"),
            ProgressBar(total=max(snap.total, 1), completed=snap.done, width=30),
            Text(f"{snap.done}/{snap.total} done"),
            Text(_clock(time.monotonic() - self._began), style="dim"),
        )
        parts: list[RenderableType] = [head, Text(snap.counts_text())]
        hosts = snap.hosts_text()
        if hosts:
            parts.append(Text(hosts, style="dim"))
        return Group(*parts)

    def start(self) -> None:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                get_renderable=self.render,
                console=Console(stderr=True, highlight=False),
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        elif self.mode == "plain":
            self._thread = threading.Thread(target=self._plain, daemon=True)
            self._thread.start()

    def _plain(self) -> None:
        if self._stop.wait(PLAIN_AFTER):
            return
        last = ""
        while True:
            snap = self._snapshot()
            if snap is not None:
                line = snap.line(self._verb)
                if line != last:
                    click.echo(line, err=True)
                    last = line
            if self._stop.wait(PLAIN_EVERY):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._thread is not None:
            self._thread.join(timeout=2)

    def echo(self, text: str, err: bool = False) -> None:
        """Print a line of the verb's own output; when live, above the display (stdout and
        stderr are then the same terminal, so the line goes through the display's console)."""
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(text), soft_wrap=True, highlight=False)
        else:
            click.echo(text, err=err)
            if not err:
                sys.stdout.flush()


@contextmanager
def watch(fleet: Fleet, handles: Sequence[Job], verb: str, as_json: bool) -> Iterator[Watch]:
    """Show the jobs' progress while the block runs (live, plain or nothing)."""
    w = Watch(fleet, handles, verb, mode(as_json))
    w.start()
    try:
        yield w
    finally:
        w.stop()


class Bars:
    """``receive --wait`` on a terminal: each host's ``ctx.progress`` as a bar that fills."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._progress: Progress | None = None
        self._tasks: dict[tuple[int, str], TaskID] = {}

    def __enter__(self) -> Bars:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True, highlight=False),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def take(self, rec: Record) -> bool:
        """Show a progress record as a bar; False if it is not one (print it as usual)."""
        if self._progress is None or rec.stream != "progress" or not isinstance(rec.data, dict):
            return False
        key = (rec.job, rec.location)
        percent = _number(rec.data.get("percent"))
        status = printable(str(rec.data.get("status", "")))
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(
                printable(f"{rec.location} (job {rec.job})"), total=100, status=status
            )
        self._progress.update(self._tasks[key], completed=percent, status=status)
        return True

    def echo(self, text: str, err: bool = False) -> None:
        if self._progress is not None:
            from rich.text import Text

            self._progress.console.print(Text(text), soft_wrap=True)
        else:
            click.echo(text, err=err)


def _number(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
