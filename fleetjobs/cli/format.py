"""How the CLI shows jobs, hosts and records: PowerShell's tables, or JSON with ``--json``."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.cells import cell_len, set_cell_size

from ..model import HostInfo, JobInfo, Record, local_time

JOB_COLUMNS = ("Id", "Name", "State", "HasMoreData", "Location", "Command")
PREFIXES = {
    "error": "ERROR",
    "warning": "WARNING",
    "verbose": "VERBOSE",
    "debug": "DEBUG",
    "information": "INFO",
    "progress": "PROGRESS",
    "question": "QUESTION",
}


def table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    out: TextIO | None = None,
    max_width: int | None = None,
    shrink: Sequence[str] = (),
) -> None:
    """Print rows under headers and dashes, as ``Format-Table`` does.

    On a terminal (or with ``max_width``) a row never wraps: the columns named in ``shrink``
    give way first, in that order, then the last column, each cut with an ellipsis. Piped,
    rows are printed whole, however long. Control characters print escaped (``\\x1b``).
    Widths are counted in terminal cells (rich's ``cell_len``: wide and combining characters).
    """
    out = out or sys.stdout
    if not rows:
        return
    cells = [[printable(_cell(v)) for v in row] for row in rows]
    widths = [max(len(h), *(cell_len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    limit = max_width or (_terminal_width(out) if _is_tty(out) else None)
    if limit is not None:
        order = [headers.index(h) for h in shrink if h in headers]
        order += [len(headers) - 1, *sorted(range(len(headers)), key=lambda i: -widths[i])]
        _fit(widths, headers, limit, list(dict.fromkeys(order)))
    dashes = ["-" * min(len(h), w) for h, w in zip(headers, widths, strict=True)]
    for row in (headers, dashes, *cells):
        print(_line(row, widths), file=out)


def _line(row: Sequence[str], widths: Sequence[int]) -> str:
    """One row: each cell padded to its column's width, or cut to it with an ellipsis."""
    parts = []
    for text, width in zip(row, widths, strict=True):
        size = cell_len(text)
        if size > width:
            text = set_cell_size(text, width - 1) + "…"
            size = cell_len(text)
        parts.append(text + " " * (width - size))
    return " ".join(parts).rstrip()


def _fit(widths: list[int], headers: Sequence[str], limit: int, order: list[int]) -> None:
    """Narrow the columns in ``order`` (each to its header, at least 8) until the row fits."""
    excess = sum(widths) + len(widths) - 1 - limit
    for i in order:
        if excess <= 0:
            return
        floor = min(widths[i], max(len(headers[i]), 8))
        cut = min(excess, widths[i] - floor)
        widths[i] -= cut
        excess -= cut


def _is_tty(out: TextIO) -> bool:
    return bool(getattr(out, "isatty", lambda: False)())


def _terminal_width(out: TextIO) -> int:
    return shutil.get_terminal_size((80, 24)).columns


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` with control and bidi-override characters escaped, so a name or command can
    neither move the cursor, recolour the terminal nor reorder what is shown."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def job_rows(jobs: Iterable[JobInfo], children: bool = False) -> list[list[Any]]:
    rows = []
    for job in jobs:
        rows.append(
            [job.id, job.name, job.state.value, job.has_more_data, job.location, job.command]
        )
        if children:
            for child in job.children:
                rows.append(
                    [
                        child.id,
                        "  " + child.name,
                        child.state.value,
                        child.has_more_data,
                        child.location,
                        child.command,
                    ]
                )
    return rows


def print_jobs(
    jobs: Iterable[JobInfo], as_json: bool, children: bool = False, out: TextIO | None = None
) -> None:
    """The jobs as ``get`` lists them; taken one at a time (only their rows are kept)."""
    out = out or sys.stdout
    if as_json:
        print_json_stream((j.to_dict() for j in jobs), out)
        return
    rows: list[list[Any]] = []
    rollouts = []  # a rollout says where it is, or why it halted
    for job in jobs:
        rows += job_rows([job], children)
        if children and job.rollout:
            rollouts.append(f"Job {job.id}: {job.rollout.describe(job.finished)}")
    table(rows, JOB_COLUMNS, out, shrink=("Command", "Location"))
    for line in rollouts:
        print(line, file=out)


def print_hosts(hosts: Sequence[HostInfo], as_json: bool) -> None:
    if as_json:
        print(json.dumps([h.to_dict() for h in hosts], indent=2))
        return
    rows = [
        [
            h.location,
            h.online,
            " ".join(f"{k}={v}" for k, v in sorted(h.tags.items())),
            h.running,
            local_time(h.last_seen),
        ]
        for h in hosts
    ]
    table(rows, ("Location", "Online", "Tags", "Running", "Last seen"))


FACT_COLUMNS = ("Location", "Online", "OS", "Kernel", "Arch", "CPUs", "MemGB", "Addresses", "Tags")


def _words(value: Any) -> str:
    """A fact's list as words; facts are what a host reported: any JSON, shown as text."""
    if isinstance(value, list):
        return " ".join(value_text(v) for v in value)
    return "" if value is None else value_text(value)


def print_facts(hosts: Sequence[HostInfo]) -> None:
    """The hosts' facts as a table (``hosts --facts``)."""
    rows = []
    for h in hosts:
        f = h.facts
        os_text = " ".join(str(f[k]) for k in ("os", "os_version") if f.get(k))
        rows.append(
            [
                h.location,
                h.online,
                os_text,
                f.get("kernel"),
                f.get("arch"),
                f.get("cpu_count"),
                f.get("memory_gb"),
                _words(f.get("addresses")),
                " ".join(f"{k}={v}" for k, v in sorted(h.tags.items())),
            ]
        )
    table(rows, FACT_COLUMNS)


def value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def output_text(value: Any) -> str:
    """An output value as printed: control characters escaped (``\\x1b``), so that a job's
    output cannot drive the terminal that receives it (an OSC 52 sequence writes the
    clipboard, a bare CR overwrites what is shown, a bidi override reorders it); its tabs and
    line breaks, and every other character (no-break spaces, joiners in emoji), as written."""
    return _CONTROL.sub(_escaped, value_text(value).replace("\r\n", "\n"))


# C0 but tab and newline, DEL, C1, and the bidi embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(found: re.Match[str]) -> str:
    return printable(found.group())


def print_values(
    values: Sequence[tuple[Record, Any]],
    out: TextIO | None = None,
    tag_locations: bool | None = None,
) -> None:
    """Output values: a run of objects as one table, anything else one per line.

    Objects from several hosts get a Location column (PowerShell's PSComputerName) unless
    they carry one themselves: a ``Server`` key is not enough, as ``ping`` from many hosts to
    one target shows; any other value its host before it (``web01: text``), as ``invoke``
    prints it.
    """
    out = out or sys.stdout
    if tag_locations is None:
        tag_locations = len({rec.location for rec, _ in values}) > 1
    i = 0
    while i < len(values):
        if isinstance(values[i][1], dict):
            j = i
            while j < len(values) and isinstance(values[j][1], dict):
                j += 1
            _dict_table(values[i:j], tag_locations, out)
            i = j
        else:
            rec, value = values[i]
            print((f"{rec.location}: " if tag_locations else "") + output_text(value), file=out)
            i += 1


def _dict_table(values: Sequence[tuple[Record, Any]], tag: bool, out: TextIO) -> None:
    keys: dict[str, None] = {}
    for _, v in values:
        keys.update(dict.fromkeys(v))
    headers = list(keys)
    if tag and not {"Location", "PSComputerName"} & keys.keys():
        headers.append("Location")
    rows = [
        [v.get(k, rec.location if k == "Location" else None) for k in headers] for rec, v in values
    ]
    table(rows, headers, out)


def stream_line(rec: Record, tag: bool) -> str:
    """A non-output record as PowerShell shows it on the console: ``WARNING: ...``."""
    data = rec.data
    if rec.stream == "progress" and isinstance(data, dict):
        text = f"{data.get('percent', 0):g}% {data.get('status', '')}".rstrip()
    elif rec.stream == "question" and isinstance(data, dict):
        choices = data.get("choices")
        text = f"{data.get('question', '')}" + (f" [{'/'.join(choices)}]" if choices else "")
    else:
        text = value_text(data)
    where = f"[{rec.location}] " if tag else ""
    return output_text(f"{PREFIXES.get(rec.stream, rec.stream.upper())}: {where}{text}")


def print_json_stream(items: Iterable[dict[str, Any]], out: TextIO | None = None) -> None:
    """A JSON array printed item by item as the items come (flushed each time), so what was
    printed is never held back; the whole is the same text ``json.dumps(items, indent=2)``
    prints. Interrupted (Ctrl-C, SIGTERM), it ends the array it began: what was printed is
    valid JSON (a receive's record printed when the interrupt came goes back, and is printed
    again by the next receive)."""
    out = out or sys.stdout
    first = True
    try:
        for item in items:
            text = json.dumps(item, indent=2).replace("\n", "\n  ")
            out.write(("[\n  " if first else ",\n  ") + text)
            out.flush()
            first = False
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: what was printed stays one array
        with contextlib.suppress(OSError, ValueError):
            out.write("[]\n" if first else "\n]\n")
            out.flush()
        raise
    out.write("[]\n" if first else "\n]\n")
    out.flush()
