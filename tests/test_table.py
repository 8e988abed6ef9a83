"""The tables the CLI prints: laid out as rich's Table lays them out, cell by cell, without
rich's Table on the way (a verb's start-up imports only rich's cell widths)."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetjobs.cli import format as fmt

TRICKY = [
    *"abcXYZ 0123-_/.",
    "é",
    "漢",
    "字",
    "😀",
    "👍🏽",
    "e\u0301",
    "\u200d",
    "한",
    "ｱ",
    "\t",
    "\x1b",
    "[b]",
    "…",
    "🇫🇷",
]


def rich_table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], max_width: int, shrink: Sequence[str]
) -> str:
    """The same table through rich's Table and Console (what the CLI printed before)."""
    cells = [[fmt.printable(fmt._cell(v)) for v in row] for row in rows]
    widths = [max(len(h), *(fmt.cell_len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    order = [headers.index(h) for h in shrink if h in headers]
    order += [len(headers) - 1, *sorted(range(len(headers)), key=lambda i: -widths[i])]
    fmt._fit(widths, headers, max_width, list(dict.fromkeys(order)))
    grid = Table(box=None, show_header=True, pad_edge=False, padding=(0, 1, 0, 0))
    for h, w in zip(headers, widths, strict=True):
        grid.add_column(Text(h), width=w, no_wrap=True, overflow="ellipsis")
    grid.add_row(*(Text("-" * min(len(h), w)) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        grid.add_row(*(Text(v, no_wrap=True, overflow="ellipsis") for v in row))
    buf = io.StringIO()
    total = sum(widths) + len(widths) - 1
    Console(file=buf, width=total, color_system=None, highlight=False, emoji=False).print(
        grid, markup=False
    )
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def test_tables_are_laid_out_as_rich_lays_them_out() -> None:
    # wide, combining and joined characters, flags, control characters, cells cut to fit
    rng = random.Random(9)
    for _ in range(1500):
        ncol = rng.randint(1, 6)
        headers = [rng.choice(["Id", "Name", "State", "Location", "Command"]) for _ in range(ncol)]
        headers = [f"{h}{i}" for i, h in enumerate(headers)]
        rows = [
            [
                "".join(rng.choice(TRICKY) for _ in range(rng.choice([0, 1, 3, 10, 40])))
                if rng.random() < 0.9
                else rng.choice([None, True, 5, {"a": "漢"}])
                for _ in range(ncol)
            ]
            for _ in range(rng.randint(1, 5))
        ]
        width = rng.choice([12, 20, 30, 50, 80, 400])
        shrink = rng.sample(headers, k=min(2, ncol))
        out = io.StringIO()
        fmt.table(rows, headers, out, max_width=width, shrink=shrink)
        assert out.getvalue() == rich_table(rows, headers, width, shrink), (rows, width)


def test_a_cut_cell_ends_with_an_ellipsis_and_piped_rows_are_whole() -> None:
    rows = [[1, "Job1", "echo " + "x" * 60]]
    out = io.StringIO()
    fmt.table(rows, ["Id", "Name", "Command"], out, max_width=30)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["Id", "Name", "Command"] and len(lines[2]) == 30
    assert lines[2].endswith("…")
    piped = io.StringIO()  # not a terminal, no width given: nothing is cut
    fmt.table(rows, ["Id", "Name", "Command"], piped)
    assert piped.getvalue().splitlines()[2].endswith("x" * 60)
