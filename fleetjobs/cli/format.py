"""How the CLI shows jobs, hosts and records: PowerShell's tables, or JSON with ``--json``."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from ..model import HostInfo, JobInfo, Record

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
) -> None:
    """Print rows under headers and dashes, as ``Format-Table`` does; the last column is cut
    to the terminal's width with ``...``."""
    out = out or sys.stdout
    if not rows:
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    limit = max_width or shutil.get_terminal_size((120, 24)).columns
    used = sum(widths[:-1]) + len(widths) - 1
    widths[-1] = max(len(headers[-1]), min(widths[-1], limit - used))

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, (v, w) in enumerate(zip(values, widths, strict=True)):
            if len(v) > w:
                v = v[: max(0, w - 3)] + "..."
            parts.append(v if i == len(widths) - 1 else v.ljust(w))
        return " ".join(parts).rstrip()

    print(line(headers), file=out)
    print(line(["-" * len(h) for h in headers]), file=out)
    for row in cells:
        print(line(row), file=out)


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
    jobs: Sequence[JobInfo], as_json: bool, children: bool = False, out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    if as_json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2), file=out)
    else:
        table(job_rows(jobs, children), JOB_COLUMNS, out)


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
            _ago(h.last_seen),
        ]
        for h in hosts
    ]
    table(rows, ("Location", "Online", "Tags", "Running", "Last seen"))


def _ago(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def print_values(
    values: Sequence[tuple[Record, Any]],
    out: TextIO | None = None,
    tag_locations: bool | None = None,
) -> None:
    """Output values: a run of objects as one table, anything else one per line.

    Objects from several hosts get a Location column (PowerShell's PSComputerName) unless
    they carry one themselves: a ``Server`` key is not enough, as ``ping`` from many hosts to
    one target shows.
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
            print(value_text(values[i][1]), file=out)
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
    return f"{PREFIXES.get(rec.stream, rec.stream.upper())}: {where}{text}"
