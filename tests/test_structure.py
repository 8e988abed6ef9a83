"""The house's structure, checked: floors not circles, the console side never importing the host
side, the host side never importing the facade or the CLI, modules within their size budget, and
an installed wheel that adds no generic top-level package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"fleetjobs": ROOT / "fleetjobs", "fleetjobs.workers": ROOT / "workers"}
BUDGET = 520


def _modules() -> dict[str, Path]:
    mods = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join([package, *parts])] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports, anywhere in it (type-only and function-level too)."""
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".")
            if node.level:
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            subs = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in mods]
            targets = subs if len(subs) == len(node.names) else [stem, *subs]
        for t in targets:
            if t == "workers" or t.startswith("workers."):
                t = "fleetjobs." + t  # the host side's folder name, as the package it installs
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _host(name: str) -> bool:
    return name == "fleetjobs.workers" or name.startswith("fleetjobs.workers.")


def test_the_console_side_never_imports_the_host_side() -> None:
    wrong = [(m, t) for m, ts in _graph().items() if not _host(m) for t in ts if _host(t)]
    assert wrong == []


def test_the_host_side_stands_on_the_write_path_not_the_facade_or_the_cli() -> None:
    # the package root re-exports the facade: importing it is importing the facade
    above = ("fleetjobs", "fleetjobs.fleet", "fleetjobs.job", "fleetjobs.cli")
    wrong = [
        (m, t)
        for m, ts in _graph().items()
        if _host(m)
        for t in ts
        if t in above or t.startswith("fleetjobs.cli.")
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_every_module_is_within_its_size_budget() -> None:
    over = {n: c for n, p in _modules().items() if (c := len(p.read_text().splitlines())) > BUDGET}
    assert over == {}


@pytest.mark.timeout(120)
def test_the_wheel_installs_the_host_side_inside_the_projects_namespace(tmp_path: Path) -> None:
    # built from a copy: setuptools leaves a build/ folder behind in the tree it builds
    src = tmp_path / "src"
    out = tmp_path / "wheel"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info"))
    out.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", src],
        check=True,
        capture_output=True,
        cwd=out,
    )
    [wheel] = out.glob("fleetjobs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fleetjobs"}
    assert "fleetjobs/workers/runtime.py" in names
    assert "fleetjobs/lua/claim.lua" in names
