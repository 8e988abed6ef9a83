"""Rows of figures, printed as they come and written to ``results.json`` and ``RESULTS.md``.

Each benchmark adds :class:`Row` objects to its :class:`Ctx`; :func:`save` merges the
benchmarks just run into the JSON file (so running one benchmark alone updates its section
and keeps the others, each section saying when and how it ran) and renders the Markdown
from the whole JSON.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ORDER = [
    "roundtrip",
    "throughput",
    "commands",
    "cli",
    "registry",
    "fleet",
    "output",
    "ansible",
    "fanout",
    "confined",
]
TITLES = {
    "roundtrip": "1. Round trip of one job: start -> receive of echo",
    "throughput": "2. Throughput: N jobs submitted, then all received",
    "commands": "3. Redis commands per job, by verb; redis-benchmark as the physical limit",
    "cli": "4. CLI start-up (whole process)",
    "registry": "5. Registry scale: finished jobs stored",
    "fleet": "6. Fleet scale: many locations served by a few workers",
    "output": "7. Output: one job writing many lines",
    "ansible": "8. Against Ansible: a command on 20 hosts (whole command)",
    "fanout": "9. Fan-out: one job to many locations vs a raw Celery group",
    "confined": "10. Confined workers: the relay hop, against a trusted worker",
}


@dataclass
class Row:
    """One figure: fleetjobs' median (and p99) beside its baseline's, the ratio and target.

    ``ratio`` is fleetjobs / baseline unless the benchmark says otherwise in ``note``.
    """

    metric: str
    unit: str
    value: float | None
    p99: float | None = None
    base: float | None = None
    base_p99: float | None = None
    base_name: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    n: int | None = None


@dataclass
class Ctx:
    """What a benchmark gets: its mode, a folder for logs, and where its rows go."""

    name: str
    quick: bool
    log_dir: Path
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # read as it starts

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def param(self, key: str, quick: Any, full: Any) -> Any:
        """A parameter: ``--set key=value`` if given (parsed like the default), else the
        quick or full default; recorded for the report."""
        value = self.pick(quick, full)
        if key in self.overrides:
            text = self.overrides[key]
            if isinstance(value, list):
                value = [type(value[0])(x) for x in text.split(",") if x]
            else:
                value = type(value)(text)
        self.params[key] = value
        return value

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print("  " + row_line(row), flush=True)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("B",):
        return _bytes(value)
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}".strip()
    if abs(value) >= 100:
        return f"{value:.0f} {unit}".strip()
    if abs(value) >= 10:
        return f"{value:.1f} {unit}".strip()
    if abs(value) >= 0.1 or value == 0:
        return f"{value:.2f} {unit}".strip()
    return f"{value:.2g} {unit}".strip()


def _bytes(value: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _pair(median: float | None, p99: float | None, unit: str) -> str:
    text = fmt(median, unit)
    if p99 is not None:
        text += f" (p99 {fmt(p99, unit)})"
    return text


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[met]


def _ratio(r: float | None) -> str:
    return "" if r is None or math.isnan(r) else f"{r:.2f}x"


def row_line(r: Row) -> str:
    base = f" | {r.base_name}: {_pair(r.base, r.base_p99, r.unit)}" if r.base_name else ""
    tail = f" | {_ratio(r.ratio)}" if r.ratio is not None else ""
    if r.target:
        tail += f" | target {r.target}: {_met(r.met) or '?'}"
    note = f"  ({r.note})" if r.note else ""
    return f"{r.metric}: {_pair(r.value, r.p99, r.unit)}{base}{tail}{note}"


def print_table(rows: list[Row]) -> None:
    """The rows again as one aligned table: figure, fleetjobs, baseline, ratio, target, met."""
    if not rows:
        return
    cells = [("figure", "fleetjobs", "baseline", "ratio", "target", "met")]
    for r in rows:
        cells.append(
            (
                r.metric[:70],
                _pair(r.value, r.p99, r.unit),
                _pair(r.base, r.base_p99, r.unit) if r.base_name else "",
                _ratio(r.ratio),
                r.target,
                _met(r.met),
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    for c in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


# ---- the machine ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import celery
    import kombu
    import redis

    from fleetjobs.embedded import redis_server_binary

    try:
        binary = redis_server_binary()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        server = next((w[2:] for w in out.stdout.split() if w.startswith("v=")), "?")
    except Exception as exc:
        server = f"unknown ({exc})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "arch": platform.machine(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "hiredis": _hiredis(),
        "redis_server": server,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _hiredis() -> str:
    try:
        import hiredis

        return str(getattr(hiredis, "__version__", "yes"))
    except ImportError:
        return "no"


def machine_line(m: dict[str, Any], load: bool = True) -> str:
    return (
        f"{m['cores']} cores ({m['arch']}, {m['kernel']}), Python {m['python']}, "
        f"Celery {m['celery']}, kombu {m['kombu']}, redis-py {m['redis_py']} "
        f"(hiredis {m['hiredis']}), redis-server {m['redis_server']}"
        + (f", load average {' '.join(str(x) for x in m['loadavg'])}" if load else "")
    )


# ---- saving -----------------------------------------------------------------------------


def section(ctx: Ctx, status: str, seconds: float, error: str = "") -> dict[str, Any]:
    return {
        "ran_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if ctx.quick else "full",
        "status": status,
        "error": error,
        "seconds": round(seconds, 1),
        "machine": ctx.machine or machine(),
        "params": ctx.params,
        "rows": [asdict(r) for r in ctx.rows],
        "notes": ctx.notes,
    }


def save(out_dir: Path, sections: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """Merge ``sections`` into ``out_dir/results.json`` and render ``out_dir/RESULTS.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    data: dict[str, Any] = {"benchmarks": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            data.setdefault("benchmarks", {})
        except ValueError:
            data = {"benchmarks": {}}
    data["benchmarks"].update(sections)
    data["written_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    data["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    path.write_text(json.dumps(data, indent=1) + "\n")
    md = out_dir / "RESULTS.md"
    md.write_text(render(data))
    return path, md


def render(data: dict[str, Any]) -> str:
    benches = data["benchmarks"]
    modes = sorted({s["mode"] for s in benches.values()})
    lines = [
        "# fleetjobs benchmark results",
        "",
        f"Written {data.get('written_at', '?')} by `{data.get('command', '?')}`; "
        f"mode: {', '.join(modes)} ({'QUICK RUN: small counts, indicative only' if 'quick' in modes else 'full run'}).",  # noqa: E501
        "Each benchmark ran against its baseline in the same run, on a private redis-server, "
        "alternating the two sides where they share the machine. The machine is shared with "
        "other work (see the load average): treat every time as noisy, compare ratios within "
        "one run, and rerun before trusting a small difference. Regenerate with `make bench` "
        "(full) or `make bench-quick`; `bench/results.json` holds every figure.",
        "",
    ]
    machines = {machine_line(s["machine"], False) for s in benches.values() if "machine" in s}
    for m in sorted(machines):
        lines.append(f"Machine: {m}.")
    lines.append("")
    for name in [*ORDER, *sorted(set(benches) - set(ORDER))]:
        s = benches.get(name)
        if s is None:
            continue
        lines += [f"## {TITLES.get(name, name)}", ""]
        lines.append(
            f"{s['mode']} run, {s['ran_at']}, {s['seconds']:g} s, load average before "
            f"{' '.join(str(x) for x in s['machine']['loadavg'])}, status: **{s['status']}**"
            + (f" ({s['error']})" if s.get("error") else "")
        )
        if s.get("params"):
            lines.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in s["params"].items()))
        lines.append("")
        if s["rows"]:
            lines += [
                "| figure | measured: median (p99) | baseline | baseline: median (p99) "
                "| ratio | target | met |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for d in s["rows"]:
                r = Row(**d)
                metric = r.metric + (f" <br>*{r.note}*" if r.note else "")
                lines.append(
                    f"| {metric} | {_pair(r.value, r.p99, r.unit)} | {r.base_name} | "
                    f"{_pair(r.base, r.base_p99, r.unit) if r.base_name else ''} | "
                    f"{_ratio(r.ratio)} | {r.target} | {_met(r.met)} |"
                )
            lines.append("")
        for note in s.get("notes", []):
            lines.append(f"- {note}")
        if s.get("notes"):
            lines.append("")
    return "\n".join(lines)
